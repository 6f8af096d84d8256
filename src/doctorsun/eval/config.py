"""``EvalConfig``: how an evaluation runs, typed and validated; saved beside its scores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from doctorsun.errors import DoctorSunError
from doctorsun.eval.judge import JudgeConfig

SCORING = ("generate", "likelihood")


@dataclass
class EvalConfig:
    """What a score depends on besides the model and the data."""

    bench: str = "sunmed-vl-mini"
    """Benchmark name (``doctorsun.eval.benchmarks.BENCHMARKS``): its scoring rules and breakdowns."""
    batch_size: int = 8
    """Questions generated together."""
    max_new_tokens: int = 32
    """Answer length limit in tokens."""
    blank_image: bool = False
    """Text-only baseline: every image replaced by a black one of the same size."""
    limit: int | None = None
    """Score only the first N questions."""
    seed: int = 0
    """Seed set before generating (decoding is greedy; the seed matters only to sampling code paths)."""
    resume: bool = True
    """Keep the answers already in the output folder from the same run; ``False`` starts over."""
    split: str | None = None
    """The benchmark split read (``None``: the set's test split); recorded so a protocol names it."""
    judge: JudgeConfig | None = None
    """An LLM judge for open answers (``None``: rule metrics only)."""
    clinical: list[str] = field(default_factory=list)
    """Clinical metrics of generated reports that need model weights: ``chexbert``, ``radgraph``,
    ``radgraph-xl`` or ``module:function`` (``doctorsun.eval.report_metrics``); each reported under its name."""
    scoring: str = "generate"
    """How multiple-choice questions are answered: ``generate`` (the model writes an answer, the
    benchmark's extractors read it) or ``likelihood`` (each option's text scored as the reply to the
    question without its option list, highest log-probability per byte wins: lm-evaluation-harness's
    cloze form, which measures knowledge in models too small to pick letters). Other questions are
    always generated."""

    def __post_init__(self) -> None:
        from doctorsun.eval.benchmarks import BENCHMARKS

        if isinstance(self.judge, dict):
            self.judge = JudgeConfig(**self.judge)

        if self.bench not in BENCHMARKS:
            raise DoctorSunError(f"unknown benchmark {self.bench!r}; known: {', '.join(BENCHMARKS)}")
        for name in ("batch_size", "max_new_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise DoctorSunError(f"eval {name} must be an integer >= 1, not {value!r}")
        if self.scoring not in SCORING:
            raise DoctorSunError(f"eval scoring must be one of {', '.join(SCORING)}, not {self.scoring!r}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise DoctorSunError(f"eval limit must be >= 1 (or none), not {self.limit!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalConfig:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise DoctorSunError(f"unknown eval config keys: {sorted(unknown)}")
        return cls(**data)
