"""``doctorsun data translate`` against a real ``doctorsun serve`` (tiny model) on 127.0.0.1: the requests
go through, what the tiny model says is judged by the quality gates, and a re-run is served from the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from doctorsun.data.converters.base import vqa_record
from doctorsun.data.io import write_records
from tests.serve.conftest import API_KEY


def test_translate_through_doctorsun_serve(server, tmp_path):
    records = [vqa_record(f"q{i}", f"Is nodule {i} calcified?", "yes", source="vqa-rad", lang="en",
                          image="a.png") for i in range(3)]
    records.append(vqa_record("o1", "Which lobe is affected?", "Right lower lobe", source="vqa-rad", lang="en",
                              image="a.png"))
    src = tmp_path / "in.jsonl"
    write_records(records, src)
    out = tmp_path / "zh.jsonl"
    cmd = [sys.executable, "-m", "doctorsun", "data", "translate", str(src), "--to", "zh", "--endpoint",
           f"{server.url}/v1", "--model", server.config.model_name, "--api-key-env", "SERVE_KEY", "--out", str(out),
           "--max-tokens", "16", "--concurrency", "2"]
    env = {**os.environ, "SERVE_KEY": API_KEY}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "zh.report.json").read_text())
    assert report["asked"] == 5 and report["from_cache"] == 0  # 3 questions + the open question and answer
    assert report["translated"] + len(report["failed"]) == 4
    for f in report["failed"]:  # a 2-layer random model rarely writes Chinese: the gates say so
        assert not f["reason"].startswith(("HTTP", "gave up")), f
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(kept) == report["translated"] and all(r["lang"] == "zh" for r in kept)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0
    report2 = json.loads((tmp_path / "zh.report.json").read_text())
    assert report2["asked"] == 0 and report2["from_cache"] == 5 and report2["failed"] == report["failed"]
