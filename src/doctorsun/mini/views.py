"""Views: the 128 x 128 pictures of SunMed-VL-mini, cut from the bases with a seeded augmentation.

A view is one crop (with a small rotation, brightness and contrast change; flips only where the subject
has no left or right) of one base. The train/test split is made per split unit before any view is cut:
sources with many bases (cine frames, volume slices) hold out whole frames and slices, stratified by
plane; sources with one or a few bases hold out views. Either way no test view's image is ever shown in
training, and every source (so every modality) has test views.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageEnhance

from doctorsun.data.image import pad_to_square
from doctorsun.mini.sources import Base

SIZE = 128
"""Side of every stored view in pixels (the mini model resizes to 64)."""


def rng_for(seed: int, *names: str) -> np.random.Generator:
    """An independent, stable random stream per (seed, purpose): adding a source does not shift others."""
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


@dataclass
class View:
    """One stored picture and what is known about it."""

    id: str
    """File stem under ``images/`` and the ``meta.view`` of its records."""
    image: Image.Image
    """128 x 128 RGB."""
    split: str
    """``train`` or ``test``."""
    base: str
    """Key of the base it was cut from."""
    meta: dict = field(default_factory=dict)
    """Decoding and augmentation parameters."""


def choose_test_groups(bases: list[Base], n_train: int, n_test: int, rng: np.random.Generator) -> set[str]:
    """Hold out whole groups (frames, slices) in the proportion of test views, at least one per stratum."""
    groups: dict[str, list[str]] = {}
    for b in bases:
        groups.setdefault(b.meta.get("plane", ""), [])
        if b.group not in groups[b.meta.get("plane", "")]:
            groups[b.meta.get("plane", "")].append(b.group)
    held = set()
    for stratum in sorted(groups):
        names = sorted(groups[stratum])
        k = max(1, round(len(names) * n_test / (n_train + n_test)))
        held.update(rng.choice(names, size=min(k, len(names) - 1), replace=False).tolist())
    return held


def assign(bases: list[Base], n_train: int, n_test: int, rng: np.random.Generator) -> list[tuple[Base, str]]:
    """(base, split) for each view to make, train views first."""
    if all(b.group for b in bases) and len({b.group for b in bases}) >= 4:
        held = choose_test_groups(bases, n_train, n_test, rng)
        train = [b for b in bases if b.group not in held]
        test = [b for b in bases if b.group in held]
    else:
        train = test = bases
    plan = [(train[i % len(train)], "train") for i in rng.permutation(max(n_train, len(train)))[:n_train]]
    plan += [(test[i % len(test)], "test") for i in rng.permutation(max(n_test, len(test)))[:n_test]]
    return plan


def prepare(base: Image.Image, fit: str, smallest_crop: float) -> Image.Image:
    """Pad (``fit="pad"``) and shrink a base once, to the least size at which even its smallest crop
    still has 1.5x the pixels of a view: augmenting a 1411 px photograph would be 30x slower."""
    image = pad_to_square(base) if fit == "pad" else base
    limit = math.ceil(1.5 * SIZE / smallest_crop)
    short = min(image.size)
    if short > limit:
        scale = limit / short
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image


def augment(image: Image.Image, rng: np.random.Generator, crop: tuple[float, float], rotate: float,
            turns: bool = False, mirror: bool = False) -> tuple[Image.Image, dict]:
    """One random view of a prepared base at ``SIZE`` px and the parameters that made it.

    ``turns`` allows quarter turns and ``mirror`` left-right flips: only for subjects with no up or left.
    """
    params: dict = {}
    if turns:
        params["quarter_turns"] = int(rng.integers(4))
        image = image.rotate(90 * params["quarter_turns"], expand=True)
    if mirror:
        params["mirror"] = bool(rng.integers(2))
        if params["mirror"]:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    width, height = image.size
    angle = round(float(rng.uniform(-rotate, rotate)), 1) if rotate else 0.0
    if angle:
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    side = max(1, round(min(width, height) * float(rng.uniform(*crop))))
    left = int(rng.integers(0, width - side + 1))
    top = int(rng.integers(0, height - side + 1))
    image = image.crop((left, top, left + side, top + side))
    resample = Image.Resampling.LANCZOS if side > SIZE else Image.Resampling.BICUBIC
    image = image.resize((SIZE, SIZE), resample)
    brightness = round(float(rng.uniform(0.85, 1.15)), 2)
    contrast = round(float(rng.uniform(0.85, 1.15)), 2)
    image = ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(brightness)).enhance(contrast)
    params.update(rotate=angle, crop=[left, top, side], brightness=brightness, contrast=contrast)
    return image, params
