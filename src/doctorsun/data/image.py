"""Reading medical images as RGB PIL images: DICOM, NIfTI, PNG/JPEG/TIFF, through one ``load_image``.

Every reader ends the same way: a 2-D array of intensities is windowed to [0, 1] (the file's own window,
a named CT window, an explicit centre/width, or percentiles), turned into 8-bit grey and then RGB, so a
model sees a CT slice, an MRI volume and a photograph in the same form. Errors name the file and never
a DICOM element's value (those can identify a patient).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

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
NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img", ".mgz", ".mgh")
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")


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


def load_image(path: str | Path, **options: Any) -> Image.Image:
    """Read any supported image as 8-bit RGB; raise ``DoctorSunError`` naming the file when it cannot.

    ``options`` are the fields of ``ImageOptions`` (window, percentiles, frame, plane, slice, volume,
    voi_index, max_pixels); options that do not apply to a format are ignored.
    """
    path = Path(path)
    unknown = set(options) - set(ImageOptions.__dataclass_fields__)
    if unknown:
        raise DoctorSunError(f"unknown image option(s) {sorted(unknown)} for {path}")
    opts = ImageOptions(**options)
    if not path.is_file():
        raise DoctorSunError(f"image not found: {path}")
    kind = image_kind(path)
    try:
        with warnings.catch_warnings():
            # Readers warn with element values (a patient's name can be one): never let them out.
            warnings.simplefilter("ignore")
            if kind == "dicom":
                from doctorsun.data.dicom import read_dicom

                return read_dicom(path, opts)
            if kind == "nifti":
                from doctorsun.data.nifti import read_nifti

                return read_nifti(path, opts)
            return _read_pillow(path, opts)
    except DoctorSunError:
        raise
    except Image.DecompressionBombError as exc:
        raise DoctorSunError(f"image {path} refused as a decompression bomb: {exc}") from None
    except Exception as exc:  # a decoder's own failure: report it against the file, once
        raise DoctorSunError(f"cannot read image {path}: {safe_reason(exc)}") from None


def image_kind(path: Path) -> str:
    """``dicom``, ``nifti`` or ``pillow``, from the suffix, else from the file's magic bytes."""
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    with open(path, "rb") as f:
        head = f.read(352)
    if head[128:132] == b"DICM":
        return "dicom"
    if head[344:348] in (b"n+1\0", b"ni1\0") or head[4:8] == b"n+2\0":
        return "nifti"
    return "pillow"


def safe_reason(exc: BaseException) -> str:
    """The first line of an exception's message with quoted text removed: decoders quote element values."""
    import re

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


# --- ordinary images ------------------------------------------------------------------------------


def _read_pillow(path: Path, opts: ImageOptions) -> Image.Image:
    with Image.open(path) as im:  # Image.open reads the header only and runs Pillow's own bomb check
        check_size(path, im.width, im.height, opts)
        n_frames = getattr(im, "n_frames", 1)
        if opts.frame is not None:
            if not 0 <= opts.frame < n_frames:
                raise DoctorSunError(f"frame {opts.frame} out of range for {path} ({n_frames} frame(s))")
            im.seek(opts.frame)
        im.load()
        if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
            # 16/32-bit grey (X-ray exports, microscopy): convert("RGB") would clip at 255, so window.
            arr = np.asarray(im)
            window = "minmax" if opts.window == "auto" else opts.window
            return unit_to_rgb(auto_unit(arr, window, opts))
        im = ImageOps.exif_transpose(im)  # photographs store their orientation in EXIF
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            background = Image.new("RGBA", im.size, (0, 0, 0, 255))
            return Image.alpha_composite(background, im).convert("RGB")
        return im.convert("RGB")


def pad_to_square(image: Image.Image, fill: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """Centre ``image`` on a square canvas of ``fill`` (LLaVA's ``expand2square``), keeping its aspect.

    Source: https://github.com/haotian-liu/LLaVA/blob/main/llava/mm_utils.py (``expand2square``).
    """
    width, height = image.size
    if width == height:
        return image.copy()
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill if image.mode == "RGB" else 0)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas
