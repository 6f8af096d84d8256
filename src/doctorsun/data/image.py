"""Reading medical images as RGB PIL images: DICOM, NIfTI, PNG/JPEG/TIFF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from doctorsun.errors import DoctorSunError

MAX_PIXELS = 64_000_000
"""Refuse larger images (decompression bombs)."""


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    arr = arr.astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return ((arr - lo) / (hi - lo) * 255.0).round().astype(np.uint8)


def _read_dicom(path: Path) -> Image.Image:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    if getattr(ds, "NumberOfFrames", 1) > 1 and arr.ndim >= 3 and getattr(ds, "SamplesPerPixel", 1) == 1:
        arr = arr[arr.shape[0] // 2]
    if getattr(ds, "SamplesPerPixel", 1) == 1:
        arr = apply_voi_lut(apply_modality_lut(arr, ds), ds)
        img = _to_uint8(arr)
        if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
            img = 255 - img
        return Image.fromarray(img).convert("RGB")
    return Image.fromarray(_to_uint8(arr)).convert("RGB")


def load_image(path: str | Path, **options) -> Image.Image:
    """Read any supported image as RGB; raise ``DoctorSunError`` naming the file when it cannot."""
    path = Path(path)
    if not path.is_file():
        raise DoctorSunError(f"image not found: {path}")
    try:
        if path.suffix.lower() in (".dcm", ".dicom") or _is_dicom(path):
            return _read_dicom(path)
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise DoctorSunError(f"image {path} has {im.width * im.height} pixels, over the {MAX_PIXELS} limit")
            return im.convert("RGB")
    except DoctorSunError:
        raise
    except Exception as exc:
        raise DoctorSunError(f"cannot read image {path}: {exc}") from exc


def _is_dicom(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return head[128:132] == b"DICM"
