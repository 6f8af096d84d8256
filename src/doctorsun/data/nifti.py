"""NIfTI (and the other volumes nibabel reads) to RGB: one slice of one plane, shown as radiologists do.

Slices are taken in the volume's closest RAS orientation, so ``axial`` means axial whatever order the
file stores its axes in. Display follows the radiological convention: anterior / superior at the top,
the patient's right on the viewer's left, the face to the left on sagittal slices. Anisotropic voxels
are resampled so that anatomy keeps its proportions. Intensities are windowed like any other image
(percentiles by default; a named CT window works on CT volumes stored in HU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from doctorsun.data.pixels import PLANES, ImageOptions, auto_unit, check_size, unit_to_rgb
from doctorsun.errors import DoctorSunError

WORLD_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}
"""Plane -> the RAS axis it cuts across (x: right, y: anterior, z: superior)."""


def _load(path: Path):
    import nibabel as nib

    img = nib.load(str(path))
    if len(img.shape) < 2 or len(img.shape) > 4:
        raise DoctorSunError(f"cannot read image {path}: expected a 2-D, 3-D or 4-D volume, got shape "
                             f"{img.shape}")
    return img


def _orientation(img) -> np.ndarray:
    """Per array axis: (RAS axis, +1/-1), from the affine (nibabel's ``io_orientation``)."""
    import nibabel as nib

    ornt = nib.io_orientation(img.affine)
    if np.isnan(ornt).any():  # degenerate affine: trust the stored axis order
        ornt = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
    return ornt


def slice_count(path: str | Path, plane: str = "axial") -> int:
    """How many slices ``plane`` has in the volume at ``path``."""
    if plane not in PLANES:
        raise DoctorSunError(f"plane must be one of {', '.join(PLANES)}, not {plane!r}")
    img = _load(Path(path))
    shape = tuple(img.shape[:3]) + (1,) * (3 - len(img.shape[:3]))
    axis = [int(a) for a in _orientation(img)[:, 0]].index(WORLD_AXIS[plane])
    return int(shape[axis])


def read_nifti(path: Path, opts: ImageOptions) -> Image.Image:
    img = _load(path)
    shape = tuple(img.shape[:3]) + (1,) * (3 - min(3, len(img.shape)))
    ornt = _orientation(img)
    axes, flips = [int(a) for a in ornt[:, 0]], ornt[:, 1]
    cut = axes.index(WORLD_AXIS[opts.plane])
    n = shape[cut]
    k = n // 2 if opts.slice is None else opts.slice
    if not 0 <= k < n:
        raise DoctorSunError(f"slice {k} out of range for {path} ({n} {opts.plane} slices)")
    keep = [a for a in range(3) if a != cut]
    check_size(path, shape[keep[0]], shape[keep[1]], opts)
    index: list[int | slice] = [slice(None)] * 3
    index[cut] = k if flips[cut] > 0 else n - 1 - k  # slices count from right/posterior/inferior
    if len(img.shape) == 4:
        if opts.volume >= img.shape[3]:
            raise DoctorSunError(f"volume {opts.volume} out of range for {path} ({img.shape[3]} volumes)")
        index.append(opts.volume)
    data = np.asanyarray(img.dataobj[tuple(index[: len(img.shape)])])  # the proxy reads one slice, scaled
    plane = np.asarray(data, dtype=np.float64).reshape(shape[keep[0]], shape[keep[1]])
    for j, a in enumerate(keep):  # make both in-plane indices grow towards R, A or S
        if flips[a] < 0:
            plane = np.flip(plane, j)
    if axes[keep[0]] > axes[keep[1]]:
        plane, keep = plane.T, keep[::-1]
    # (u, v) = (lower RAS axis, higher RAS axis); rows: v from high to low (anterior/superior on top);
    # columns: u from high to low (patient's right on the left; anterior on the left for sagittal).
    display = plane.T[::-1, ::-1]
    image = unit_to_rgb(auto_unit(display, opts.window if opts.window != "auto" else "percentile", opts))
    return _true_aspect(image, img, keep, opts.max_pixels)


MAX_STRETCH = 16.0
"""Largest factor one direction is stretched by for square millimetres (real scans stay well below;
a header claiming 2000:1 voxels must not make a 128,000-pixel-wide picture)."""


def _true_aspect(image: Image.Image, img, keep: list[int], max_pixels: int) -> Image.Image:
    """Stretch the shorter-spaced direction so a pixel is square in millimetres; the stretch and the
    output size are capped (at ``MAX_STRETCH`` and ``max_pixels``) before anything is resized."""
    zooms = [float(z) for z in img.header.get_zooms()[:3]] + [1.0] * 3
    col_mm, row_mm = zooms[keep[0]], zooms[keep[1]]
    if not (min(col_mm, row_mm) > 0) or abs(col_mm - row_mm) < 1e-3 * max(col_mm, row_mm):
        return image
    width, height = image.size
    stretch = min(max(col_mm, row_mm) / min(col_mm, row_mm), MAX_STRETCH)
    if col_mm > row_mm:
        width = round(width * stretch)
    else:
        height = round(height * stretch)
    if width * height > max_pixels:  # keep the proportions, shrink to the pixel limit
        scale = (max_pixels / (width * height)) ** 0.5
        width, height = max(1, int(width * scale)), max(1, int(height * scale))
    return image.resize((width, height), Image.Resampling.BICUBIC)
