"""load_image on NIfTI volumes (planes, orientation, slices, volumes) and Pillow formats (16-bit, TIFF,
EXIF, alpha), and the decompression-bomb limits."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from doctorsun.data.image import load_image
from doctorsun.data.nifti import slice_count
from doctorsun.errors import DoctorSunError

LAS = np.diag([-2.0, 2.0, 2.0, 1.0])  # array axis 0 runs to the patient's left


def _volume(tmp_path: Path, data: np.ndarray, affine: np.ndarray, name: str = "vol.nii.gz") -> Path:
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _marked(shape=(10, 12, 8)) -> np.ndarray:
    """Low noise with one bright voxel at the patient's right (i=1 in LAS), anterior (j=10), mid height (k=4)."""
    data = np.random.default_rng(0).uniform(0, 100, shape).astype(np.float32)
    data[1, 10, 4] = 1000
    return data


def _brightest(image: Image.Image) -> tuple[int, int]:
    arr = np.asarray(image)[..., 0]
    return tuple(int(v) for v in np.unravel_index(arr.argmax(), arr.shape))


@pytest.mark.parametrize(("plane", "index", "size", "where"), [
    ("axial", 4, (10, 12), (1, 1)),  # anterior at the top, the patient's right on the viewer's left
    ("coronal", 10, (10, 8), (3, 1)),  # superior at the top, the patient's right on the viewer's left
    ("sagittal", 8, (12, 8), (3, 1)),  # superior at the top, anterior on the left
])
def test_nifti_planes_follow_the_radiological_convention(tmp_path, plane, index, size, where):
    path = _volume(tmp_path, _marked(), LAS)
    image = load_image(path, plane=plane, slice=index)
    assert image.mode == "RGB" and image.size == size
    assert _brightest(image) == where
    assert np.asarray(image)[where][0] == 255  # percentile windowing puts the bright voxel at white


def test_nifti_slicing_does_not_depend_on_the_stored_axis_order(tmp_path):
    data = _marked()
    plain = _volume(tmp_path, data, LAS, "plain.nii")
    swapped = _volume(tmp_path, np.ascontiguousarray(data.transpose(2, 1, 0)), LAS[:, [2, 1, 0, 3]],
                      "swapped.nii")
    for plane in ("axial", "coronal", "sagittal"):
        assert slice_count(plain, plane) == slice_count(swapped, plane)
        for k in (0, slice_count(plain, plane) // 2):
            a = np.asarray(load_image(plain, plane=plane, slice=k))
            b = np.asarray(load_image(swapped, plane=plane, slice=k))
            assert np.array_equal(a, b)


def test_nifti_anisotropic_voxels_keep_proportions(tmp_path):
    path = _volume(tmp_path, _marked(), np.diag([-1.0, 1.0, 3.0, 1.0]))
    assert load_image(path, plane="coronal").size == (10, 24)  # 8 slices of 3 mm shown 24 px tall
    assert load_image(path, plane="axial").size == (10, 12)


def test_nifti_4d_volume_and_slice_limits(tmp_path):
    data = np.stack([_marked(), _marked() * 0 + np.arange(8, dtype=np.float32)], axis=-1)
    path = _volume(tmp_path, data, LAS)
    first, second = np.asarray(load_image(path)), np.asarray(load_image(path, volume=1))
    assert not np.array_equal(first, second)
    with pytest.raises(DoctorSunError, match="volume 2 out of range for .*vol.nii.gz"):
        load_image(path, volume=2)
    with pytest.raises(DoctorSunError, match="slice 8 out of range for .*vol.nii.gz \\(8 axial slices\\)"):
        load_image(path, slice=8)
    with pytest.raises(DoctorSunError, match="over the 50 limit"):
        load_image(path, max_pixels=50)
    with pytest.raises(DoctorSunError, match="plane must be one of"):
        load_image(path, plane="oblique")


def test_nibabel_anatomical_loads_in_every_plane():
    path = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"
    counts = {plane: slice_count(path, plane) for plane in ("axial", "coronal", "sagittal")}
    assert counts == {"axial": 25, "coronal": 41, "sagittal": 33}
    for plane in counts:
        image = load_image(path, plane=plane)
        arr = np.asarray(image)
        assert image.mode == "RGB" and arr.std() > 20  # real anatomy, not a blank slice
        assert np.array_equal(arr, np.asarray(load_image(path, plane=plane, slice=counts[plane] // 2)))


def test_16_bit_png_is_windowed_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (16, 1))
    path = tmp_path / "xray16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    grey = np.asarray(load_image(path))[..., 0].astype(int)
    assert grey[0, 0] == 0 and grey[0, -1] == 255
    assert (np.diff(grey[0]) >= 0).all() and len(np.unique(grey[0])) > 50  # the whole ramp survives


def test_tiff_pages_jpeg_exif_and_alpha(tmp_path):
    pages = [Image.new("L", (8, 8), v) for v in (10, 200)]
    tiff = tmp_path / "stack.tif"
    pages[0].save(tiff, save_all=True, append_images=pages[1:])
    assert np.asarray(load_image(tiff))[0, 0, 0] == 10
    assert np.asarray(load_image(tiff, frame=1))[0, 0, 0] == 200
    with pytest.raises(DoctorSunError, match="frame 2 out of range for .*stack.tif"):
        load_image(tiff, frame=2)
    jpeg = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.new("RGB", (20, 10), (200, 30, 30)).save(jpeg, exif=exif.tobytes())
    assert load_image(jpeg).size == (10, 20)
    rgba = tmp_path / "alpha.png"
    Image.new("RGBA", (4, 4), (255, 255, 255, 0)).save(rgba)
    assert np.asarray(load_image(rgba)).max() == 0  # transparent pixels become black, not white noise


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A tiny PNG that claims to be width x height (a decompression bomb needs no more than that)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))


def test_decompression_bombs_are_refused(tmp_path):
    ours = tmp_path / "big.png"
    _png_header_only(ours, 9000, 9000)  # over our 64 Mpx limit, under Pillow's own
    with pytest.raises(DoctorSunError, match=f"image {ours} has 9000x9000 = 81000000 pixels, over the"):
        load_image(ours)
    pillows = tmp_path / "bomb.png"
    _png_header_only(pillows, 100_000, 100_000)  # Pillow refuses this one itself
    with pytest.raises(DoctorSunError, match=f"{pillows}"):
        load_image(pillows, max_pixels=10**12)
    small = tmp_path / "small.png"
    Image.new("RGB", (100, 100)).save(small)
    with pytest.raises(DoctorSunError, match="over the 5000 limit"):
        load_image(small, max_pixels=5000)
