"""Value sets of the catalog's domain, with Civitai's names (DESIGN.md §3), kept in one place."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ModelType(StrEnum):
    CHECKPOINT = "Checkpoint"
    TEXTUAL_INVERSION = "TextualInversion"
    HYPERNETWORK = "Hypernetwork"
    AESTHETIC_GRADIENT = "AestheticGradient"
    LORA = "LORA"
    LOCON = "LoCon"
    DORA = "DoRA"
    CONTROLNET = "Controlnet"
    UPSCALER = "Upscaler"
    MOTION_MODULE = "MotionModule"
    VAE = "VAE"
    POSES = "Poses"
    WILDCARDS = "Wildcards"
    WORKFLOWS = "Workflows"
    OTHER = "Other"


class ModelStatus(StrEnum):
    DRAFT = "Draft"
    PUBLISHED = "Published"
    SCHEDULED = "Scheduled"
    UNPUBLISHED = "Unpublished"
    UNPUBLISHED_VIOLATION = "UnpublishedViolation"
    DELETED = "Deleted"


class VersionStatus(StrEnum):
    DRAFT = "Draft"
    SCHEDULED = "Scheduled"
    PUBLISHED = "Published"
    DELETED = "Deleted"


class CommercialUse(StrEnum):
    IMAGE = "Image"
    RENT_CIVIT = "RentCivit"
    RENT = "Rent"
    SELL = "Sell"


class Relation(StrEnum):
    """How a version derives from a parent version."""

    FINETUNE = "finetune"
    MERGE = "merge"
    ADAPTER_OF = "adapter-of"
    QUANTIZED_OF = "quantized-of"
    FORK = "fork"


DERIVATIVE_RELATIONS: Final = frozenset({Relation.FINETUNE, Relation.MERGE, Relation.QUANTIZED_OF, Relation.FORK})
"""Relations whose result contains the parent's weights: refused when the parent's license forbids
derivatives (unless both models have the same owner). An adapter is made *for* a parent and carries none of
its weights, so it is allowed."""


class FileFormat(StrEnum):
    SAFE_TENSOR = "SafeTensor"
    PICKLE_TENSOR = "PickleTensor"
    GGUF = "GGUF"
    DIFFUSERS = "Diffusers"
    ONNX = "ONNX"
    OTHER = "Other"


class FileType(StrEnum):
    MODEL = "Model"
    PRUNED_MODEL = "Pruned Model"
    NEGATIVE = "Negative"
    TRAINING_DATA = "Training Data"
    VAE = "VAE"
    CONFIG = "Config"
    ARCHIVE = "Archive"


class SizeKind(StrEnum):
    FULL = "full"
    PRUNED = "pruned"


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    NF4 = "nf4"
    MIXED = "mixed"
    OTHER = "other"


class ScanResult(StrEnum):
    PENDING = "Pending"
    SUCCESS = "Success"
    DANGER = "Danger"
    ERROR = "Error"


class HashKind(StrEnum):
    """Civitai's hash kinds (upper-case hex). All but AutoV3 are computed while an upload streams in; AutoV3
    (SafeTensor files only) by a background job after the file was added (files/hashing.py)."""

    SHA256 = "SHA256"
    AUTO_V1 = "AutoV1"
    AUTO_V2 = "AutoV2"
    CRC32 = "CRC32"
    BLAKE3 = "BLAKE3"
    AUTO_V3 = "AutoV3"
