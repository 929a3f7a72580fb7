"""`AssetRef`: how a Plan names an input image (init, mask, control map).

A Plan never carries image bytes: it names them by the sha256 of the stored
file, with the media type and pixel size for validation and display. The
bytes live once in the asset store (`brushwork.storage.assets`), so a Plan
stays small JSON, PNG metadata stays replayable, and an image uploaded twice
is stored once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MediaType = Literal["image/png", "image/jpeg", "image/webp"]


class AssetRef(BaseModel):
    """Content address of a stored input image."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the stored file's bytes")
    media_type: MediaType
    width: int = Field(ge=1)
    height: int = Field(ge=1)

    @property
    def short(self) -> str:
        return self.sha256[:12]
