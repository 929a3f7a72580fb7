"""A1111's emphasis syntax: the parser matches `parse_prompt_attention`, the checker refuses what it misreads."""

from __future__ import annotations

import pytest

from brushwork.contract.prompt_syntax import (
    EmbeddingUse,
    check_prompt_syntax,
    embedding_names,
    has_weighting,
    parse_attention,
    split_embeddings,
    unescaped,
)
from brushwork.errors import InvalidRequest


def parsed(text: str) -> list[list]:
    return [[s.text, s.weight] for s in parse_attention(text)]


# A1111's own doctests (modules/prompt_parser.py), with its exact float results.
@pytest.mark.parametrize(("text", "expected"), [
    ("normal text", [["normal text", 1.0]]),
    ("an (important) word", [["an ", 1.0], ["important", 1.1], [" word", 1.0]]),
    ("(unbalanced", [["unbalanced", 1.1]]),
    ("\\(literal\\]", [["(literal]", 1.0]]),
    ("(unnecessary)(parens)", [["unnecessaryparens", 1.1]]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [["a ", 1.0], ["house", 1.5730000000000004], [" ", 1.1], ["on", 1.0], [" a ", 1.1], ["hill", 0.55],
      [", sun, ", 1.1], ["sky", 1.4641000000000006], [".", 1.1]]),
])
def test_a1111_documented_examples(text, expected):
    assert parsed(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("(word)", [["word", 1.1]]),
    ("((word))", [["word", 1.2100000000000002]]),
    ("(word:1.3)", [["word", 1.3]]),
    ("(word: 1.3 )", [["word", 1.3]]),  # A1111 allows spaces around the number
    ("[word]", [["word", 1 / 1.1]]),
    ("[[word]]", [["word", 1 / 1.1 / 1.1]]),
    ("(word:1.0)", [["word", 1.0]]),
    ("a (b:-1)", [["a ", 1.0], ["b", -1.0]]),
    ("", [["", 1.0]]),
    ("()", [["", 1.0]]),
])
def test_weights(text, expected):
    assert parsed(text) == expected


def test_escapes_are_literal_text():
    assert parsed(r"\(a\) \[b\] c\\d") == [["(a) [b] c\\d", 1.0]]
    assert unescaped(parse_attention(r"a \(b\) (c:1.0)")) == "a (b) c"
    assert not has_weighting(parse_attention(r"\(not weighted\)"))


def test_stray_closers_and_lone_colons_stay_text():
    assert parsed("a) b] c:d") == [["a) b] c:d", 1.0]]
    assert parsed("x:1.2)") == [["x:1.2)", 1.0]]  # ":1.2)" with no open bracket is text
    assert parsed("(a:b)") == [["a:b", 1.1]]


def test_unclosed_brackets_weigh_the_rest_like_a1111():
    assert parsed("a (b c") == [["a ", 1.0], ["b c", 1.1]]
    assert parsed("a [b (c") == [["a ", 1.0], ["b ", 1 / 1.1], ["c", 1.1 / 1.1]]


def test_break_splits_and_is_a_word_of_its_own():
    segments = parse_attention("a red fox BREAK a blue sky")
    assert [(s.text, s.is_break) for s in segments] == [("a red fox", False), ("BREAK", True), ("a blue sky", False)]
    assert has_weighting(segments) and unescaped(segments) == "a red foxa blue sky"
    assert parsed("BREAKFAST break Break") == [["BREAKFAST break Break", 1.0]]  # upper case, whole word only
    assert [s.is_break for s in parse_attention("BREAK a")] == [False, True, False]  # empty first chunk, as A1111
    assert [s.is_break for s in parse_attention("(a:1.2) BREAK b")] == [False, False, True, False]


def test_break_inside_brackets_is_multiplied_like_a1111_so_it_is_no_break():
    segments = parse_attention("(a BREAK b)")
    assert not any(s.is_break for s in segments)
    with pytest.raises(InvalidRequest, match="BREAK at character 4 is inside the bracket at character 1"):
        check_prompt_syntax("prompt", "(a BREAK b)")


@pytest.mark.parametrize("text", ["plain", "(a) [b] (c:1.2) ((d)) [[e]]", r"\(x", r"x\]", "a BREAK b", "(a:b)",
                                  "((a:1.2) b)", "a:1.2"])
def test_balanced_prompts_pass_the_check(text):
    check_prompt_syntax("prompt", text)


@pytest.mark.parametrize(("text", "message"), [
    ("a (b", "prompt: '(' at character 3 is never closed; add ')', or write \\( for a literal bracket"),
    ("a [b", "prompt: '[' at character 3 is never closed; add ']'"),
    ("a) b", "prompt: ')' at character 2 closes nothing"),
    ("(a] b", "prompt: ']' at character 3 does not close '(' at character 1"),
    ("(a:1.2.3)", "prompt: weight '1.2.3' at character 3 is not a number"),
    ("x:1.2)", "prompt: ')' at character 2 closes nothing"),
])
def test_unbalanced_prompts_are_refused_with_the_position(text, message):
    with pytest.raises(InvalidRequest) as info:
        check_prompt_syntax("prompt", text)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_unreadable_weight_is_text_in_the_lenient_parser():
    # A1111 raises ValueError on float("1.2.3"); we keep the text and leave the bracket open.
    assert parsed("(a:1.2.3)") == [["a:1.2.3)", 1.1]]


INSTALLED = ["EasyNegative", "bad-hands-5", "bad", "style"]


@pytest.mark.parametrize(("text", "expected"), [
    ("easynegative, blurry", ["EasyNegative"]),
    ("(EASYNEGATIVE:1.2), bad-hands-5", ["EasyNegative", "bad-hands-5"]),
    ("bad-hands-5, bad, easynegative, bad", ["bad-hands-5", "bad", "EasyNegative"]),  # first use, no repeats
    ("easynegatives, badly, stylish, xstyle", []),  # names only at token boundaries
    ("style2 style_a 'style' bad-hands-5x", ["style", "bad-hands-5"]),  # digits and symbols are boundaries
    ("a BREAK style", ["style"]),
    ("nothing here", []),
])
def test_embedding_names(text, expected):
    assert embedding_names(text, INSTALLED) == expected


def test_embedding_names_are_found_inside_weighted_runs_only():
    assert embedding_names("bad(style)", INSTALLED) == ["bad", "style"]
    assert embedding_names("ba(d)", INSTALLED) == []  # runs tokenize separately in A1111


def test_split_embeddings_keeps_text_around_names():
    assert split_embeddings("a EasyNegative, b", INSTALLED) == ["a ", EmbeddingUse("EasyNegative"), ", b"]
    assert split_embeddings("", INSTALLED) == [""]
    assert split_embeddings("plain", []) == ["plain"]
