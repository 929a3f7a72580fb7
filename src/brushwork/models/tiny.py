"""Tiny SD 1.5- and SDXL-layout pipelines with random weights: the demo model and the test models.

Sizes follow diffusers' own pipeline tests (UNet block_out_channels=(32, 64),
CLIP hidden_size=32) but keep the real VAE downscale of 8 and the real CLIP
vocabulary, so image sizes, prompts and metadata behave as with real weights.
Everything is built under a fixed seed: the same call gives the same weights.
torch and diffusers are imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from brushwork.models.clip_vocab import write_clip_tokenizer_files

CLIP_VOCAB_SIZE = 49408
SD_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
}


def tiny_tokenizer(folder: Path, pad_token: str = "<|endoftext|>") -> Any:
    """A real CLIP BPE tokenizer (derived offline from open_clip's vocabulary)."""
    from transformers import CLIPTokenizer

    write_clip_tokenizer_files(folder)
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token=pad_token, model_max_length=77
    )


def _text_encoder(hidden: int, projection: bool, projection_dim: int = 32) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
        hidden_size=hidden, intermediate_size=37, layer_norm_eps=1e-05,
        num_attention_heads=4, num_hidden_layers=5, vocab_size=CLIP_VOCAB_SIZE,
        projection_dim=projection_dim, max_position_embeddings=77,
        hidden_act="gelu" if projection else "quick_gelu",
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def tiny_vae(scaling_factor: float = 0.18215) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 16, 16, 16), in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4, layers_per_block=1, norm_num_groups=8, sample_size=64,
        scaling_factor=scaling_factor,
    )


# UNet input channels of an inpainting model: latent (4) + masked-image latent (4) + mask (1).
INPAINT_IN_CHANNELS = 9


def tiny_sd15_pipeline(tokenizer_dir: Path, seed: int = 0) -> Any:
    """A StableDiffusionPipeline with tiny random weights and SD 1.5's layout."""
    import torch

    with torch.random.fork_rng(devices=[]):  # fixed weights without resetting the caller's RNG
        torch.manual_seed(seed)
        return _tiny_sd15(tokenizer_dir)


def tiny_sd15_inpaint_pipeline(tokenizer_dir: Path, seed: int = 0) -> Any:
    """A StableDiffusionInpaintPipeline with tiny random weights: SD 1.5's layout with a 9-channel UNet."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _tiny_sd15(tokenizer_dir, inpaint=True)


def _tiny_sd15(tokenizer_dir: Path, inpaint: bool = False) -> Any:
    from diffusers import (
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=64,
        in_channels=INPAINT_IN_CHANNELS if inpaint else 4, out_channels=4, cross_attention_dim=32,
        attention_head_dim=8,
        # Attention only at the lower resolution: self-attention over every latent pixel would
        # make the demo model slow on CPUs; the single-file key mapping is the same either way.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )
    vae = tiny_vae()
    text_encoder = _text_encoder(32, projection=False)
    cls = StableDiffusionInpaintPipeline if inpaint else StableDiffusionPipeline
    return cls(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tiny_tokenizer(tokenizer_dir),
        scheduler=PNDMScheduler.from_config(SD_SCHEDULER_CONFIG),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def tiny_sdxl_pipeline(tokenizer_dir: Path, seed: int = 0) -> Any:
    """A StableDiffusionXLPipeline with tiny random weights and SDXL's layout."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _tiny_sdxl(tokenizer_dir)


def tiny_sdxl_inpaint_pipeline(tokenizer_dir: Path, seed: int = 0) -> Any:
    """A StableDiffusionXLInpaintPipeline with tiny random weights: SDXL's layout with a 9-channel UNet."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _tiny_sdxl(tokenizer_dir, inpaint=True)


def _tiny_sdxl(tokenizer_dir: Path, inpaint: bool = False) -> Any:
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    # The two text encoders must differ in width: diffusers' single-file loader routes
    # CLIP-L-shaped weights to whichever encoder has CLIP-L's width.
    text_encoder = _text_encoder(32, projection=False)
    text_encoder_2 = _text_encoder(64, projection=True, projection_dim=32)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=64,
        in_channels=INPAINT_IN_CHANNELS if inpaint else 4, out_channels=4, cross_attention_dim=32 + 64,
        attention_head_dim=(2, 4),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + text_encoder_2.config.projection_dim,
    )
    vae = tiny_vae(scaling_factor=0.13025)
    cls = StableDiffusionXLInpaintPipeline if inpaint else StableDiffusionXLPipeline
    return cls(
        unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=tiny_tokenizer(tokenizer_dir / "tokenizer"),
        tokenizer_2=tiny_tokenizer(tokenizer_dir / "tokenizer_2", pad_token="!"),
        scheduler=EulerDiscreteScheduler.from_config({**SD_SCHEDULER_CONFIG, "timestep_spacing": "leading"}),
        add_watermarker=False,
    )


# The refiner's added conditions: original size, crop, aesthetic score (5 time ids, SDXL base has 6 with target size).
REFINER_TIME_IDS = 5


def tiny_sdxl_refiner_pipeline(tokenizer_dir: Path, seed: int = 0) -> Any:
    """A StableDiffusionXLImg2ImgPipeline shaped like SDXL's refiner, with tiny random weights.

    Like `stabilityai/stable-diffusion-xl-refiner-1.0`: no first text encoder,
    the UNet cross-attends to the second (OpenCLIP-shaped) encoder alone and
    takes an aesthetic score among its added conditions. Its VAE and
    `text_encoder_2` have the tiny SDXL base's shapes, so a refiner run can
    share the base's modules instead of loading its own.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _tiny_sdxl_refiner(tokenizer_dir)


def _tiny_sdxl_refiner(tokenizer_dir: Path) -> Any:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline, UNet2DConditionModel

    text_encoder_2 = _text_encoder(64, projection=True, projection_dim=32)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=64,
        in_channels=4, out_channels=4, cross_attention_dim=text_encoder_2.config.hidden_size,
        attention_head_dim=(2, 4),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=REFINER_TIME_IDS * 8 + text_encoder_2.config.projection_dim,
    )
    return StableDiffusionXLImg2ImgPipeline(
        unet=unet, vae=tiny_vae(scaling_factor=0.13025), text_encoder=None, tokenizer=None,
        text_encoder_2=text_encoder_2, tokenizer_2=tiny_tokenizer(tokenizer_dir / "tokenizer_2", pad_token="!"),
        scheduler=EulerDiscreteScheduler.from_config({**SD_SCHEDULER_CONFIG, "timestep_spacing": "leading"}),
        requires_aesthetics_score=True, force_zeros_for_empty_prompt=False, add_watermarker=False,
    )


def save_pipeline(pipe: Any, folder: Path) -> Path:
    """Write a diffusers folder (safetensors weights) — the layout real repos use."""
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
