"""A DICOM's trip through chat, the API, evaluation, data check and training: its patient name and an
unknown-encoding value (which pydicom logs) reach no log, no stream and no file the trip writes."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import httpx
import pydicom
from pydicom.data import get_testdata_file

from doctorsun.cli import main

SECRET = "ZQXTRIPPATIENT"


def dicom_with_secret(folder: Path) -> Path:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID = f"{SECRET}^Jane", f"{SECRET}-ID"
    ds.SpecificCharacterSet = f"ISO_IR {SECRET}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scan.dcm"
    ds.save_as(path)
    return path


def written_text(folder: Path) -> str:
    """Everything a run wrote that is not weights, as text."""
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*")
                     if p.is_file() and p.suffix not in (".safetensors", ".pt", ".pth", ".png", ".dcm"))


def test_a_dicoms_trip_leaks_nothing(tmp_path, chatty_model_dir, tiny_model_dir, caplog, capfd):
    scan = dicom_with_secret(tmp_path / "data")  # (writing it, pydicom itself logs the value: not ours)
    caplog.clear()
    capfd.readouterr()
    record = {"id": "a", "image": "scan.dcm", "lang": "en", "source": "t", "task": "vqa-open",
              "conversations": [{"from": "human", "value": "<image>\nWhat modality?"}, {"from": "gpt", "value": "CT"}]}
    data = tmp_path / "data" / "records.jsonl"
    data.write_text(json.dumps(record) + "\n" + json.dumps({**record, "id": "b"}) + "\n")
    logging.getLogger().setLevel(logging.DEBUG)
    with caplog.at_level(logging.DEBUG):
        assert main(["-v", "chat", "--model", str(chatty_model_dir), "--image", str(scan), "--max-new-tokens", "3",
                     "What is it?"]) == 0
        assert main(["-v", "data", "check", str(data)]) == 0
        assert main(["-v", "eval", "--model", str(tiny_model_dir), "--bench", "sunmed-vl-mini", "--data", str(data),
                     "--out", str(tmp_path / "eval"), "--max-new-tokens", "3"]) == 0
        recipe = tmp_path / "finetune.yaml"
        recipe.write_text(json.dumps({
            "stage": "finetune", "model": str(tiny_model_dir), "output_dir": str(tmp_path / "train"),
            "data": {"train": [str(data)], "max_length": 64},
            "train": {"max_steps": 1, "global_batch": 2, "micro_batch": 2, "save_steps": 1},
            "optim": {"warmup_ratio": 0.0}}))
        assert main(["-v", "train", str(recipe)]) == 0

        from doctorsun.model.generate import Engine
        from doctorsun.serve.api import create_app
        from doctorsun.serve.config import ServeConfig
        from tests.serve.conftest import Server

        url = "data:application/dicom;base64," + base64.b64encode(scan.read_bytes()).decode()
        with Server(create_app(Engine.load(chatty_model_dir), ServeConfig(model_name="m"))) as srv:
            res = httpx.post(f"{srv.url}/v1/chat/completions", timeout=60, json={
                "model": "m", "max_tokens": 3, "messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What?"}]}]})
            assert res.status_code == 200 and SECRET not in res.text
    out, err = capfd.readouterr()
    for where, text in (("stdout", out), ("stderr", err), ("logs", caplog.text),
                        ("eval files", written_text(tmp_path / "eval")),
                        ("training files", written_text(tmp_path / "train"))):
        assert SECRET not in text, where
    assert (tmp_path / "eval" / "scores.json").is_file() and (tmp_path / "train" / "model").is_dir()


def test_threaded_decoders_leak_nothing_outside_pytest(tmp_path):
    """``data check`` and ``data build`` decode images in threads, where ``catch_warnings`` is not safe; run
    as a user runs them (a subprocess, with no test harness catching warnings), nothing names the patient."""
    import subprocess
    import sys

    scans = tmp_path / "data"
    dicom_with_secret(scans)
    for i in range(6):  # several files, so that several threads decode at once
        (scans / f"scan{i}.dcm").write_bytes((scans / "scan.dcm").read_bytes())
    rows = [{"id": f"r{i}", "image": f"scan{i}.dcm", "lang": "en", "source": "t", "task": "vqa-open",
             "conversations": [{"from": "human", "value": f"<image>\nWhat is {i}?"}, {"from": "gpt", "value": "CT"}]}
            for i in range(6)]
    (scans / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "m.yaml").write_text(f"sources: [{{path: {scans / 'records.jsonl'}}}]\n")
    env = {**__import__("os").environ, "DOCTORSUN_CACHE": str(tmp_path / "cache"), "PYTHONWARNINGS": "default"}
    for args in (["data", "check", str(scans / "records.jsonl")],
                 ["data", "build", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "built"), "--workers", "4"]):
        proc = subprocess.run([sys.executable, "-m", "doctorsun", "-v", *args], capture_output=True, text=True,
                              timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert SECRET not in proc.stdout + proc.stderr, args
    assert SECRET not in written_text(tmp_path / "built")
