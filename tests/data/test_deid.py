"""De-identification (PS3.15 basic profile) and the rule that identifying DICOM values never leave doctorsun."""

from __future__ import annotations

import copy
import logging
import warnings

import pydicom
import pytest
from pydicom import config
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from doctorsun.data.deid import deidentify, deidentify_file, identifying_elements
from doctorsun.data.image import load_image
from doctorsun.errors import DoctorSunError

IDENTIFIERS = {
    "PatientName": "Zhang^Wei", "PatientID": "PID-8812731", "PatientBirthDate": "19610704",
    "PatientAddress": "12 Harbour Road", "InstitutionName": "Riverside General Hospital",
    "AccessionNumber": "ACC99312", "ReferringPhysicianName": "Okafor^Ngozi", "StudyDate": "20190311",
    "OtherPatientIDs": "MRN-445566", "StudyDescription": "Chest CT for Zhang",
}


def _identified() -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword, value in IDENTIFIERS.items():
        setattr(ds, keyword, value)
    observer = Dataset()
    observer.VerifyingObserverName = "Lindqvist^Anna"  # a person name inside a sequence
    observer.VerificationDateTime = "20190312101500"
    ds.VerifyingObserverSequence = [observer]
    ref = Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    ds.ReferencedImageSequence = [ref]
    ds.add_new(0x00091099, "LO", "private note Zhang")
    ds.private_block(0x0011, "ACME", create=True).add_new(0x01, "LO", "private value")
    return ds


SECRETS = [*IDENTIFIERS.values(), "Lindqvist", "private note", "private value", "1.2.3.4.5.6.7.8.9"]


def test_basic_profile_blanks_identifiers_and_keeps_pixels(tmp_path):
    ds = _identified()
    found = identifying_elements(ds)
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName", "AccessionNumber",
                    "StudyInstanceUID", "VerifyingObserverSequence[0].VerifyingObserverName"):
        assert keyword in found
    assert any(name.startswith("(0009,") for name in found)  # private elements are reported by tag
    before = copy.deepcopy(ds)
    out = deidentify(ds, salt="study-salt")
    assert ds == before  # the input is left alone
    assert identifying_elements(out) == []
    assert out.PixelData == ds.PixelData and out.Rows == ds.Rows and out.Modality == "CT"
    assert out.PatientIdentityRemoved == "YES" and out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    path = tmp_path / "clean.dcm"
    out.save_as(path, enforce_file_format=False)
    data = path.read_bytes()
    for secret in SECRETS:
        assert secret.encode() not in data, secret
    assert ds.SOPInstanceUID.encode() not in data and ds.StudyInstanceUID.encode() not in data


def test_uids_are_remapped_consistently_per_salt():
    a = deidentify(_identified(), salt="s1")
    b = deidentify(_identified(), salt="s1")
    c = deidentify(_identified(), salt="s2")
    assert a.SOPInstanceUID == b.SOPInstanceUID != c.SOPInstanceUID
    assert a.SOPInstanceUID.startswith("2.25.") and len(a.SOPInstanceUID) <= 64
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID  # references stay consistent
    # a reference to another instance maps to what that instance's own UID becomes
    other = _identified()
    other.SOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    assert deidentify(other,
                      salt="s1").SOPInstanceUID == a.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert a.SOPClassUID == _identified().SOPClassUID  # class UIDs say what it is, not who: kept


def test_pseudonym_and_check_of_a_raw_file():
    out = deidentify(_identified(), salt="s", pseudonym="SUBJ-001")
    assert str(out.PatientName) == "SUBJ-001" and out.PatientID == "SUBJ-001"
    assert identifying_elements(out, pseudonym="SUBJ-001") == []
    assert "PatientName" in identifying_elements(out)  # without the pseudonym declared, it is flagged
    raw = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"))
    assert "PatientIdentityRemoved (not YES)" in identifying_elements(raw)


def test_deidentify_file_writes_atomically(tmp_path):
    src = tmp_path / "in.dcm"
    _identified().save_as(src, enforce_file_format=False)
    dst = deidentify_file(src, tmp_path / "out" / "clean.dcm", salt="s")
    assert identifying_elements(pydicom.dcmread(dst)) == []
    assert sorted(p.name for p in dst.parent.iterdir()) == ["clean.dcm"]  # no temporary file left
    assert load_image(dst).size == load_image(src).size
    with pytest.raises(DoctorSunError, match="DICOM file not found: .*missing.dcm"):
        deidentify_file(tmp_path / "missing.dcm", tmp_path / "x.dcm")


def test_identifying_values_never_reach_errors_logs_or_warnings(tmp_path, caplog, capsys):
    """A broken file full of identifiers: the error names the file, and nothing else leaks."""
    ds = _identified()
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]  # truncated pixel data cannot decode
    path = tmp_path / "broken.dcm"
    with config.disable_value_validation():
        ds.PatientAge = "heavy Zhang"  # an invalid AS value: validators quote such values in warnings
        ds.save_as(path, enforce_file_format=False)
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DoctorSunError) as err:
            load_image(path)
    message = str(err.value)
    assert message.startswith(f"cannot read image {path}")
    said = message + caplog.text + "".join(capsys.readouterr()) + "".join(str(w.message) for w in caught)
    for secret in SECRETS:
        assert secret not in said, secret
    assert "Zhang" not in said and "heavy" not in said
