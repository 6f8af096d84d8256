"""De-duplication of a corpus and decontamination against benchmarks' test items.

Both work on ``Item``s (a record's id, absolute image paths and text key), never on whole records, so a
million-record build keeps a few hundred bytes a record in memory; images are matched through
``doctorsun.data.hashing`` (decoded pixels exactly, perceptual hash nearly).

**Duplicates.** A VQA set asks ten questions of one image, so sharing an image does not make two records
duplicates. Two records are duplicates when they say the same thing about the same picture: their images
match (the same file, the same decoded pixels, or, with ``images="near"``, perceptual hashes within the
threshold) and their normalised turns are equal. For the tasks in ``one_per_image`` (captions by default) a
picture is kept once per language whatever the text: a caption corpus built from ROCO and PMC-OA must not hold the same
figure twice under two wordings. The first record in input order is kept; each dropped one names its twin.

**Contamination.** A training record is dropped when any of its images matches an image of a benchmark's
test items (exactly or nearly), or when its normalised turns equal a text-only test item's (MedQA,
PubMedQA, CMB, CMExam). Text is not compared for image questions: "Is this a CT scan? yes" about another
image is no leak.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from doctorsun.data.hashing import (
    DEFAULT_THRESHOLD,
    HashCache,
    ImageHash,
    hash_images,
    near_pairs,
    nearest,
    text_key,
)
from doctorsun.data.records import image_paths, resolve_image
from doctorsun.errors import DoctorSunError

IMAGE_MODES = ("exact", "near", "path")
"""How images are matched: decoded pixels, pixels or perceptual hash, or only the same file."""


@dataclass(frozen=True, slots=True)
class Item:
    """What de-duplication needs of a record (a few hundred bytes: paths and labels are interned)."""

    id: str
    images: tuple[str, ...]
    """Absolute image paths."""
    text: bytes
    """``hashing.text_key`` of its turns."""
    task: str = ""
    source: str = ""
    lang: str = ""


def item_of(record: dict, image_root: str | Path | None, source: str | None = None) -> Item:
    images = tuple(sys.intern(os.path.abspath(resolve_image(p, image_root))) for p in image_paths(record))
    return Item(str(record["id"]), images, text_key(record), sys.intern(str(record.get("task", ""))),
                sys.intern(source if source is not None else str(record.get("source", ""))),
                sys.intern(str(record.get("lang", ""))))


@dataclass(frozen=True)
class Drop:
    """One record taken out, and why."""

    id: str
    reason: str
    """``exact-image``, ``near-image``, ``same-image`` (one per image), ``same-text``, ``unreadable-image``
    (de-duplication), or
    ``benchmark-image``/``benchmark-text`` (decontamination)."""
    twin: str | None = None
    """The kept record (de-duplication) or the benchmark item (``BENCH:id``) it matched."""
    detail: str = ""
    """E.g. the Hamming distance of a near match, or the decoder's error."""
    source: str = ""

    def as_dict(self) -> dict:
        out = {"id": self.id, "reason": self.reason, "twin": self.twin, "detail": self.detail}
        if self.source:
            out["source"] = self.source
        return {k: v for k, v in out.items() if v not in (None, "")}


@dataclass
class ImageGroups:
    """Every distinct image mapped to the first image (in input order) that it matches."""

    canon: dict[str, str] = field(default_factory=dict)
    how: dict[str, tuple[str, int]] = field(default_factory=dict)
    """path -> (``exact``/``near``, distance) for images that matched an earlier one."""


def group_images(paths: Iterable[str], hashes: dict[str, ImageHash], mode: str = "near",
                 threshold: int = DEFAULT_THRESHOLD) -> ImageGroups:
    """Leader clustering in input order: each image joins the first earlier image of the same pixels, else
    the nearest earlier representative within ``threshold`` bits (ties: the oldest), or becomes a
    representative. The near pairs are found in one vectorised pass (``hashing.near_pairs``)."""
    if mode not in IMAGE_MODES:
        raise DoctorSunError(f"unknown image matching {mode!r} (known: {', '.join(IMAGE_MODES)})")
    groups = ImageGroups()
    by_pixels: dict[str, str] = {}
    distinct: list[str] = []  # first image of each pixel content, in input order
    for path in dict.fromkeys(paths):
        h = hashes.get(path)
        if mode == "path" or h is None:
            groups.canon[path] = path
        elif h.pixels in by_pixels:
            groups.how[path] = ("exact", 0)
            groups.canon[path] = by_pixels[h.pixels]  # resolved to its representative below
        else:
            by_pixels[h.pixels] = path
            distinct.append(path)
            groups.canon[path] = path
    if mode == "near" and distinct:
        qi, si, d = near_pairs([hashes[p].phash for p in distinct], [hashes[p].phash for p in distinct],
                               threshold, earlier_only=True)
        earlier: dict[int, list[tuple[int, int]]] = {}
        for a, b, dist in zip(qi.tolist(), si.tolist(), d.tolist(), strict=True):
            earlier.setdefault(a, []).append((dist, b))
        leader = list(range(len(distinct)))
        for j in sorted(earlier):
            reps = [(dist, i) for dist, i in earlier[j] if leader[i] == i]
            if reps:
                dist, i = min(reps)
                leader[j] = i
                groups.canon[distinct[j]] = distinct[i]
                groups.how[distinct[j]] = ("near", dist)
    for path, how in groups.how.items():
        if how[0] == "exact":
            groups.canon[path] = groups.canon[groups.canon[path]]
    return groups


Hashes = tuple[dict[str, ImageHash], dict[str, str]]
"""``hash_images``'s result: path -> hashes, path -> why it could not be decoded."""


def deduplicate(items: list[Item], *, images: str = "near", threshold: int = DEFAULT_THRESHOLD,
                one_per_image: Iterable[str] = ("caption",), hashes: Hashes | None = None,
                workers: int | None = None, cache: HashCache | None = None, progress: bool = False) -> list[Drop]:
    """The records of ``items`` to drop as duplicates of earlier ones (and those whose image cannot be
    decoded), in input order. ``images``: ``near`` (default), ``exact`` or ``path``; ``hashes``: the images'
    hashes when already computed."""
    paths = [p for it in items for p in it.images]
    if hashes is None:
        hashes = ({}, {}) if images == "path" else hash_images(
            paths, workers=workers, cache=cache, progress="hashing images" if progress else None)
    hashes, unreadable = hashes
    groups = group_images(dict.fromkeys(p for p in paths if p not in unreadable), hashes, images, threshold)
    per_image = set(one_per_image)
    kept: dict[tuple, str] = {}
    drops = []
    for it in items:
        bad = next((p for p in it.images if p in unreadable), None)
        if bad is not None:
            drops.append(Drop(it.id, "unreadable-image", None, unreadable[bad], it.source))
            continue
        canon = tuple(groups.canon[p] for p in it.images)
        one = it.task in per_image and bool(canon)
        key = (canon, it.lang, it.task) if one else (canon, it.text)
        twin = kept.setdefault(key, it.id)
        if twin == it.id:
            continue
        matched = [groups.how[p] for p in it.images if p in groups.how]
        if any(kind == "near" for kind, _ in matched):
            reason, detail = "near-image", f"{max(d for _, d in matched)} bit(s) apart"
        elif matched:
            reason, detail = "exact-image", "same decoded pixels"
        elif one:
            reason, detail = "same-image", "same image file"
        else:
            reason, detail = "same-text", "same image file" if canon else "text only"
        if one:
            detail += f"; one {it.task} per image and language"
        drops.append(Drop(it.id, reason, twin, detail, it.source))
    return drops


@dataclass
class BenchmarkIndex:
    """The test items of the benchmarks a corpus is checked against."""

    threshold: int = DEFAULT_THRESHOLD
    near_images: bool = True
    pixels: dict[str, str] = field(default_factory=dict)
    """pixel hash -> ``BENCH:item id``."""
    texts: dict[bytes, str] = field(default_factory=dict)
    """text key of a text-only item -> ``BENCH:item id``."""
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """bench -> {items, images, unreadable}."""
    phashes: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def add(self, bench: str, items: list[Item], *, workers: int | None = None, cache: HashCache | None = None,
            progress: bool = False) -> None:
        hashes, unreadable = hash_images([p for it in items for p in it.images], workers=workers, cache=cache,
                                         progress=f"hashing {bench} images" if progress else None)
        owner: dict[str, str] = {}
        for it in items:
            for p in it.images:
                owner.setdefault(p, f"{bench}:{it.id}")
            if not it.images:
                self.texts.setdefault(it.text, f"{bench}:{it.id}")
        for path, label in owner.items():
            h = hashes.get(path)
            if h is not None and h.pixels not in self.pixels:
                self.pixels[h.pixels] = label
                self.phashes.append(h.phash)
                self.labels.append(label)
        self.counts[bench] = {"items": len(items), "images": len(owner), "unreadable_images": len(unreadable)}

    def match(self, items: list[Item], *, hashes: Hashes | None = None, workers: int | None = None,
              cache: HashCache | None = None, progress: bool = False) -> list[Drop]:
        """The training ``items`` that overlap a benchmark (an unreadable image cannot match: de-duplication
        and training report those)."""
        if hashes is None:
            hashes = hash_images([p for it in items for p in it.images], workers=workers, cache=cache,
                                 progress="hashing training images" if progress else None)
        hashes = hashes[0]
        paths = [p for p in dict.fromkeys(p for it in items for p in it.images) if p in hashes]
        near = {}
        if self.near_images and self.phashes:
            found = nearest([hashes[p].phash for p in paths], self.phashes, self.threshold)
            near = {paths[q]: (dist, self.labels[i]) for q, (dist, i) in found.items()}
        drops = []
        for it in items:
            hit = None
            for p in it.images:
                h = hashes.get(p)
                if h is None:
                    continue
                if h.pixels in self.pixels:
                    hit = Drop(it.id, "benchmark-image", self.pixels[h.pixels], "same decoded pixels", it.source)
                    break
                if p in near:
                    hit = Drop(it.id, "benchmark-image", near[p][1], f"{near[p][0]} bit(s) apart", it.source)
                    break
            if hit is None and it.text in self.texts:
                hit = Drop(it.id, "benchmark-text", self.texts[it.text], "same question and answer", it.source)
            if hit is not None:
                drops.append(hit)
        return drops


def per_benchmark(drops: list[Drop]) -> dict[str, int]:
    """Dropped records by the benchmark they matched."""
    counts: dict[str, int] = {}
    for d in drops:
        bench = (d.twin or "").partition(":")[0]
        counts[bench] = counts.get(bench, 0) + 1
    return dict(sorted(counts.items()))
