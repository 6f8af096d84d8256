"""load_image on DICOM: every decodable pydicom test file, windows, LUTs, photometric kinds, frames, limits."""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from doctorsun.data.image import load_image, pad_to_square
from doctorsun.data.pixels import NAMED_WINDOWS, safe_reason, window_unit
from doctorsun.errors import DoctorSunError


def _decodable(path: str) -> bool:
    """pydicom's own verdict: the file reads and its pixel array decodes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _ = pydicom.dcmread(path).pixel_array
        except Exception:
            return False
    return True


def _grey(image: Image.Image) -> np.ndarray:
    arr = np.asarray(image)
    assert image.mode == "RGB" and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    return arr[..., 0].astype(int)


def _save(ds: Dataset, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=False)
    return path


def test_every_pydicom_test_file_loads_when_pydicom_can_decode_it():
    files = [f for f in get_testdata_files() if os.path.isfile(f)]
    assert len(files) > 80
    loaded, refused, wrong = 0, 0, []
    for path in sorted(files):
        expected = _decodable(path)
        try:
            image = load_image(path)
            ok = image.mode == "RGB" and image.width > 0 and image.height > 0
        except DoctorSunError as exc:
            ok = False
            if expected or Path(path).name not in str(exc):
                wrong.append((path, str(exc)))
        if ok != expected:
            wrong.append((path, f"loaded={ok} pydicom decodes={expected}"))
        loaded += ok
        refused += not ok
    assert not wrong
    assert loaded >= 75 and refused >= 10  # both kinds really exercised


def test_ct_rescale_and_named_window_follow_the_dicom_formula():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = apply_modality_lut(ds.pixel_array, ds)  # slope/intercept -> Hounsfield units
    assert float(ds.RescaleIntercept) == -1024
    for name in ("lung", "bone", "brain"):
        center, width = NAMED_WINDOWS[name]
        expected = np.round(window_unit(hu, center, width) * 255)
        got = _grey(load_image(path, window=name))
        assert np.abs(got - expected).max() <= 1
    lung, bone = _grey(load_image(path, window="lung")), _grey(load_image(path, window="bone"))
    assert lung.mean() > bone.mean() + 40  # soft tissue is bright in a lung window, grey in a bone window
    assert np.array_equal(_grey(load_image(path, window="-600,1500")), lung)
    assert np.array_equal(_grey(load_image(path, window=(-600, 1500))), lung)


def test_default_uses_the_files_window_and_ct_falls_back_to_soft_tissue():
    mr = get_testdata_file("MR_small.dcm")
    ds = pydicom.dcmread(mr)
    expected = np.round(window_unit(ds.pixel_array, float(ds.WindowCenter), float(ds.WindowWidth)) * 255)
    assert np.abs(_grey(load_image(mr)) - expected).max() <= 1
    ct = get_testdata_file("CT_small.dcm")
    assert "WindowCenter" not in pydicom.dcmread(ct)
    assert np.array_equal(_grey(load_image(ct)), _grey(load_image(ct, window="soft_tissue")))


def test_voi_lut_sequence_is_applied(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    del ds.WindowCenter, ds.WindowWidth
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new(0x00283006, "US", [4095 - i for i in range(4096)])  # LUT Data: an inverting LUT
    ds.VOILUTSequence = [item]
    path = _save(ds, tmp_path, "voi.dcm")
    got = _grey(load_image(path))
    raw = ds.pixel_array.astype(float)
    assert np.corrcoef(got.ravel(), raw.ravel())[0, 1] < -0.99  # brighter stored value -> darker pixel


def test_monochrome1_is_inverted(tmp_path):
    path = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), "dicomdirtests", "77654033",
                        "CR1", "6154")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    as_m1 = _grey(load_image(path))
    ds.PhotometricInterpretation = "MONOCHROME2"
    as_m2 = _grey(load_image(_save(ds, tmp_path, "m2.dcm")))
    assert np.array_equal(as_m1, 255 - as_m2)


def test_ybr_and_palette_colour():
    rgb = np.asarray(load_image(get_testdata_file("SC_rgb_dcmtk_+eb+cr.dcm"))).astype(int)
    ybr = np.asarray(load_image(get_testdata_file("SC_rgb_dcmtk_+eb+cy+n1.dcm"))).astype(int)
    assert np.abs(rgb - ybr).mean() < 3  # same picture stored as RGB and as YBR_FULL
    assert tuple(rgb[5, 50]) == (255, 0, 0)  # the red bar stays red
    palette = np.asarray(load_image(get_testdata_file("examples_palette.dcm")))
    assert palette.shape[-1] == 3 and palette.std() > 5


def test_16_and_32_bit_colour_match_8_bit():
    eight = np.asarray(load_image(get_testdata_file("SC_rgb_rle.dcm"))).astype(int)
    for name in ("SC_rgb_rle_16bit.dcm", "SC_rgb_rle_32bit.dcm"):
        assert np.abs(np.asarray(load_image(get_testdata_file(name))).astype(int) - eight).max() <= 1


def test_multiframe_middle_by_default_and_frame_option():
    path = get_testdata_file("examples_ybr_color.dcm")
    frames = int(pydicom.dcmread(path, stop_before_pixels=True).NumberOfFrames)
    middle = np.asarray(load_image(path))
    assert np.array_equal(middle, np.asarray(load_image(path, frame=frames // 2)))
    assert not np.array_equal(middle, np.asarray(load_image(path, frame=0)))
    with pytest.raises(DoctorSunError, match=f"frame {frames} out of range for .*examples_ybr_color.dcm"):
        load_image(path, frame=frames)


def test_enhanced_multiframe_functional_groups(tmp_path):
    """Rescale and window stored per frame (enhanced CT/MR) give the same picture as top-level ones."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    reference = _grey(load_image(get_testdata_file("CT_small.dcm"), window="30,150"))
    enhanced = copy.deepcopy(ds)
    transform, voi, group = Dataset(), Dataset(), Dataset()
    transform.RescaleSlope, transform.RescaleIntercept = ds.RescaleSlope, ds.RescaleIntercept
    transform.RescaleType = "HU"
    voi.WindowCenter, voi.WindowWidth = 30, 150
    group.PixelValueTransformationSequence, group.FrameVOILUTSequence = [transform], [voi]
    enhanced.SharedFunctionalGroupsSequence = [group]
    del enhanced.RescaleSlope, enhanced.RescaleIntercept
    assert np.array_equal(_grey(load_image(_save(enhanced, tmp_path, "enh.dcm"))), reference)


def test_dicom_pixel_limit(tmp_path):
    path = get_testdata_file("CT_small.dcm")
    with pytest.raises(DoctorSunError,
                       match=r"CT_small.dcm has 128x128 = 16384 pixels, over the 10000 limit"):
        load_image(path, max_pixels=10_000)


def test_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.dcm"
    with pytest.raises(DoctorSunError, match=f"image not found: {missing}"):
        load_image(missing)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 200)
    with pytest.raises(DoctorSunError, match=f"cannot read image {junk}"):
        load_image(junk)
    truncated = get_testdata_file("MR_truncated.dcm")
    with pytest.raises(DoctorSunError, match="cannot read image .*MR_truncated.dcm: "):
        load_image(truncated)
    with pytest.raises(DoctorSunError, match="unknown image option"):
        load_image(get_testdata_file("CT_small.dcm"), windw="lung")
    with pytest.raises(DoctorSunError, match="unknown window 'lungs'"):
        load_image(get_testdata_file("CT_small.dcm"), window="lungs")


def test_safe_reason_drops_quoted_values():
    reason = safe_reason(ValueError("Invalid value for VR PN: 'Doe^Jane' in \"Hospital X\"\nsecond line"))
    assert "Doe" not in reason and "Hospital" not in reason and "second" not in reason
    assert reason.startswith("Invalid value for VR PN")


def test_pad_to_square_centres_the_image():
    image = Image.new("RGB", (40, 20), (255, 255, 255))
    square = pad_to_square(image, (0, 0, 0))
    arr = np.asarray(square)
    assert square.size == (40, 40)
    assert arr[:10].max() == 0 and arr[30:].max() == 0 and arr[10:30].min() == 255
