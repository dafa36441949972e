"""The curated list of base models a version may name: the one place it is kept (ListBaseModels serves it).

Names follow Civitai's, so tools that read them keep working. Add new base models at the end of their
family; never rename or remove one (versions that name it must stay valid): mark it obsolete in docs instead.
"""

from __future__ import annotations

from typing import Final

BASE_MODELS: Final[tuple[str, ...]] = (
    "SD 1.4",
    "SD 1.5",
    "SD 1.5 LCM",
    "SD 1.5 Hyper",
    "SD 2.0",
    "SD 2.1",
    "SDXL 0.9",
    "SDXL 1.0",
    "SDXL 1.0 LCM",
    "SDXL Turbo",
    "SDXL Lightning",
    "SDXL Hyper",
    "Pony",
    "Illustrious",
    "NoobAI",
    "SD 3",
    "SD 3.5",
    "SD 3.5 Medium",
    "SD 3.5 Large",
    "SD 3.5 Large Turbo",
    "Flux.1 S",
    "Flux.1 D",
    "Flux.1 Kontext",
    "AuraFlow",
    "Stable Cascade",
    "PixArt a",
    "PixArt E",
    "Hunyuan 1",
    "Kolors",
    "Lumina",
    "HiDream",
    "Chroma",
    "SVD",
    "SVD XT",
    "Hunyuan Video",
    "Wan Video",
    "LTXV",
    "Mochi",
    "CogVideoX",
    "Other",
)

_BY_KEY: Final = {name.casefold(): name for name in BASE_MODELS}


def canonical_base_model(name: str) -> str | None:
    """The curated spelling of `name` (case and surrounding spaces ignored), or None if it is not listed."""
    return _BY_KEY.get(name.strip().casefold())
