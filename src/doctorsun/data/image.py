"""Reading medical images as RGB PIL images: DICOM, NIfTI, PNG/JPEG/TIFF, through one ``load_image``.

Every reader ends the same way (``doctorsun.data.pixels``): a 2-D array of intensities is windowed to
[0, 1] (the file's own window, a named CT window, an explicit centre/width, or percentiles), turned into
8-bit grey and then RGB, so a model sees a CT slice, an MRI volume and a photograph in the same form.
Errors name the file and never a DICOM element's value (those can identify a patient).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from doctorsun.data.dicom import read_dicom
from doctorsun.data.nifti import read_nifti
from doctorsun.data.pixels import ImageOptions, auto_unit, check_size, safe_reason, unit_to_rgb
from doctorsun.errors import DoctorSunError

NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img", ".mgz", ".mgh")
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")


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
                return read_dicom(path, opts)
            if kind == "nifti":
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
