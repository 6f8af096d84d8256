"""From intensities to pixels, the part every image reader shares: the options of a read, DICOM-style
windowing, percentile and min-max scaling, 8-bit RGB, and error text that never quotes a file's values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from doctorsun.errors import DoctorSunError

MAX_PIXELS = 64_000_000
"""Refuse larger images (decompression bombs); one 8000 x 8000 slide still loads."""

# Window centre and width in Hounsfield units, as radiologists use them:
# https://radiopaedia.org/articles/windowing-ct (section "Common window settings").
NAMED_WINDOWS: dict[str, tuple[float, float]] = {
    "brain": (40, 80),
    "subdural": (75, 200),
    "stroke": (40, 40),
    "temporal_bone": (600, 2800),
    "head_soft_tissue": (40, 380),
    "soft_tissue": (50, 400),
    "mediastinum": (50, 350),
    "lung": (-600, 1500),
    "abdomen": (50, 400),
    "liver": (30, 150),
    "bone": (400, 1800),
    "spine_soft_tissue": (50, 250),
}
AUTO_WINDOWS = ("auto", "minmax", "percentile")
PLANES = ("axial", "coronal", "sagittal")


@dataclass(frozen=True)
class ImageOptions:
    """How to turn a medical file into one RGB picture (every field optional)."""

    window: Any = "auto"
    """``auto`` (the file's VOI LUT / window, else a per-modality default), ``minmax``, ``percentile``,
    a name from ``NAMED_WINDOWS`` (CT, in HU), or ``(centre, width)`` / ``"centre,width"``."""
    percentiles: tuple[float, float] = (0.5, 99.5)
    """Low and high percentiles that map to black and white for ``percentile`` windowing."""
    frame: int | None = None
    """Frame of a multi-frame DICOM or TIFF/GIF (0-based; default: the middle DICOM frame, first page)."""
    plane: str = "axial"
    """NIfTI slicing plane: ``axial``, ``coronal`` or ``sagittal`` (of the RAS-reoriented volume)."""
    slice: int | None = None
    """NIfTI slice index along the plane's axis, counted from right/posterior/inferior (default: middle)."""
    volume: int = 0
    """Volume of a 4-D NIfTI (time point)."""
    voi_index: int = 0
    """Which of several windows / VOI LUTs stored in a DICOM file to use."""
    max_pixels: int = MAX_PIXELS
    """Largest accepted width x height of one frame or slice."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "window", _parse_window(self.window))
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise DoctorSunError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        if self.plane not in PLANES:
            raise DoctorSunError(f"plane must be one of {', '.join(PLANES)}, not {self.plane!r}")
        if self.max_pixels <= 0:
            raise DoctorSunError(f"max_pixels must be positive, got {self.max_pixels}")
        if self.volume < 0 or self.voi_index < 0:
            raise DoctorSunError("volume and voi_index must be >= 0")


def _parse_window(window: Any) -> str | tuple[float, float]:
    if window is None:
        return "auto"
    if isinstance(window, str):
        name = window.strip().lower().replace("-", "_").replace(" ", "_")
        if name in AUTO_WINDOWS or name in NAMED_WINDOWS:
            return name
        if "," in window:
            window = window.split(",")
        else:
            known = ", ".join((*AUTO_WINDOWS, *NAMED_WINDOWS))
            raise DoctorSunError(f"unknown window {window!r}; use centre,width or one of: {known}")
    try:
        center, width = (float(v) for v in window)
    except (TypeError, ValueError):
        raise DoctorSunError(f"window must be a name or (centre, width), not {window!r}") from None
    if width <= 0:
        raise DoctorSunError(f"window width must be positive, got {width}")
    return center, width


def safe_reason(exc: BaseException) -> str:
    """The first line of an exception's message with quoted text removed: decoders quote element values."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    return text[:300] or type(exc).__name__


def check_size(path: Path, width: int, height: int, opts: ImageOptions) -> None:
    if width * height > opts.max_pixels:
        raise DoctorSunError(
            f"image {path} has {width}x{height} = {width * height} pixels, over the {opts.max_pixels} limit"
        )


# --- intensities to pixels -------------------------------------------------------------------------


def window_unit(arr: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Map intensities to [0, 1] with a DICOM VOI window (PS3.3 C.11.2.1.2: LINEAR, LINEAR_EXACT, SIGMOID)."""
    x = arr.astype(np.float64)
    function = function.upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR" and width >= 1:
        center, width = center - 0.5, width - 1.0  # the standard's half-pixel convention
    if width <= 0:
        return (x > center).astype(np.float64)
    return np.clip((x - center) / width + 0.5, 0.0, 1.0)


def range_unit(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:  # a constant image: black rather than a division by zero
        return np.zeros(arr.shape, dtype=np.float64)
    return np.clip((arr.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)


def auto_unit(arr: np.ndarray, window: str | tuple[float, float], opts: ImageOptions) -> np.ndarray:
    """Window a 2-D array without file metadata: explicit/named window, min-max or percentiles."""
    finite = arr[np.isfinite(arr)] if np.issubdtype(arr.dtype, np.floating) else arr
    if finite.size == 0:
        return np.zeros(arr.shape, dtype=np.float64)
    arr = np.nan_to_num(arr.astype(np.float64), nan=float(finite.min()))
    if isinstance(window, tuple):
        return window_unit(arr, *window)
    if window in NAMED_WINDOWS:
        return window_unit(arr, *NAMED_WINDOWS[window])
    lo, hi = float(finite.min()), float(finite.max())
    if window != "minmax":
        plo, phi = np.percentile(finite, opts.percentiles)
        if phi > plo:  # a mostly-constant image (a mask) keeps its full range instead
            lo, hi = float(plo), float(phi)
    return range_unit(arr, lo, hi)


def unit_to_rgb(unit: np.ndarray, invert: bool = False) -> Image.Image:
    """A [0, 1] grey array as an 8-bit RGB image."""
    if invert:
        unit = 1.0 - unit
    grey = np.round(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def rgb_to_image(arr: np.ndarray, bits: int) -> Image.Image:
    """An (H, W, 3) colour array with ``bits`` per sample as 8-bit RGB."""
    if arr.dtype != np.uint8 or bits > 8:
        scale = 255.0 / float(2**bits - 1)
        arr = np.round(np.clip(arr.astype(np.float64) * scale, 0, 255)).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr[..., :3]), mode="RGB")


