"""Converters from the public medical sets' own published layouts into SunMed-VL records.

``convert(name, src, split=..., **options)``: ``src`` is the set's file or folder as downloaded. Each
set lives in its own module with a ``convert(src, split, **options)`` function and ``DEFAULT_SPLIT``;
modules are imported only when used.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from doctorsun.data.converters.base import ConvertResult
from doctorsun.errors import DoctorSunError

__all__ = ["CONVERTERS", "ConvertResult", "convert", "describe", "read_set"]

# name -> (module, one-line description)
CONVERTERS: dict[str, tuple[str, str]] = {
    "vqa-rad": ("vqa_rad", "VQA-RAD: 'VQA_RAD Dataset Public.json' + image folder, or the HF parquet copy"),
    "slake": ("slake", "SLAKE 1.0: {train,validate,test}.json + imgs/ (English and Chinese)"),
    "pathvqa": ("pathvqa", "PathVQA: qas/{split}/{split}_qa.pkl + images/, or the HF parquet copy"),
    "pmc-vqa": ("pmc_vqa", "PMC-VQA: {split}.csv (v1) or {split}_2.csv (v2) + images"),
    "omnimedvqa": ("omnimedvqa", "OmniMedVQA: QA_information/{Open,Restricted}-access/*.json + Images/"),
    "pmc-oa": ("pmc_oa", "PMC-OA: {train,valid,test}.jsonl captions + images/"),
    "roco": ("roco", "ROCO: data/{split}/{radiology,non-radiology}/captions.txt + dlinks.txt + images/"),
    "llava-med": ("llava_med",
                  "LLaVA-Med: LLaVA JSON (instructions or VQA with answer_type), or questions JSONL"),
    "medqa": ("medqa", "MedQA (USMLE / mainland): questions/**/{split}.jsonl"),
    "pubmedqa": ("pubmedqa", "PubMedQA: ori_pqal.json (+ test_ground_truth.json for the test split)"),
    "cmb": ("cmb", "CMB-Exam: CMB-{test,val,train} merge JSON (+ CMB-test-choice-answer.json)"),
    "cmexam": ("cmexam", "CMExam: data/{train,val,test}.csv"),
    "mmbench": ("mmbench", "MMBench: MMBench_{DEV,TEST}_{EN,CN}.tsv (base64 images inside)"),
    "mmmu": ("mmmu", "MMMU: {Subject}/{dev,validation,test}-*.parquet (Health & Medicine subjects by default)"),
    "medxpertqa": ("medxpertqa", "MedXpertQA: {Text,MM}/{dev,test}.jsonl + images/"),
    "iu-xray": ("iu_xray", "IU-Xray: R2Gen's annotation.json + images/, Open-i ecgen-radiology/*.xml + NLMCXR_png/, "
                           "or Kaggle indiana_reports.csv"),
    "mimic-cxr": ("mimic_cxr", "MIMIC-CXR: mimic-cxr-reports/ + mimic-cxr-2.0.0-split.csv + files/ (JPG)"),
    "mmlu": ("mmlu", "MMLU: data/{dev,val,test}/{subject}_{split}.csv, or the Hub copy {subject}/{split}-*.parquet"),
    "cmmlu": ("cmmlu", "CMMLU: {dev,test}/{subject}.csv (Chinese general knowledge)"),
    "ceval": ("ceval", "C-Eval: {dev,val,test}/{subject}_{split}.csv (Chinese exams; test answers withheld)"),
}


PRESETS: dict[str, tuple[str, dict]] = {
    "mmmu-med": ("mmmu", {}),
    "medxpertqa-mm": ("medxpertqa", {"subset": "MM"}),
    "medxpertqa-text": ("medxpertqa", {"subset": "Text"}),
}
"""Names for one converter with fixed options (the ``doctorsun eval --bench`` names that are not a
converter's own): ``convert`` and ``read_set`` take them like converter names."""


def _module(name: str):
    if name not in CONVERTERS:
        raise DoctorSunError(f"unknown data set {name!r}; known: {', '.join(CONVERTERS)}")
    return importlib.import_module(f"doctorsun.data.converters.{CONVERTERS[name][0]}")


def convert(name: str, src: str | Path, **options) -> ConvertResult:
    """Convert one split of public set ``name`` found at ``src``.

    ``split`` defaults to the set's test split for evaluation sets (``train`` for caption and
    instruction sets); other options are the set's own (see ``describe(name)``).
    """
    if name in PRESETS:
        name, fixed = PRESETS[name]
        options = {**fixed, **options}
    module = _module(name)
    src = Path(src).expanduser()
    if not src.exists():
        raise DoctorSunError(f"{name}: source not found: {src}")
    split = options.pop("split", None) or module.DEFAULT_SPLIT
    accepted = set(inspect.signature(module.convert).parameters) - {"src", "split"}
    unknown = set(options) - accepted
    if unknown:
        raise DoctorSunError(f"{name}: unknown option(s) {', '.join(sorted(unknown))}; "
                             f"accepted: {', '.join(sorted(accepted)) or 'none'}")
    result = module.convert(src, split, **options)
    result.name = name
    return result


def describe(name: str) -> str:
    """The set's description, default split and options (the converter's docstring)."""
    module = _module(name)
    doc = inspect.getdoc(module.convert) or ""
    return f"{name}: {CONVERTERS[name][1]}\ndefault split: {module.DEFAULT_SPLIT}\n{doc}"


def read_set(name: str, src: str | Path, split: str | None = None, **options) -> ConvertResult:
    """Records of a named public set (its converter; ``split`` defaults to its test split for benchmarks),
    or, for any other name (``file``, ``sunmed-vl-mini``), of a SunMed-VL / LLaVA / ShareGPT file, a folder
    holding ``{split}.jsonl``, a built corpus or a saved dataset (``data.io.read_split``)."""
    if name in CONVERTERS or name in PRESETS:
        return convert(name, src, **({"split": split} if split else {}), **options)
    from doctorsun.data.io import read_split

    if options:
        raise DoctorSunError(f"{name}: a record file takes no converter options ({', '.join(sorted(options))}); "
                             f"known set names: {', '.join(CONVERTERS)}")
    src = Path(src).expanduser()
    if not src.exists():
        raise DoctorSunError(f"{name}: not found: {src} ({name!r} is no set name, so it is read as a record file)")
    records, problems, root, path = read_split(src, split)
    return ConvertResult(records, list(problems), root, split or path.stem, name)
