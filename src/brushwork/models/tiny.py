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
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionXLImg2ImgPipeline,
        UNet2DConditionModel,
    )

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


# -- Flux ---------------------------------------------------------------------------------

# FLUX.1's VAE latent space: 16 channels, scaled and shifted (vae/config.json of black-forest-labs/FLUX.1-schnell).
FLUX_VAE_SCALING = 0.3611
FLUX_VAE_SHIFT = 0.1159
FLUX_SCHEDULER_CONFIG: dict[str, Any] = {  # FLUX.1-schnell's scheduler_config.json
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": False,
}
_T5_WORDS = ("a an the of and in on at with by for to from is red green blue white black fox cat dog snow "
             "forest city portrait photo painting light night sky sea mountain house woman man tree flower")


def tiny_t5_tokenizer(folder: Path) -> Any:
    """A T5 (Unigram) tokenizer written offline: T5's special tokens, letters, digits and a few words.

    Real FLUX.1 uses T5 v1.1's 32k sentencepiece vocabulary, which cannot be
    downloaded here; this one has T5's ids for <pad>/</s>/<unk> (0/1/2) and
    saves/loads through `T5TokenizerFast.save_pretrained`/`from_pretrained`,
    the way a diffusers folder's `tokenizer_2/` does.
    """
    import math
    import string

    from transformers import T5TokenizerFast

    pieces = ["▁", *(f"▁{c}" for c in string.ascii_letters + string.digits),
              *(string.ascii_letters + string.digits + string.punctuation),
              *(f"▁{word}" for word in _T5_WORDS.split())]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(piece, -math.log(len(piece) + 1)) for piece in dict.fromkeys(pieces)]
    tokenizer = T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=512)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    return T5TokenizerFast.from_pretrained(folder)


def tiny_flux_pipeline(tokenizer_dir: Path, seed: int = 0, guidance_embeds: bool = False) -> Any:
    """A FluxPipeline with tiny random weights and FLUX.1-schnell's layout (16-channel VAE, packed 2x2 latents).

    Sizes follow diffusers' tests/pipelines/flux (1 double + 1 single block,
    2 heads of 16); the VAE keeps the real downscale of 8 and Flux's latent
    scaling/shift. `guidance_embeds=True` gives a FLUX.1-dev-like transformer.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _tiny_flux(tokenizer_dir, guidance_embeds)


def _tiny_flux(tokenizer_dir: Path, guidance_embeds: bool) -> Any:
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import T5Config, T5EncoderModel

    tokenizer_2 = tiny_t5_tokenizer(tokenizer_dir / "tokenizer_2")
    text_encoder_2 = T5EncoderModel(T5Config(
        d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, vocab_size=len(tokenizer_2),
        feed_forward_proj="gated-gelu", relative_attention_num_buckets=8, relative_attention_max_distance=32,
        dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False,
    ))
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 4, 8),
        guidance_embeds=guidance_embeds,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16, 16), in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=16, layers_per_block=1, norm_num_groups=8, sample_size=64,
        scaling_factor=FLUX_VAE_SCALING, shift_factor=FLUX_VAE_SHIFT, use_quant_conv=False, use_post_quant_conv=False,
    )
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(FLUX_SCHEDULER_CONFIG),
        vae=vae, text_encoder=_text_encoder(32, projection=False), tokenizer=tiny_tokenizer(tokenizer_dir / "tokenizer"),
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer,
    )
