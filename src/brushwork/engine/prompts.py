"""Prompt encoding without silent truncation.

CLIP reads 77 tokens (75 plus begin/end). diffusers cuts longer prompts off
with a log line; brushwork instead encodes them in 75-token chunks and
concatenates the embeddings (the scheme AUTOMATIC1111 uses), so every word
of a long prompt reaches the UNet. Prompts that fit are handed to diffusers
unchanged, so short prompts behave exactly like plain diffusers.
"""

from __future__ import annotations

from typing import Any

from brushwork.plan import Plan

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


def _encode_chunks(
    tokenizer: Any, encoder: Any, text: str, chunks: int, layer: int | None, final_norm: bool
) -> tuple[Any, Any]:
    """Embeddings of `text` as `chunks` 77-token windows, concatenated; plus the first window's pooled output."""
    import torch

    ids = _token_ids(tokenizer, text)
    pieces, pooled = [], None
    for index in range(chunks):
        chunk = ids[index * CHUNK_TOKENS : (index + 1) * CHUNK_TOKENS]
        row = [tokenizer.bos_token_id, *chunk, tokenizer.eos_token_id]
        row += [tokenizer.pad_token_id] * (CHUNK_TOKENS + 2 - len(row))
        out = encoder(torch.tensor([row], device=encoder.device), output_hidden_states=True)
        if pooled is None and out[0].ndim == 2:
            pooled = out[0]
        hidden = out.hidden_states[layer] if layer is not None else out.last_hidden_state
        if final_norm:
            hidden = _final_layer_norm(encoder)(hidden)
        pieces.append(hidden)
    return torch.cat(pieces, dim=1), pooled


def _chunked_sd15(pipe: Any, plan: Plan, chunks: int) -> dict[str, Any]:
    # diffusers' clip_skip semantics: A1111 "Clip skip: k" = hidden_states[-k] + final layer norm.
    layer = None if plan.clip_skip == 1 else -plan.clip_skip
    final_norm = layer is not None
    embed = [
        _encode_chunks(pipe.tokenizer, pipe.text_encoder, text, chunks, layer, final_norm)[0]
        for text in (plan.prompt, plan.negative_prompt)
    ]
    dtype = pipe.unet.dtype
    return {"prompt_embeds": embed[0].to(dtype), "negative_prompt_embeds": embed[1].to(dtype)}


def _chunked_sdxl(pipe: Any, plan: Plan, chunks: int) -> dict[str, Any]:
    import torch

    layer = -(plan.clip_skip + 1)  # SDXL always uses the penultimate layer (clip_skip shifts it)
    encoders = ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2))

    def encode(text: str) -> tuple[Any, Any]:
        parts = [_encode_chunks(tok, enc, text, chunks, layer, False) for tok, enc in encoders]
        return torch.cat([p[0] for p in parts], dim=-1), parts[-1][1]

    positive, pooled = encode(plan.prompt)
    if not plan.negative_prompt and pipe.config.force_zeros_for_empty_prompt:
        negative, negative_pooled = torch.zeros_like(positive), torch.zeros_like(pooled)
    else:
        negative, negative_pooled = encode(plan.negative_prompt)
    dtype = pipe.text_encoder_2.dtype
    return {
        "prompt_embeds": positive.to(dtype),
        "negative_prompt_embeds": negative.to(dtype),
        "pooled_prompt_embeds": pooled.to(dtype),
        "negative_pooled_prompt_embeds": negative_pooled.to(dtype),
    }


def prompt_kwargs(pipe: Any, plan: Plan, *, force_chunked: bool = False) -> dict[str, Any]:
    """The prompt arguments for a pipeline call: plain text when it fits, chunked embeddings when not.

    Clip skip also always takes our path: diffusers 0.42 applies it to SDXL's
    positive prompt only, and for SD 1.5 reaches for `text_encoder.text_model`,
    which transformers 5 no longer has. A1111 skips layers for both prompts.
    """
    if plan.model.family == "flux":
        from brushwork.engine.flux_prompts import flux_prompt_kwargs

        return flux_prompt_kwargs(pipe, plan)
    if not force_chunked and plan.clip_skip == 1 and not needs_chunking(pipe, plan):
        return {
            "prompt": plan.prompt,
            "negative_prompt": plan.negative_prompt or None,
        }
    import torch

    chunks = max(chunk_count(tok, text) for tok in _tokenizers(pipe) for text in (plan.prompt, plan.negative_prompt))
    with torch.inference_mode():
        if plan.model.family == "sdxl":
            return _chunked_sdxl(pipe, plan, chunks)
        return _chunked_sd15(pipe, plan, chunks)


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


def prompt_groups(pipe: Any, plans: list[Plan]) -> list[tuple[list[int], dict[str, Any]]]:
    """Split batched Plans into groups whose prompts can go through one pipeline call.

    Returns (indices into `plans`, the call's prompt arguments). A group of one
    keeps its Plan's own arguments (one prompt, `num_images_per_prompt` images);
    a larger group passes one prompt (or embedding row) per image.
    """
    if len(plans) == 1:
        return [([0], prompt_kwargs(pipe, plans[0]))]
    grouped: dict[tuple[Any, ...], list[tuple[int, dict[str, Any]]]] = {}
    for index, plan in enumerate(plans):
        kwargs = prompt_kwargs(pipe, plan)
        grouped.setdefault(_form(kwargs), []).append((index, kwargs))
    groups = []
    for entries in grouped.values():
        members = [index for index, _ in entries]
        if len(entries) == 1:
            groups.append((members, entries[0][1]))
        else:
            groups.append((members, _per_image([kw for _, kw in entries], [plans[i].batch_size for i in members])))
    return groups
