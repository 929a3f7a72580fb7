"""FLUX.1 prompts: T5 embeddings at the model's own length, and no silent truncation.

FLUX.1 reads the prompt twice: CLIP-L gives one pooled vector (from its first
77 tokens, as in BFL's reference code) and T5-XXL gives the sequence the
transformer attends to, padded to `max_sequence_length` — 256 tokens for
schnell, 512 for guidance-distilled (dev) models. diffusers would cut a longer
T5 prompt with a log line; brushwork refuses it with the token count instead.

The prompt is encoded here, with diffusers' own `encode_prompt`, and passed as
embeddings: batched Plans then share one padded length and each image gets
exactly the embeddings it gets alone.
"""

from __future__ import annotations

from typing import Any

from brushwork.errors import InvalidRequest
from brushwork.models.flux import max_sequence_length
from brushwork.plan import Plan


def t5_token_count(tokenizer: Any, text: str) -> int:
    """T5 tokens of `text`, counting the closing </s> as T5 (and diffusers' padding) does."""
    return len(tokenizer(text, truncation=False, verbose=False).input_ids)


def flux_prompt_kwargs(pipe: Any, plan: Plan) -> dict[str, Any]:
    """`prompt_embeds` and `pooled_prompt_embeds` for a FluxPipeline call; `InvalidRequest` when T5 would truncate."""
    import torch

    limit = max_sequence_length(dict(pipe.transformer.config))
    count = t5_token_count(pipe.tokenizer_2, plan.prompt)
    if count > limit:
        raise InvalidRequest("prompt", f"is {count} T5 tokens; this FLUX.1 model reads at most {limit} "
                                       "(shorten the prompt: nothing is cut off silently)")
    with torch.inference_mode():
        embeds, pooled, _ids = pipe.encode_prompt(prompt=plan.prompt, prompt_2=None, max_sequence_length=limit)
    return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
