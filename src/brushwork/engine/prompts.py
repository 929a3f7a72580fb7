"""Prompt encoding: long prompts without silent truncation, and A1111's emphasis syntax.

CLIP reads 77 tokens (75 plus begin/end). diffusers cuts longer prompts off
with a log line; brushwork instead encodes them in 75-token chunks and
concatenates the embeddings (the scheme AUTOMATIC1111 uses), so every word
of a long prompt reaches the UNet. Prompts that fit are handed to diffusers
unchanged, so short prompts behave exactly like plain diffusers.

A Plan whose `prompt_syntax` is "a1111" is read with A1111's emphasis syntax
(`brushwork.contract.prompt_syntax`). When the text carries no weight, no
BREAK and the Plan names no embedding, its unescaped text takes the very path
above (so `(word:1.0)` encodes exactly as `word`). Otherwise each weighted run
is tokenized on its own, BREAK pads the current chunk, embedding names become
their vectors, each 75-token chunk is encoded, its hidden states are
multiplied by the per-token weights and rescaled to the chunk's original mean
(A1111's "Original" emphasis). A "plain" Plan (every Plan made before
weighting existed) always takes the plain path, so old images replay exactly.

Two choices differ from A1111's defaults, to keep one chunking rule in
brushwork: chunks are padded as above (EOS, then the tokenizer's pad token),
and there is no "comma padding backtrack" (A1111 moves the words after the
last comma of a full chunk into the next one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from brushwork.contract.prompt_syntax import (
    EmbeddingUse,
    Segment,
    has_weighting,
    parse_attention,
    split_embeddings,
    unescaped,
)
from brushwork.plan import Plan

if TYPE_CHECKING:
    from brushwork.engine.embeddings import Embedding, EmbeddingLookup

CHUNK_TOKENS = 75


def _token_ids(tokenizer: Any, text: str) -> list[int]:
    # verbose=False: no "sequence length is longer than" warning for the prompts we chunk on purpose
    return list(tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids)


def chunk_count(tokenizer: Any, text: str) -> int:
    """How many 75-token chunks a text needs (at least one)."""
    return max(1, -(-len(_token_ids(tokenizer, text)) // CHUNK_TOKENS))


def _tokenizers(pipe: Any) -> list[Any]:
    return [t for t in (getattr(pipe, "tokenizer", None), getattr(pipe, "tokenizer_2", None)) if t is not None]


def needs_chunking(pipe: Any, plan: Plan) -> bool:
    return any(
        chunk_count(tok, text) > 1 for tok in _tokenizers(pipe) for text in (plan.prompt, plan.negative_prompt)
    )


def _final_layer_norm(encoder: Any) -> Any:
    """transformers 5 flattened CLIPTextModel; 4.x keeps the norm under `.text_model`."""
    return getattr(encoder, "text_model", encoder).final_layer_norm


# -- chunks ---------------------------------------------------------------------------


@dataclass
class Chunk:
    """Up to 75 token ids (no begin/end), their weights, and where embedding vectors go.

    `fixes` holds (position in `tokens`, embedding name); those positions carry
    a placeholder id that the encoder's token-embedding output replaces.
    """

    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    fixes: list[tuple[int, str]] = field(default_factory=list)

    @property
    def weighted(self) -> bool:
        return any(w != 1.0 for w in self.weights)


def _plain_chunks(tokenizer: Any, text: str, count: int) -> list[Chunk]:
    ids = _token_ids(tokenizer, text)
    return [Chunk(ids[i * CHUNK_TOKENS:(i + 1) * CHUNK_TOKENS]) for i in range(count)]


def build_chunks(segments: Sequence[Segment], tokenize: Callable[[str], list[int]],
                 lengths: dict[str, int], placeholder: int) -> list[Chunk]:
    """A1111's `tokenize_line`: weighted runs -> 75-token chunks (BREAK and embeddings honoured).

    `lengths` gives each usable embedding's vector count by name; an embedding
    that does not fit in the current chunk starts the next one.
    """
    chunks: list[Chunk] = []
    chunk = Chunk()

    def next_chunk() -> None:
        nonlocal chunk
        chunks.append(chunk)
        chunk = Chunk()

    for segment in segments:
        if segment.is_break:
            next_chunk()
            continue
        for piece in split_embeddings(segment.text, lengths):
            if isinstance(piece, EmbeddingUse):
                size = lengths[piece.name]
                if len(chunk.tokens) + size > CHUNK_TOKENS:
                    next_chunk()
                chunk.fixes.append((len(chunk.tokens), piece.name))
                chunk.tokens += [placeholder] * size
                chunk.weights += [segment.weight] * size
                continue
            for token in tokenize(piece):
                if len(chunk.tokens) == CHUNK_TOKENS:
                    next_chunk()
                chunk.tokens.append(token)
                chunk.weights.append(segment.weight)
    if chunk.tokens or not chunks:
        next_chunk()
    return chunks


def _placeholder(tokenizer: Any) -> int:
    """An id for embedding positions (A1111 uses 0): below EOS, so a legacy CLIP config's
    `input_ids.argmax()` still finds the EOS position for the pooled output."""
    return 0 if tokenizer.eos_token_id != 0 else 1


# -- encoding -------------------------------------------------------------------------


@contextmanager
def _vectors_at(encoder: Any, fixes: list[tuple[int, Any]]) -> Iterator[None]:
    """Replace the token-embedding output at row positions with embedding vectors, for one forward pass."""
    if not fixes:
        yield
        return

    def hook(_module: Any, _args: Any, output: Any) -> Any:
        output = output.clone()
        for position, vectors in fixes:
            output[0, position:position + vectors.shape[0]] = vectors.to(output.dtype)
        return output

    handle = encoder.get_input_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _emphasis(hidden: Any, weights: list[float]) -> Any:
    """A1111's "Original" emphasis: z * weights, then z *= original_mean / new_mean.

    When the chunk's mean is zero to float precision (a final LayerNorm without
    a learned bias, as in random test models) there is no mean to restore, and
    dividing by the new, equally-zero mean would blow the values up to inf/NaN
    (a black image): then the weighted values are kept as they are. Real CLIP
    encoders' means are far from that threshold, so their pixels are A1111's.
    """
    import torch

    z = hidden.float()
    original_mean = z.mean()
    z = z * torch.tensor(weights, device=z.device, dtype=z.dtype).reshape(1, -1, 1)
    if original_mean.abs() > 1e-4 * z.abs().mean():
        z = z * (original_mean / z.mean())
    return z.to(hidden.dtype)


def _encode_chunks(tokenizer: Any, encoder: Any, chunks: list[Chunk], layer: int | None, final_norm: bool,
                   vectors: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Embeddings of `chunks` as 77-token windows, concatenated; plus the first window's pooled output."""
    import torch

    pieces, pooled = [], None
    for chunk in chunks:
        row = [tokenizer.bos_token_id, *chunk.tokens, tokenizer.eos_token_id]
        row += [tokenizer.pad_token_id] * (CHUNK_TOKENS + 2 - len(row))
        fixes = [(1 + position, (vectors or {})[name]) for position, name in chunk.fixes]
        with _vectors_at(encoder, fixes):
            out = encoder(torch.tensor([row], device=encoder.device), output_hidden_states=True)
        if pooled is None and out[0].ndim == 2:
            pooled = out[0]
        hidden = out.hidden_states[layer] if layer is not None else out.last_hidden_state
        if final_norm:
            hidden = _final_layer_norm(encoder)(hidden)
        if chunk.weighted:
            padded = [1.0, *chunk.weights] + [1.0] * (CHUNK_TOKENS + 1 - len(chunk.weights))
            hidden = _emphasis(hidden, padded)
        pieces.append(hidden)
    return torch.cat(pieces, dim=1), pooled


Chunker = Callable[[Any, str], list[Chunk]]  # (tokenizer, text) -> chunks


def _sd15(pipe: Any, plan: Plan, texts: tuple[str, str], chunker: Chunker,
          vectors: list[dict[str, Any]]) -> dict[str, Any]:
    # diffusers' clip_skip semantics: A1111 "Clip skip: k" = hidden_states[-k] + final layer norm.
    layer = None if plan.clip_skip == 1 else -plan.clip_skip
    final_norm = layer is not None
    embed = [
        _encode_chunks(pipe.tokenizer, pipe.text_encoder, chunker(pipe.tokenizer, text), layer, final_norm,
                       vectors[0])[0]
        for text in texts
    ]
    dtype = pipe.unet.dtype
    return {"prompt_embeds": embed[0].to(dtype), "negative_prompt_embeds": embed[1].to(dtype)}


def _sdxl(pipe: Any, plan: Plan, texts: tuple[str, str], chunker: Chunker,
          vectors: list[dict[str, Any]], zero_negative: bool) -> dict[str, Any]:
    import torch

    layer = -(plan.clip_skip + 1)  # SDXL always uses the penultimate layer (clip_skip shifts it)
    encoders = ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2))

    def encode(text: str) -> tuple[Any, Any]:
        parts = [_encode_chunks(tok, enc, chunker(tok, text), layer, False, vecs)
                 for (tok, enc), vecs in zip(encoders, vectors, strict=True)]
        return torch.cat([p[0] for p in parts], dim=-1), parts[-1][1]  # pooled: 2nd encoder's first chunk

    positive, pooled = encode(texts[0])
    if zero_negative and pipe.config.force_zeros_for_empty_prompt:
        negative, negative_pooled = torch.zeros_like(positive), torch.zeros_like(pooled)
    else:
        negative, negative_pooled = encode(texts[1])
    dtype = pipe.text_encoder_2.dtype
    return {
        "prompt_embeds": positive.to(dtype),
        "negative_prompt_embeds": negative.to(dtype),
        "pooled_prompt_embeds": pooled.to(dtype),
        "negative_pooled_prompt_embeds": negative_pooled.to(dtype),
    }


def _plain_kwargs(pipe: Any, plan: Plan, force_chunked: bool) -> dict[str, Any]:
    if not force_chunked and plan.clip_skip == 1 and not needs_chunking(pipe, plan):
        return {
            "prompt": plan.prompt,
            "negative_prompt": plan.negative_prompt or None,
        }
    import torch

    chunks = max(chunk_count(tok, text) for tok in _tokenizers(pipe) for text in (plan.prompt, plan.negative_prompt))
    texts = (plan.prompt, plan.negative_prompt)

    def chunker(tokenizer: Any, text: str) -> list[Chunk]:
        return _plain_chunks(tokenizer, text, chunks)

    no_vectors: list[dict[str, Any]] = [{}, {}]
    with torch.inference_mode():
        if plan.model.family == "sdxl":
            return _sdxl(pipe, plan, texts, chunker, no_vectors, not plan.negative_prompt)
        return _sd15(pipe, plan, texts, chunker, no_vectors)


def _weighted_kwargs(pipe: Any, plan: Plan, parsed: tuple[list[Segment], list[Segment]],
                     embeddings: list[Embedding]) -> dict[str, Any]:
    """Emphasis, BREAK and embeddings, A1111's way, over the same chunked encoder."""
    import torch

    lengths = {e.name: e.length for e in embeddings}
    vectors = [{e.name: e.vectors[i] for e in embeddings} for i in range(len(_tokenizers(pipe)))]
    texts = ("\0prompt", "\0negative")  # keys into `built`: every (tokenizer, text) is chunked once
    built = {(id(tok), key): build_chunks(segments, lambda text, tok=tok: _token_ids(tok, text), lengths,
                                          _placeholder(tok))
             for tok in _tokenizers(pipe) for key, segments in zip(texts, parsed, strict=True)}
    count = max(len(chunks) for chunks in built.values())

    def chunker(tokenizer: Any, key: str) -> list[Chunk]:
        chunks = built[(id(tokenizer), key)]
        return chunks + [Chunk() for _ in range(count - len(chunks))]

    with torch.inference_mode():
        if plan.model.family == "sdxl":
            return _sdxl(pipe, plan, texts, chunker, vectors, not unescaped(parsed[1]))
        return _sd15(pipe, plan, texts, chunker, vectors)


def prompt_kwargs(pipe: Any, plan: Plan, *, force_chunked: bool = False,
                  embeddings: EmbeddingLookup | None = None) -> dict[str, Any]:
    """The prompt arguments for a pipeline call: plain text when it fits, chunked embeddings when not.

    Clip skip also always takes our path: diffusers 0.42 applies it to SDXL's
    positive prompt only, and for SD 1.5 reaches for `text_encoder.text_model`,
    which transformers 5 no longer has. A1111 skips layers for both prompts.
    `embeddings` loads a Plan's textual-inversion embeddings (the engine's
    `EmbeddingTable.lookup`); needed only for Plans that name some.
    """
    if plan.prompt_syntax == "a1111":
        parsed = (parse_attention(plan.prompt), parse_attention(plan.negative_prompt))
        weighted = plan.embeddings or any(has_weighting(segments) for segments in parsed)
        if weighted and plan.model.family != "flux":  # Flux's T5 reads plain text: emphasis is dropped
            if plan.embeddings and embeddings is None:
                raise ValueError("this Plan names embeddings: pass the engine's embedding lookup")
            loaded = [embeddings(ref) for ref in plan.embeddings] if embeddings is not None else []
            return _weighted_kwargs(pipe, plan, parsed, loaded)
        plan = plan.model_copy(update={"prompt": unescaped(parsed[0]), "negative_prompt": unescaped(parsed[1])})
    if plan.model.family == "flux":
        from brushwork.engine.flux_prompts import flux_prompt_kwargs

        return flux_prompt_kwargs(pipe, plan)
    return _plain_kwargs(pipe, plan, force_chunked)


def _form(kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """What must match for prompt arguments to share one call: text (and whether a negative is given),
    or embeddings of the same shapes."""
    if "prompt" in kwargs:
        return ("text", kwargs["negative_prompt"] is None)
    return ("embeds", *sorted((name, tuple(value.shape)) for name, value in kwargs.items()))


def _per_image(kwargs: list[dict[str, Any]], counts: list[int]) -> dict[str, Any]:
    """Several Plans' prompt arguments as one call's: each Plan's prompt once per image of it."""
    if "prompt" in kwargs[0]:
        prompts = [kw["prompt"] for kw, n in zip(kwargs, counts, strict=True) for _ in range(n)]
        if kwargs[0]["negative_prompt"] is None:
            return {"prompt": prompts, "negative_prompt": None}
        negatives = [kw["negative_prompt"] for kw, n in zip(kwargs, counts, strict=True) for _ in range(n)]
        return {"prompt": prompts, "negative_prompt": negatives}
    import torch

    return {name: torch.cat([kw[name].repeat(n, *([1] * (kw[name].ndim - 1)))
                             for kw, n in zip(kwargs, counts, strict=True)])
            for name in kwargs[0]}


def prompt_groups(pipe: Any, plans: list[Plan],
                  embeddings: EmbeddingLookup | None = None) -> list[tuple[list[int], dict[str, Any]]]:
    """Split batched Plans into groups whose prompts can go through one pipeline call.

    Returns (indices into `plans`, the call's prompt arguments). A group of one
    keeps its Plan's own arguments (one prompt, `num_images_per_prompt` images);
    a larger group passes one prompt (or embedding row) per image.
    """
    if len(plans) == 1:
        return [([0], prompt_kwargs(pipe, plans[0], embeddings=embeddings))]
    grouped: dict[tuple[Any, ...], list[tuple[int, dict[str, Any]]]] = {}
    for index, plan in enumerate(plans):
        kwargs = prompt_kwargs(pipe, plan, embeddings=embeddings)
        grouped.setdefault(_form(kwargs), []).append((index, kwargs))
    groups = []
    for entries in grouped.values():
        members = [index for index, _ in entries]
        if len(entries) == 1:
            groups.append((members, entries[0][1]))
        else:
            groups.append((members, _per_image([kw for _, kw in entries], [plans[i].batch_size for i in members])))
    return groups
