"""Facts about a model read from its configs or file header, without loading weights.

Nothing heavy is imported at module import time (no torch, no diffusers); a
`.ckpt` is read with `torch.load(weights_only=True)` onto the meta device
only when asked about.
"""

from __future__ import annotations

import json
from pathlib import Path

from brushwork.contract.families import Family
from brushwork.errors import ModelUnavailable
from brushwork.models.offline_configs import count_blocks

# Where a single file's first text encoder keeps its layers, per family (with and without `text_model.`).
_FIRST_TEXT_ENCODER_LAYERS: dict[str, tuple[str, ...]] = {
    "sd15": (
        "cond_stage_model.transformer.text_model.encoder.layers.",
        "cond_stage_model.transformer.encoder.layers.",
        "cond_stage_model.model.transformer.resblocks.",  # OpenCLIP layout (SD 2.x)
    ),
    "sdxl": (
        "conditioner.embedders.0.transformer.text_model.encoder.layers.",
        "conditioner.embedders.0.transformer.encoder.layers.",
        "conditioner.embedders.0.model.transformer.resblocks.",
    ),
}


def text_encoder_layers(path: Path, family: Family) -> int:
    """How many hidden layers the (first) text encoder of the model at `path` has.

    A diffusers folder (or HF snapshot) answers from `text_encoder/config.json`
    (`num_hidden_layers`); a single file from its tensor names
    (`...encoder.layers.N.` / `...transformer.resblocks.N.`). `clip_skip` must
    stay below this number. Raises `ModelUnavailable` when it cannot tell.
    """
    path = Path(path)
    if path.is_dir():
        config = path / "text_encoder" / "config.json"
        try:
            layers = json.loads(config.read_text(encoding="utf-8")).get("num_hidden_layers")
        except (OSError, ValueError, AttributeError) as exc:
            raise ModelUnavailable(f"{path.name}: cannot read the text encoder's config {config}: {exc}") from None
        if not isinstance(layers, int) or layers < 1:
            raise ModelUnavailable(f"{path.name}: {config} has no valid num_hidden_layers")
        return layers
    from brushwork.models.loading import checkpoint_shapes

    try:
        names = list(checkpoint_shapes(path))
    except ValueError as exc:
        raise ModelUnavailable(f"{path.name}: {exc}") from None
    for prefix in _FIRST_TEXT_ENCODER_LAYERS.get(family, ()):
        layers = count_blocks(names, prefix)
        if layers:
            return layers
    raise ModelUnavailable(f"{path.name}: has no text encoder layers for {family} (is it a complete checkpoint?)")
