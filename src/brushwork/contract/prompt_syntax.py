"""AUTOMATIC1111's prompt emphasis syntax, read exactly as A1111 reads it.

`parse_attention` is a faithful port of A1111's
`modules/prompt_parser.py::parse_prompt_attention` (same regex, same merge
of equal-weight runs, same float products, so a prompt weighs what it weighs
in A1111):

    (word)      weight x 1.1          ((word))   x 1.21
    (word:1.3)  weight x 1.3          [word]     / 1.1
    \\( \\) \\[ \\] \\\\   the literal character
    BREAK       (upper case, a word of its own) pad the current 75-token chunk, start the next

A1111 is lenient about brackets and so is the parser: an unclosed `(` or `[`
weighs the rest of the prompt, a stray `)` or `]` is kept as text. That keeps
every Plan encodable. Requests, though, are checked first with
`check_prompt_syntax`, which refuses unbalanced brackets with the position,
because a forgotten `)` silently re-weighting half a prompt is never what
the user meant. One deliberate difference: `(word:1.2.3)` makes A1111 crash
(`float('1.2.3')`); here the parser keeps `:1.2.3)` as text and
`check_prompt_syntax` refuses it.

`embedding_names` / `split_embeddings` find textual-inversion names in a
prompt. A1111 matches an embedding by its CLIP token ids, so a name matches
case-insensitively where CLIP's pre-tokenizer would cut the text anyway
(a run of letters, one digit, or a run of other symbols); we match the same
boundaries on text, without a tokenizer, so the resolver (no torch) and the
engine agree on which names a prompt uses.

Pure Python: no torch, no tokenizer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from brushwork.errors import InvalidRequest

__all__ = [
    "BREAK",
    "EmbeddingUse",
    "Segment",
    "check_prompt_syntax",
    "embedding_names",
    "has_weighting",
    "parse_attention",
    "split_embeddings",
    "unescaped",
]

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
BREAK = "BREAK"
_BREAK_WEIGHT = -1.0

# A1111's re_attention, token for token (escapes, brackets, ":number)", text runs, a lone ':').
_ATTENTION = re.compile(
    r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""",
    re.VERBOSE,
)
_BREAK_RE = re.compile(r"\s*\bBREAK\b\s*", re.DOTALL)


@dataclass(frozen=True)
class Segment:
    """A run of prompt text and its weight; `is_break` marks a BREAK (text "BREAK", weight -1 in A1111)."""

    text: str
    weight: float

    @property
    def is_break(self) -> bool:
        return self.weight == _BREAK_WEIGHT and self.text == BREAK


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_attention(text: str) -> list[Segment]:
    """Text runs with their weights, exactly as A1111's `parse_prompt_attention` returns them.

    >>> [(s.text, round(s.weight, 4)) for s in parse_attention("an (important) word")]
    [('an ', 1.0), ('important', 1.1), (' word', 1.0)]
    """
    res: list[list] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for p in range(start, len(res)):
            res[p][1] *= multiplier

    for m in _ATTENTION.finditer(text):
        part = m.group(0)
        weight = _number(m.group(1)) if m.group(1) is not None else None
        if part.startswith("\\"):
            res.append([part[1:], 1.0])
        elif part == "(":
            round_brackets.append(len(res))
        elif part == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), weight)
        elif part == ")" and round_brackets:
            multiply_range(round_brackets.pop(), ROUND_MULTIPLIER)
        elif part == "]" and square_brackets:
            multiply_range(square_brackets.pop(), SQUARE_MULTIPLIER)
        else:
            for i, piece in enumerate(_BREAK_RE.split(part)):
                if i > 0:
                    res.append([BREAK, _BREAK_WEIGHT])
                res.append([piece, 1.0])

    for pos in round_brackets:
        multiply_range(pos, ROUND_MULTIPLIER)
    for pos in square_brackets:
        multiply_range(pos, SQUARE_MULTIPLIER)
    if not res:
        res = [["", 1.0]]

    i = 0  # merge runs of identical weights (A1111 does, and it changes how the runs tokenize)
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return [Segment(str(t), float(w)) for t, w in res]


def has_weighting(segments: list[Segment]) -> bool:
    """Whether parsed text needs the weighted encoder: any weight other than 1, or a BREAK."""
    return any(s.weight != 1.0 for s in segments)


def unescaped(segments: list[Segment]) -> str:
    """The text a prompt without weighting stands for (`(word:1.0)` -> `word`, `\\(` -> `(`)."""
    return "".join(s.text for s in segments if not s.is_break)


def check_prompt_syntax(field: str, text: str) -> None:
    """Refuse what A1111 would silently misread: unbalanced brackets and unreadable weights.

    Escaped brackets (`\\(`) are text. Raises `InvalidRequest(field, ...)` naming
    the character position (1-based) and the fix.
    """
    opened: list[tuple[str, int]] = []
    for m in _ATTENTION.finditer(text):
        part, where = m.group(0), m.start() + 1
        if part.startswith("\\"):
            continue
        if part in ("(", "["):
            opened.append((part, where))
        elif m.group(1) is not None or part == ")":
            if m.group(1) is not None and _number(m.group(1)) is None:
                raise InvalidRequest(field, f"weight {m.group(1)!r} at character {where} is not a number "
                                            "(write it like (word:1.3))")
            if not opened or opened[-1][0] != "(":
                raise _unbalanced(field, ")", where, opened)
            opened.pop()
        elif part == "]":
            if not opened or opened[-1][0] != "[":
                raise _unbalanced(field, "]", where, opened)
            opened.pop()
        elif opened and (found := _BREAK_RE.search(part)):
            # A1111 multiplies the BREAK marker's weight too, and then reads it as the word "BREAK"
            raise InvalidRequest(field, f"BREAK at character {m.start() + found.start() + found.group(0).index(BREAK) + 1} is "
                                        f"inside the bracket at character {opened[-1][1]}; put BREAK outside brackets")
    if opened:
        bracket, where = opened[-1]
        closing = ")" if bracket == "(" else "]"
        raise InvalidRequest(field, f"{bracket!r} at character {where} is never closed; add {closing!r}, "
                                    f"or write \\{bracket} for a literal bracket")


def _unbalanced(field: str, bracket: str, where: int, opened: list[tuple[str, int]]) -> InvalidRequest:
    if opened:
        inner, at = opened[-1]
        return InvalidRequest(field, f"{bracket!r} at character {where} does not close {inner!r} at character "
                                     f"{at}; brackets must nest, or escape them as \\{bracket}")
    return InvalidRequest(field, f"{bracket!r} at character {where} closes nothing; remove it, "
                                 f"or write \\{bracket} for a literal bracket")


# -- textual-inversion names ----------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingUse:
    """A place in a prompt segment where an installed embedding's name stands."""

    name: str


def _kind(char: str) -> str:
    """The class of CLIP's pre-tokenizer a character belongs to: letters, digit, space or symbol."""
    if char.isalpha():
        return "L"
    if char.isnumeric():
        return "N"
    if char.isspace():
        return "S"
    return "P"


def _cut(before: str, after: str) -> bool:
    """Whether CLIP's pre-tokenizer separates two neighbouring characters (a digit is always alone)."""
    if not before or not after:
        return True
    kind = _kind(before)
    return kind != _kind(after) or kind == "N"


def split_embeddings(text: str, names: Iterable[str]) -> list[str | EmbeddingUse]:
    """`text` cut around the embedding names it uses: text pieces and `EmbeddingUse`s, in order.

    Case-insensitive, longest name first at each position, only at CLIP token
    boundaries (so `easynegative` matches in "easynegative, blurry" but not in
    "easynegatives"). Empty text pieces are left out.
    """
    by_lower: dict[str, str] = {}
    for name in sorted(names):
        if name.strip():
            by_lower.setdefault(name.lower(), name)
    candidates = sorted(by_lower, key=len, reverse=True)
    lowered = text.lower()
    pieces: list[str | EmbeddingUse] = []
    start = position = 0
    while position < len(text) and candidates:
        if _cut(text[position - 1] if position else "", text[position]):
            for name in candidates:
                end = position + len(name)
                if lowered.startswith(name, position) and _cut(text[end - 1], text[end] if end < len(text) else ""):
                    if position > start:
                        pieces.append(text[start:position])
                    pieces.append(EmbeddingUse(by_lower[name]))
                    start = position = end
                    break
            else:
                position += 1
            continue
        position += 1
    if start < len(text) or not pieces:
        pieces.append(text[start:])
    return [p for p in pieces if not (isinstance(p, str) and not p)] or [""]


def embedding_names(text: str, installed: Iterable[str]) -> list[str]:
    """The installed embedding names an A1111-syntax prompt uses, in first-use order (installed spelling).

    Names are looked for inside each weighted run (as A1111 tokenizes runs
    separately), so `(easynegative:1.2)` uses `easynegative`.
    """
    names = list(installed)
    used: list[str] = []
    for segment in parse_attention(text):
        if segment.is_break:
            continue
        for piece in split_embeddings(segment.text, names):
            if isinstance(piece, EmbeddingUse) and piece.name not in used:
                used.append(piece.name)
    return used
