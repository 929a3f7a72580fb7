"""The model catalog: names → weights on disk.

A name resolves, in order, to: a `[models.NAME]` entry from settings, a file
or folder found by scanning `models_dir` (`checkpoints/ loras/ vae/
controlnet/ upscalers/ embeddings/`, named by file stem), or a built-in alias
(well-known checkpoints, looked for under `checkpoints/` or in the local
Hugging Face cache). The demo model is always available.

Nothing here imports torch: the catalog is consulted on the Plan side too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from brushwork.config import ModelSource, Settings
from brushwork.contract.families import Family
from brushwork.errors import InvalidRequest, ModelUnavailable, NotFound
from brushwork.models.demo import DEMO_LORA, demo_lora_path, ensure_demo_lora
from brushwork.models.hashing import WEIGHT_SUFFIXES, HashCache

Kind = Literal["checkpoint", "lora", "vae", "controlnet", "upscaler", "embedding"]
KIND_DIRS: dict[Kind, str] = {
    "checkpoint": "checkpoints",
    "lora": "loras",
    "vae": "vae",
    "controlnet": "controlnet",
    "upscaler": "upscalers",
    "embedding": "embeddings",
}
DEMO = "demo"

# Well-known checkpoints. `source` is a file name under checkpoints/ or an HF repo id.
BUILTIN_ALIASES: dict[str, ModelSource] = {
    "sd15": ModelSource(
        source="stable-diffusion-v1-5/stable-diffusion-v1-5", family="sd15",
        description="Stable Diffusion 1.5 (HF repo, or checkpoints/v1-5-pruned-emaonly.safetensors)",
    ),
    "sdxl": ModelSource(
        source="stabilityai/stable-diffusion-xl-base-1.0", family="sdxl",
        description="SDXL 1.0 base (HF repo, or checkpoints/sd_xl_base_1.0.safetensors)",
    ),
    "dreamshaper": ModelSource(source="dreamshaper_8.safetensors", family="sd15",
                               description="DreamShaper 8 (CivitAI)"),
    "meinamix": ModelSource(source="meinamix_v12.safetensors", family="sd15",
                            description="MeinaMix v12, anime (CivitAI)"),
    "realistic-vision": ModelSource(source="realisticVisionV60B1.safetensors", family="sd15",
                                    description="Realistic Vision 6.0, photoreal (CivitAI)"),
    "juggernaut-xl": ModelSource(source="juggernautXL.safetensors", family="sdxl",
                                 description="Juggernaut XL, photoreal SDXL (CivitAI)"),
    "sdxl-turbo": ModelSource(source="stabilityai/sdxl-turbo", family="sdxl",
                              description="SDXL-Turbo, 1-4 steps at 512x512 (HF repo, or "
                                          "checkpoints/sd_xl_turbo_1.0_fp16.safetensors)"),
}
# What a diffusers pipeline loads from an HF repo (skips fp16 variants and all-in-one files).
HF_INCLUDE = ("model_index.json '*/*.json' '*/*.txt' '*/diffusion_pytorch_model.safetensors' "
              "'*/model.safetensors'")
# Files an HF-repo alias also accepts when dropped into checkpoints/.
ALIAS_FILE_FALLBACKS: dict[str, str] = {
    "sd15": "v1-5-pruned-emaonly.safetensors",
    "sdxl": "sd_xl_base_1.0.safetensors",
    "sdxl-turbo": "sd_xl_turbo_1.0_fp16.safetensors",
}


@dataclass(frozen=True)
class CatalogEntry:
    """One nameable model and where its weights are (or should be)."""

    name: str
    kind: Kind
    family: Family | None
    path: Path | None = None  # file or diffusers folder, when local
    repo_id: str | None = None  # Hugging Face repo read from the local cache
    config: Path | None = None  # diffusers config folder for a single-file checkpoint
    description: str = ""
    demo: bool = False
    expected_location: str = ""  # where to put the files when missing

    @property
    def source_label(self) -> str:
        if self.demo:
            return "built in (made on first use)"
        if self.path is not None:
            return str(self.path)
        return f"hf:{self.repo_id}" if self.repo_id else "(missing)"


def _looks_like_repo_id(source: str) -> bool:
    return (
        source.count("/") == 1
        and not source.startswith((".", "/", "~"))
        and Path(source).suffix.lower() not in WEIGHT_SUFFIXES
        and not Path(source).expanduser().exists()
    )


class ModelCatalog:
    """Resolves names to entries; scans the models folder on each listing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models_dir = settings.resolved_models_dir
        self.hashes = HashCache(settings.home / "hashes.json")

    # -- scanning ----------------------------------------------------------------

    def scan(self, kind: Kind) -> dict[str, Path]:
        """Files (and diffusers folders, for checkpoints) in the kind's folder, by stem.
        LoRAs include the built-in demo LoRA (built on first use) unless a file of that name replaces it."""
        folder = self.models_dir / KIND_DIRS[kind]
        found: dict[str, Path] = {}
        if kind == "lora":
            found[DEMO_LORA] = demo_lora_path(self.settings.home)
        if not folder.is_dir():
            return found
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES:
                if kind == "lora" and path.stem == DEMO_LORA:
                    found[DEMO_LORA] = path
                found.setdefault(path.stem, path)
            elif path.is_dir() and ((path / "model_index.json").is_file() or (path / "config.json").is_file()):
                found.setdefault(path.name, path)
        return found

    def _hf_snapshot(self, repo_id: str) -> Path | None:
        """The locally cached snapshot of an HF repo, without any network call."""
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            folder = snapshot_download(
                repo_id,
                local_files_only=True,
                cache_dir=str(self.settings.hf_cache) if self.settings.hf_cache else None,
                allow_patterns=["*.json", "*.txt", "*.safetensors"],
            )
        except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
            return None
        return Path(folder)

    def _from_source(self, name: str, source: ModelSource) -> CatalogEntry:
        config = Path(source.config).expanduser() if source.config else None
        checkpoints = self.models_dir / KIND_DIRS["checkpoint"]
        if _looks_like_repo_id(source.source):
            fallback = ALIAS_FILE_FALLBACKS.get(name)
            if fallback and (checkpoints / fallback).is_file():
                return CatalogEntry(name, "checkpoint", source.family, path=checkpoints / fallback,
                                    config=config, description=source.description)
            where = f"Hugging Face cache ({self.settings.hf_cache or 'default HF_HOME'})"
            if fallback:
                where += f", or a single file at {checkpoints / fallback}"
            return CatalogEntry(name, "checkpoint", source.family, repo_id=source.source, config=config,
                                description=source.description, expected_location=where)
        path = Path(source.source).expanduser()
        if not path.is_absolute():
            path = checkpoints / path
        return CatalogEntry(name, "checkpoint", source.family, path=path, config=config,
                            description=source.description, expected_location=str(path))

    def checkpoints(self) -> dict[str, CatalogEntry]:
        """Every nameable checkpoint; later sources win: demo < built-in aliases < models folder < settings."""
        entries: dict[str, CatalogEntry] = {
            DEMO: CatalogEntry(DEMO, "checkpoint", "sd15", description=(
                "built-in tiny model with RANDOM weights: images are noise; for trying commands"),
                demo=True, expected_location="built on first use"),
        }
        for name, source in BUILTIN_ALIASES.items():
            entries[name] = self._from_source(name, source)
        for name, path in self.scan("checkpoint").items():
            entries[name] = CatalogEntry(name, "checkpoint", None, path=path, description="found in models folder")
        for name, source in self.settings.models.items():
            entries[name] = self._from_source(name, source)
        return entries

    def entry_for_path(self, path: Path) -> CatalogEntry:
        """A checkpoint named by path (`--model ./x.safetensors`), hashed and recorded like any other."""
        path = path.expanduser()
        if not path.exists():
            raise InvalidRequest("model", f"{str(path)!r} is neither a catalog name nor an existing file or folder")
        path = path.resolve()
        if path.is_dir() and not (path / "model_index.json").is_file():
            raise InvalidRequest("model", f"folder {str(path)!r} is not a diffusers pipeline (no model_index.json)")
        if path.is_file() and path.suffix.lower() not in WEIGHT_SUFFIXES:
            raise InvalidRequest("model", f"{path.name} is not a weights file ({', '.join(WEIGHT_SUFFIXES)})")
        name = path.name if path.is_dir() else path.stem
        return CatalogEntry(name, "checkpoint", None, path=path, description="given by path",
                            expected_location=str(path))

    # -- lookup ------------------------------------------------------------------

    def get(self, name: str) -> CatalogEntry:
        entries = self.checkpoints()
        if name not in entries:
            raise NotFound("model", name, entries)
        return entries[name]

    def is_installed(self, entry: CatalogEntry) -> bool:
        if entry.demo:
            return True
        if entry.path is not None:
            return entry.path.exists()
        return entry.repo_id is not None and self._hf_snapshot(entry.repo_id) is not None

    def locate(self, entry: CatalogEntry) -> Path:
        """The local file/folder of an entry, or an actionable `ModelUnavailable`."""
        if entry.demo:
            from brushwork.models.demo import ensure_demo_model

            return ensure_demo_model(self.settings.home)
        if entry.path is not None:
            if entry.path.exists():
                return self._refuse_pickle("model", entry.path)
            raise ModelUnavailable(
                f"model {entry.name!r} is not installed: put its file at {entry.expected_location} "
                f"(or try the built-in demo model: --model demo)"
            )
        assert entry.repo_id is not None
        snapshot = self._hf_snapshot(entry.repo_id)
        if snapshot is None:
            raise ModelUnavailable(
                f"model {entry.name!r} is not installed: expected Hugging Face repo {entry.repo_id!r} "
                f"in the {entry.expected_location}. brushwork never downloads at run time; on a machine "
                f"with internet access run `hf download {entry.repo_id} --include {HF_INCLUDE}` "
                f"(or try the built-in demo model: --model demo)."
            )
        return snapshot

    def sha256(self, path: Path) -> str:
        return self.hashes.sha256(path)

    # -- adapters ----------------------------------------------------------------

    def adapter(self, kind: Kind, name: str) -> Path | None:
        """The file for a LoRA/VAE/... name, or None when it is not installed."""
        path = self.scan(kind).get(name)
        if path is None:
            return None
        if kind == "lora" and not path.exists():
            if name == DEMO_LORA:
                return ensure_demo_lora(self.settings.home)
        return self._refuse_pickle(kind, path)

    def _refuse_pickle(self, field: str, path: Path) -> Path:
        """Any weight file that is not safetensors is a pickle: refused unless allowed."""
        if path.is_file() and path.suffix.lower() != ".safetensors" and not self.settings.allow_pickle:
            raise InvalidRequest(
                field,
                f"{path.name} is a pickle file, which can run code when loaded; convert it to "
                ".safetensors, or set BRUSHWORK_ALLOW_PICKLE=1 to load it with torch.load(weights_only=True)",
            )
        return path
