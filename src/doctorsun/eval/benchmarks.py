"""The benchmarks ``doctorsun eval`` knows: where their records come from, which multiple-choice
definitions apply, and which of the set's own fields the report breaks scores down by.

Every public set is read in its published layout by ``doctorsun.data.converters``; SunMed-VL-mini (and
any SunMed-VL file) by ``doctorsun.data.io.read_records``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doctorsun.errors import DoctorSunError

Group = tuple[str, tuple[str, ...]]
"""(name in the report, the record ``meta`` keys that may hold it, first present wins)."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its data reader, scoring choices and breakdown fields."""

    name: str
    """The ``--bench`` name."""
    about: str
    """One line for ``--help`` and the report."""
    converter: str | None = None
    """Name for ``doctorsun.data.converters.convert`` (a converter or a preset); ``None`` reads a SunMed-VL
    file."""
    mcq_methods: tuple[str, ...] = ("huatuo",)
    """Multiple-choice definitions to report (``doctorsun.eval.scoring.MCQ_METHODS``); the first is the
    headline ``mcq_accuracy``."""
    groups: tuple[Group, ...] = field(default_factory=tuple)
    """Breakdown fields besides answer type and language."""
    max_new_tokens: int = 32
    """Answer length limit unless the user sets one (reports are long)."""
    domain: str = "medical"
    """``medical`` or ``general``: which side of a retention view (``eval compare``) it is on."""
    circular: bool = False
    """Ask every multiple-choice question once per rotation of its options (MMBench's circular
    evaluation); ``circular_accuracy`` counts a question only when every rotation is right."""


MODALITY: Group = ("modality", ("modality", "modality_type", "image_modality"))
SUBJECT: Group = ("subject", ("subject",))
MEDXPERT: tuple[Group, ...] = (("medical_task", ("medical_task",)), ("body_system", ("body_system",)),
                               ("question_type", ("question_type",)))
ORGAN: Group = ("organ", ("organ", "image_organ", "location", "body_region", "region"))

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("vqa-rad", "VQA-RAD radiology VQA (closed by answer_type and by yes/no)", "vqa-rad",
              groups=(ORGAN, ("question_type", ("question_type",)))),
    Benchmark("slake", "SLAKE bilingual radiology VQA", "slake",
              groups=(MODALITY, ORGAN, ("content_type", ("content_type",)))),
    Benchmark("pathvqa", "PathVQA pathology VQA", "pathvqa"),
    Benchmark("pmc-vqa", "PMC-VQA multiple choice on PubMed Central figures", "pmc-vqa",
              mcq_methods=("huatuo", "closest")),
    Benchmark("omnimedvqa", "OmniMedVQA multiple choice over 12 modalities", "omnimedvqa",
              mcq_methods=("huatuo", "closest"),
              groups=(MODALITY, ("question_type", ("question_type",)), ("dataset", ("dataset",)))),
    Benchmark("medqa", "MedQA (USMLE) text multiple choice", "medqa", mcq_methods=("huatuo", "bleu"),
              groups=(("step", ("meta_info",)),)),
    Benchmark("pubmedqa", "PubMedQA yes / no / maybe on abstracts", "pubmedqa",
              mcq_methods=("huatuo", "pubmedqa")),
    Benchmark("cmb", "CMB Chinese medical exams (single and multiple answer)", "cmb",
              mcq_methods=("cmb", "huatuo"),
              groups=(("exam_type", ("exam_type",)), ("question_type", ("question_type",)))),
    Benchmark("cmexam", "CMExam Chinese national medical licensing exam", "cmexam",
              mcq_methods=("cmb", "huatuo"),
              groups=(("department", ("Clinical Department", "clinical_department")),
                      ("competency", ("Competency", "competency")))),
    Benchmark("mmbench", "MMBench general multimodal skills, English and Chinese (circular evaluation)", "mmbench",
              mcq_methods=("mmbench", "huatuo"), circular=True,
              groups=(("category", ("category",)), ("l2_category", ("l2_category",))), domain="general"),
    Benchmark("mmmu-med", "MMMU Health & Medicine: five subjects, multi-image, multiple choice and open", "mmmu-med",
              mcq_methods=("mmmu",), groups=(SUBJECT, ("subfield", ("subfield",)), ("img_type", ("img_type",)))),
    Benchmark("medxpertqa-mm", "MedXpertQA MM: expert medical questions over images, five options",
              "medxpertqa-mm", groups=MEDXPERT),
    Benchmark("medxpertqa-text", "MedXpertQA Text: expert medical questions, ten options", "medxpertqa-text",
              groups=MEDXPERT),
    Benchmark("iu-xray", "IU-Xray chest X-ray report generation (findings; BLEU, ROUGE-L, METEOR, CIDEr)",
              "iu-xray", max_new_tokens=160),
    Benchmark("mimic-cxr", "MIMIC-CXR chest X-ray report generation (findings; BLEU, ROUGE-L, METEOR, CIDEr)",
              "mimic-cxr", max_new_tokens=160),
    Benchmark("mmlu", "MMLU general knowledge, 57 subjects (retention of general skills)", "mmlu",
              groups=(SUBJECT,), domain="general"),
    Benchmark("cmmlu", "CMMLU Chinese general knowledge, 67 subjects (retention)", "cmmlu", groups=(SUBJECT,),
              domain="general"),
    Benchmark("ceval", "C-Eval Chinese exams, 52 subjects (retention)", "ceval", groups=(SUBJECT,), domain="general"),
    Benchmark("sunmed-vl-mini", "SunMed-VL-mini held-out split (or any SunMed-VL file)", None,
              groups=(MODALITY, ("region", ("region", "body_region")), ("organ", ("organ",)),
                      ("attribute", ("question",)))),
)}


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise DoctorSunError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def group_values(record: dict[str, Any], bench: Benchmark) -> dict[str, str]:
    """The record's breakdown values, e.g. ``{"modality": "CT", "organ": "Abdomen"}``."""
    meta = record.get("meta") or {}
    out = {}
    for name, keys in bench.groups:
        value = next((meta[k] for k in keys if meta.get(k) not in (None, "")), None)
        if value is not None:
            out[name] = str(value).strip()
    return out


@dataclass
class LoadedData:
    """Records of one benchmark split, ready for ``doctorsun.eval.runner.evaluate``."""

    records: list[dict]
    """SunMed-VL records."""
    problems: list[tuple[str, str]]
    """``(item, reason)`` for every item the reader skipped."""
    image_root: Path | None
    """Folder the records' image paths are relative to."""
    data_path: Path
    """The file or folder that was read (hashed into the score file)."""
    split: str | None
    """The split that was read."""


def load_benchmark(name: str, data: str | Path, split: str | None = None) -> LoadedData:
    """Read benchmark ``name`` from ``data`` (its published file or folder)."""
    bench = get_benchmark(name)
    data = Path(data).expanduser()
    if not data.exists():
        raise DoctorSunError(f"{name}: data not found: {data}")
    if bench.converter is None:
        return _load_sunmed(data, split)
    from doctorsun.data.converters import convert

    result = convert(bench.converter, data, **({"split": split} if split else {}))
    return LoadedData(result.records, list(result.problems), result.image_root, data, result.split)


def _load_sunmed(data: Path, split: str | None) -> LoadedData:
    """A SunMed-VL .json/.jsonl file, a folder holding ``{split}.jsonl``, a built corpus or a saved Hugging
    Face dataset folder (``data.io.read_split``)."""
    from doctorsun.data.io import read_split

    records, problems, root, path = read_split(data, split)
    return LoadedData(records, list(problems), root, path, split or (None if path.is_dir() else path.stem))
