"""No DICOM element value reaches a log or a stream: pydicom's own logger included."""

from __future__ import annotations

import logging

import pydicom
from pydicom.data import get_testdata_file

from doctorsun.cli import main
from doctorsun.data.image import load_image

SECRET = "ZQXSECRETPATIENT"


def test_element_values_never_reach_logs_or_streams(tmp_path, caplog, capfd):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = f"{SECRET}^Jane"
    ds.SpecificCharacterSet = f"ISO_IR {SECRET}"  # an unknown encoding: pydicom logs its value
    path = tmp_path / "scan.dcm"
    ds.save_as(path)
    records = tmp_path / "data.jsonl"
    records.write_text('{"id": "a", "image": "scan.dcm", "lang": "en", "source": "t", "task": "vqa-open", '
                       '"conversations": [{"from": "human", "value": "<image>\\nWhat?"}, '
                       '{"from": "gpt", "value": "A CT."}]}\n')
    with caplog.at_level(logging.DEBUG):
        logging.getLogger().setLevel(logging.DEBUG)
        image = load_image(path)
        assert main(["-v", "data", "check", str(records)]) == 0
    out, err = capfd.readouterr()
    assert image.size == (128, 128)
    assert SECRET not in caplog.text and SECRET not in out and SECRET not in err
    assert all(SECRET not in str(r.args) for r in caplog.records)
