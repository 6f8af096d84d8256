"""DICOM to RGB, the way a DICOM viewer shows it.

Grey images go through the modality LUT (rescale slope/intercept or a Modality LUT Sequence, so CT values
are Hounsfield units), then the VOI stage (the file's VOI LUT or window, a named window, or a
per-modality default), then MONOCHROME1 / inverse presentation is flipped so that higher is brighter.
Colour images are decoded by pydicom (YBR is converted to RGB there), palette colour goes through its
lookup tables. Multi-frame files give one frame (the middle one unless asked). Enhanced multi-frame
files keep rescale and window per frame in functional groups; those are read too.
Reference: DICOM PS3.3 C.11 (Look Up Tables), C.7.6.3 (Image Pixel), C.7.6.16 (Functional Groups).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from doctorsun.data.pixels import (
    ImageOptions,
    auto_unit,
    check_size,
    range_unit,
    rgb_to_image,
    unit_to_rgb,
    window_unit,
)
from doctorsun.errors import DoctorSunError

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _drop(record: logging.LogRecord) -> bool:
    return False


def silence_pydicom() -> None:
    """pydicom's own log messages can quote element values (``Unknown encoding '<value>'``), which may
    identify a patient: they never reach a handler. A logger filter holds whatever level pydicom (or
    anyone) sets later. Its warnings (the same texts) are ignored by a process-wide filter: the image
    reader's ``catch_warnings`` alone is not enough, because several threads decoding images at once
    (``data check``, the image hashes) save and restore the global filters out of order."""
    logger = logging.getLogger("pydicom")
    if _drop not in logger.filters:
        logger.addFilter(_drop)
    logger.propagate = False
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")


silence_pydicom()


def read_dataset(path: Path, pixels: bool = True):
    """Read a DICOM file; files without the 128-byte preamble and meta header are read too."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    silence_pydicom()  # again: importing pydicom.config resets its logger's level
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=not pixels)
    except InvalidDicomError:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=not pixels)
    if "TransferSyntaxUID" not in ds.file_meta and ds.original_encoding[0] is not None:
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    return ds


def frame_count(ds) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def read_dicom(path: Path, opts: ImageOptions) -> Image.Image:
    ds = read_dataset(path)
    if not any(k in ds for k in PIXEL_KEYWORDS):
        raise DoctorSunError(f"cannot read image {path}: the DICOM object holds no pixel data")
    check_size(path, int(ds.Columns), int(ds.Rows), opts)
    n_frames = frame_count(ds)
    frame = n_frames // 2 if opts.frame is None else opts.frame
    if not 0 <= frame < n_frames:
        raise DoctorSunError(f"frame {frame} out of range for {path} ({n_frames} frame(s))")
    if n_frames > 1:
        ds.pixel_array_options(index=frame)  # decode this frame only
    arr = ds.pixel_array
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # RGB, or YBR already converted to RGB by pydicom
        return rgb_to_image(arr, int(ds.get("BitsStored") or arr.dtype.itemsize * 8))
    if arr.ndim != 2:
        raise DoctorSunError(f"cannot read image {path}: unexpected pixel array shape {arr.shape}")
    if photometric == "PALETTE COLOR":
        return _palette(arr, ds)
    unit = _grey_unit(arr, ds, frame, opts)
    invert = (photometric == "MONOCHROME1") != (str(ds.get("PresentationLUTShape", "")).upper() == "INVERSE")
    return unit_to_rgb(unit, invert=invert)


def _palette(arr: np.ndarray, ds) -> Image.Image:
    from pydicom.pixels import apply_color_lut

    rgb = apply_color_lut(arr, ds)
    bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    if bits == 16 and int(rgb.max()) <= 255:  # some writers declare 16-bit entries but store 8-bit values
        bits = 8
    return rgb_to_image(rgb, bits)


def _grey_unit(arr: np.ndarray, ds, frame: int, opts: ImageOptions) -> np.ndarray:
    """Stored values -> modality values -> [0, 1] through the chosen VOI transform."""
    values, rescaled = _modality_values(arr, ds, frame)
    window = opts.window
    if window == "auto":
        unit = _file_voi(values, ds, frame, opts.voi_index)
        if unit is not None:
            return unit
        bits = int(ds.get("BitsStored") or 8)
        if not rescaled and bits <= 8 and not np.issubdtype(arr.dtype, np.floating):
            return range_unit(values, 0, 2**bits - 1)  # 8-bit captures are already display values
        # CT values are Hounsfield units, so a standard window beats statistics of this one slice.
        window = "soft_tissue" if str(ds.get("Modality", "")).upper() == "CT" and rescaled else "percentile"
    return auto_unit(values, window, opts)


def _modality_values(arr: np.ndarray, ds, frame: int) -> tuple[np.ndarray, bool]:
    """Apply the Modality LUT stage; also say whether values were rescaled (e.g. to HU)."""
    from pydicom.pixels import apply_modality_lut

    if ds.get("ModalityLUTSequence") or ("RescaleSlope" in ds and "RescaleIntercept" in ds):
        return apply_modality_lut(arr, ds), True
    slope = _frame_attr(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _frame_attr(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    if slope is not None and intercept is not None:
        return arr.astype(np.float64) * float(slope) + float(intercept), True
    return arr, False


def _file_voi(values: np.ndarray, ds, frame: int, index: int) -> np.ndarray | None:
    """The file's own VOI LUT or window as [0, 1], or ``None`` when it has no usable one."""
    if ds.get("VOILUTSequence"):
        return _voi_lut(values, ds, min(index, len(ds.VOILUTSequence) - 1))
    center = _frame_attr(ds, frame, "FrameVOILUTSequence", "WindowCenter")
    width = _frame_attr(ds, frame, "FrameVOILUTSequence", "WindowWidth")
    center, width = _pick(center, index), _pick(width, index)
    if center is None or width is None or width <= 0:
        return None
    function = _frame_attr(ds, frame, "FrameVOILUTSequence", "VOILUTFunction") or "LINEAR"
    return window_unit(values, center, width, str(function))


def _voi_lut(values: np.ndarray, ds, index: int) -> np.ndarray:
    from pydicom.pixels import apply_voi

    descriptor = ds.VOILUTSequence[index].LUTDescriptor
    entries, first = int(descriptor[0]) or 2**16, int(descriptor[1])
    lut = apply_voi(np.arange(first, first + entries, dtype=np.int64), ds, index).astype(np.float64)
    positions = np.clip(np.round(values).astype(np.int64) - first, 0, entries - 1)
    return range_unit(lut[positions], float(lut.min()), float(lut.max()))


def _pick(value: Any, index: int) -> float | None:
    """One number from a possibly multi-valued DS element (several windows may be stored)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str | bytes) and hasattr(value, "__len__"):  # MultiValue of DS
        if not len(value):
            return None
        value = value[min(index, len(value) - 1)]
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _frame_attr(ds, frame: int, sequence: str, keyword: str) -> Any:
    """``keyword`` from the top level, else the frame's functional group, else the shared one."""
    if keyword in ds and ds[keyword].value not in (None, ""):
        return ds[keyword].value
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    groups = []
    if per_frame and frame < len(per_frame):
        groups.append(per_frame[frame])
    if shared:
        groups.append(shared[0])
    for group in groups:
        items = group.get(sequence)
        if items and keyword in items[0] and items[0][keyword].value not in (None, ""):
            return items[0][keyword].value
    return None
