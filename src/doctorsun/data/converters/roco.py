"""ROCO (Pelka et al., 2018): ``data/{train,validation,test}/{radiology,non-radiology}/``.

``captions*.txt`` lines are ``ROCO_00020<TAB> caption`` (note the space); ``dlinks*.txt`` lines are
``ROCO_00020<TAB>wget ... PMCID.tar.gz ...<TAB>file.jpg``, and the fetch script saves the image as
``images/<PMCID>_<file.jpg>``. Without dlinks the image is looked for as ``images/<ROCO id>.jpg``.
"""

from __future__ import annotations

import re
from pathlib import Path

from doctorsun.data.converters.base import ITEM_ERRORS, Collector, ConvertResult, caption_record, need_split
from doctorsun.errors import DoctorSunError

DEFAULT_SPLIT = "train"
SOURCE = "roco"
SPLITS = ("train", "validation", "test")
PARTS = {"radiology": ("radiology",), "non-radiology": ("non-radiology",),
         "all": ("radiology", "non-radiology")}
_PMCID = re.compile(r"(PMC\d+)\.tar\.gz")


def convert(src: Path, split: str, part: str = "radiology") -> ConvertResult:
    """Options: ``part`` radiology (default) / non-radiology / all. Splits: train, validation, test.
    ``src`` is the repository root (holding ``data/``) or one split/part folder."""
    if part not in PARTS:
        raise DoctorSunError(f"roco: part must be one of {', '.join(PARTS)}")
    if list(src.glob("captions*.txt")):
        folders = [src]
    else:
        need_split(split, SPLITS, SOURCE)
        base = src / "data" if (src / "data").is_dir() else src
        folders = [base / split / p for p in PARTS[part] if (base / split / p).is_dir()]
        if not folders:
            raise DoctorSunError(f"roco: no {split}/{part} folder under {base}")
    image_root = folders[0] if len(folders) == 1 else folders[0].parent
    out = Collector()
    for folder in folders:
        prefix = "" if len(folders) == 1 else f"{folder.name}/"
        _read_folder(folder, prefix, out)
    return out.result(SOURCE, split, image_root)


def _read_folder(folder: Path, prefix: str, out: Collector) -> None:
    captions = sorted(folder.glob("captions*.txt"))
    if not captions:
        raise DoctorSunError(f"roco: no captions*.txt in {folder}")
    files = _image_names(folder)
    for n, line in enumerate(captions[0].read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        rid, _, caption = line.partition("\t")
        rid = rid.strip()
        try:
            image = files.get(rid, f"{rid}.jpg")
            out.add(caption_record(f"{SOURCE}-{rid}", caption.strip(), source=SOURCE, lang="en",
                                   image=f"{prefix}images/{image}",
                                   meta={"roco_id": rid, "part": folder.name}))
        except ITEM_ERRORS as exc:
            out.skip(rid or f"{captions[0].name} line {n}", str(exc))


def _image_names(folder: Path) -> dict[str, str]:
    """ROCO id -> file name under images/, from dlinks (``<PMCID>_<name>``, as the fetch script saves)."""
    names = {}
    for dlinks in sorted(folder.glob("dlinks*.txt"))[:1]:
        for line in dlinks.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            match = _PMCID.search(line)
            if len(parts) >= 3 and match:
                names[parts[0].strip()] = f"{match.group(1)}_{parts[-1].strip()}"
    return names
