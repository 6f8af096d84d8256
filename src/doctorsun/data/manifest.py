"""The SunMed-VL build manifest: typed, validated, saved beside the corpus it built.

```yaml
name: sunmed-vl
seed: 0
ratio: "1:0.5"                 # medical:general (general sources are drawn to this); omit to use them all
replace: false                 # draw general records with replacement when the ratio needs more
sources:
  - name: vqa-rad              # unique label (default: the converter's name)
    converter: vqa-rad         # a `doctorsun data sets` name, or `file` for a SunMed-VL / LLaVA / ShareGPT file
    path: raw/vqa-rad          # relative paths start at the current directory (as in recipes)
    split: train
    options: {}                # the converter's own options
    langs: [en]                # keep only these languages
    tasks: [vqa-closed, vqa-open]
    count: 1000                # a target count (seeded sample; more than there are repeats records) ...
    weight: 1.0                # ... or a weight: 0.5 keeps a seeded half, 2 takes every record twice
    licence: CC0 1.0
    general: false             # a general (non-medical) source, mixed in at `ratio`
dedup: {images: near, threshold: 6, one_per_image: [caption]}     # or `dedup: false`
decontaminate:                 # or omit
  against: [{bench: vqa-rad, path: raw/vqa-rad}, {bench: slake, path: raw/slake, split: test}]
  images: near
translate:                     # or omit: adds translated copies of the named sources
  to: zh
  sources: [vqa-rad]
  endpoint: http://127.0.0.1:8000/v1
  model: NAME
  api_key_env: OPENAI_API_KEY
shard_size: 100000             # records per JSONL shard
```
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from doctorsun.data.hashing import DEFAULT_THRESHOLD
from doctorsun.data.records import LANGS, TASKS
from doctorsun.errors import DoctorSunError

FILE = "file"
"""The converter name of a plain SunMed-VL / LLaVA / ShareGPT file or saved dataset."""


@dataclass
class Source:
    path: str
    converter: str = FILE
    name: str = ""
    split: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    langs: list[str] | None = None
    tasks: list[str] | None = None
    count: int | None = None
    weight: float | None = None
    licence: str = "unknown"
    general: bool = False


@dataclass
class Dedup:
    images: str = "near"
    """``near`` (pixels or perceptual hash), ``exact`` (decoded pixels) or ``path`` (the same file)."""
    threshold: int = DEFAULT_THRESHOLD
    one_per_image: list[str] = field(default_factory=lambda: ["caption"])


@dataclass
class Against:
    bench: str
    """A ``doctorsun eval`` benchmark name (read in its published layout), or ``file``."""
    path: str
    split: str | None = None


@dataclass
class Decontaminate:
    against: list[Against] = field(default_factory=list)
    images: str = "near"
    threshold: int = DEFAULT_THRESHOLD


@dataclass
class Translate:
    to: str
    endpoint: str
    model: str
    sources: list[str] = field(default_factory=list)
    """Source names whose records get a translated copy (empty: every medical source)."""
    api_key_env: str | None = None
    concurrency: int = 8


@dataclass
class Manifest:
    sources: list[Source]
    name: str = "sunmed-vl"
    seed: int = 0
    ratio: str | None = None
    replace: bool = False
    """Draw general records with replacement when the ratio needs more than there are."""
    dedup: Dedup | None = field(default_factory=Dedup)
    decontaminate: Decontaminate | None = None
    translate: Translate | None = None
    shard_size: int = 100_000
    base_dir: str = ""
    """Folder relative paths start at (the current directory, as for recipes; not saved)."""

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("base_dir")
        return out

    def medical(self) -> list[Source]:
        return [s for s in self.sources if not s.general]

    def general(self) -> list[Source]:
        return [s for s in self.sources if s.general]


_NESTED = {("Manifest", "dedup"): Dedup, ("Manifest", "decontaminate"): Decontaminate,
           ("Manifest", "translate"): Translate, ("Decontaminate", "against"): [Against],
           ("Manifest", "sources"): [Source]}


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise DoctorSunError(f"manifest {where.rstrip('.') or 'top'} must be a mapping, not {type(data).__name__}")
    known = {f.name for f in fields(cls)} - {"base_dir"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DoctorSunError(f"unknown manifest key(s) {', '.join(where + k for k in unknown)}")
    kwargs = {}
    for name, value in data.items():
        sub = _NESTED.get((cls.__name__, name))
        if isinstance(sub, list):
            if not isinstance(value, list):
                raise DoctorSunError(f"manifest {where}{name} must be a list")
            value = [_build(sub[0], v, f"{where}{name}[{i}].") for i, v in enumerate(value)]
        elif sub is not None and value is not None and value is not False:
            value = _build(sub, value, f"{where}{name}.")
        elif sub is not None:
            value = None
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise DoctorSunError(f"manifest {where.rstrip('.') or 'top'}: {exc}") from None


def _check(m: Manifest) -> None:
    from doctorsun.data.converters import CONVERTERS
    from doctorsun.data.dedup import IMAGE_MODES
    from doctorsun.data.mix import parse_ratio

    if not m.sources:
        raise DoctorSunError("manifest: no sources")
    names = set()
    for i, s in enumerate(m.sources):
        s.name = s.name or (s.converter if s.converter != FILE else Path(s.path).stem)
        where = f"manifest sources[{i}] ({s.name})"
        if s.name in names:
            raise DoctorSunError(f"{where}: name used twice; give each source its own name")
        names.add(s.name)
        if s.converter != FILE and s.converter not in CONVERTERS:
            raise DoctorSunError(f"{where}: unknown converter {s.converter!r}; known: {FILE}, {', '.join(CONVERTERS)}")
        if s.count is not None and s.weight is not None:
            raise DoctorSunError(f"{where}: give a count or a weight, not both")
        if s.count is not None and (not isinstance(s.count, int) or s.count < 0):
            raise DoctorSunError(f"{where}: count must be a whole number >= 0")
        if s.weight is not None and (not isinstance(s.weight, int | float) or s.weight < 0):
            raise DoctorSunError(f"{where}: weight must be a number >= 0")
        for value, known, what in ((s.langs, LANGS, "langs"), (s.tasks, TASKS, "tasks")):
            bad = sorted(set(value or ()) - set(known))
            if bad:
                raise DoctorSunError(f"{where}: unknown {what} {', '.join(bad)} (known: {', '.join(known)})")
        if not isinstance(s.options, dict):
            raise DoctorSunError(f"{where}: options must be a mapping")
    if m.ratio is not None:
        parse_ratio(m.ratio)
        if not m.general():
            raise DoctorSunError("manifest: a ratio is given but no source is general: true")
    for step in (m.dedup, m.decontaminate):
        if step is not None and step.images not in IMAGE_MODES:
            raise DoctorSunError(f"manifest: images {step.images!r} (known: {', '.join(IMAGE_MODES)})")
    if m.translate is not None:
        if m.translate.to not in LANGS:
            raise DoctorSunError(f"manifest translate.to {m.translate.to!r} (known: {', '.join(LANGS)})")
        bad = sorted(set(m.translate.sources) - {s.name for s in m.medical()})
        if bad:
            raise DoctorSunError(f"manifest translate.sources: no medical source named {', '.join(bad)}")
    if not isinstance(m.shard_size, int) or m.shard_size < 1:
        raise DoctorSunError("manifest shard_size must be a whole number >= 1")


def manifest_from_dict(data: dict, base_dir: str | Path = ".") -> Manifest:
    m = _build(Manifest, data, "")
    m.base_dir = str(Path(base_dir).resolve())
    _check(m)
    return m


def load_manifest(path: str | Path, base_dir: str | Path | None = None) -> Manifest:
    """Read and validate a manifest; relative paths in it start at ``base_dir`` (default: the current
    directory, as in recipes)."""
    path = Path(path)
    if not path.is_file():
        raise DoctorSunError(f"manifest not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DoctorSunError(f"manifest {path} is not valid YAML: {exc}") from None
    return manifest_from_dict(data or {}, Path.cwd() if base_dir is None else base_dir)


def manifest_text(m: Manifest) -> str:
    """The manifest as saved beside the corpus (names filled in, defaults spelled out)."""
    return yaml.safe_dump(json.loads(json.dumps(m.as_dict())), sort_keys=False, allow_unicode=True)
