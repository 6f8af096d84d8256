"""``doctorsun data translate``: gates, rebuilding with the target's templates, and a real HTTP endpoint that
fails some requests, is killed mid-run and resumed (no text asked twice)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from doctorsun.data.converters.base import mcq_record, vqa_record
from doctorsun.data.io import read_records, write_records
from doctorsun.data.translate import (
    Cache,
    ChatClient,
    gate,
    plan,
    split_prompt,
    translate_records,
)


class Endpoint:
    """An OpenAI-compatible chat endpoint over real HTTP: "translates" by prefixing 译文 (numbers, letters and
    placeholders kept), records every text it answered, and misbehaves on request."""

    def __init__(self, *, fail_once=(), fail_always=(), garbage=(), block_after: int | None = None,
                 delay: float = 0.0):
        self.answered: list[str] = []
        self.admitted = 0  # requests let through while block_after holds; counted under the lock
        self.attempts: dict[str, int] = {}
        self.fail_once, self.fail_always, self.garbage = set(fail_once), set(fail_always), set(garbage)
        self.block_after, self.delay = block_after, delay
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = body["messages"][-1]["content"]
                with outer.lock:
                    outer.attempts[text] = outer.attempts.get(text, 0) + 1
                    n = outer.attempts[text]
                    blocked = outer.block_after is not None and outer.admitted >= outer.block_after
                    outer.admitted += not blocked
                if blocked:  # hold the request until the client is killed
                    time.sleep(60)
                    return
                time.sleep(outer.delay)
                always = any(s in text for s in outer.fail_always)
                if always or (any(s in text for s in outer.fail_once) and n == 1):
                    status, reply = (400 if always else 503), {"error": "no"}
                else:
                    out = "nothing useful" if any(s in text for s in outer.garbage) else f"译文{text}"
                    status, reply = 200, {"choices": [{"message": {"role": "assistant", "content": out}}]}
                    with outer.lock:
                        outer.answered.append(text)
                data = json.dumps(reply, ensure_ascii=False).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _records(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out.append(vqa_record(f"q{i}", f"Is lesion {i} larger than 3 cm?", "yes" if i % 2 else "no",
                              source="vqa-rad", lang="en", image="img.png"))
    out.append(vqa_record("open1", "Which lobe holds the 2 nodules?", "Left upper lobe", source="vqa-rad",
                          lang="en", image="img.png"))
    out.append(mcq_record("mcq1", "Which modality is shown?", ["CT", "MRI", "X-ray"], [1], source="pmc-vqa",
                          lang="en", image="img.png"))
    turns = [{"from": "human", "value": "I have a fever of 39 degrees."},
             {"from": "gpt", "value": "Drink water; see a doctor if it lasts 3 days."}]
    out.append({"id": "dlg1", "conversations": turns, "lang": "en", "source": "dialogue", "task": "dialogue"})
    return out


@pytest.mark.parametrize("src, out, to, why", [
    ("Is the lesion 3 cm?", "病灶是3厘米吗？", "zh", None),
    ("Is the lesion 3 cm?", "Is the lesion 3 cm?", "zh", "no Chinese characters"),
    ("Is the lesion 3 cm?", "病灶是厘米吗？", "zh", "number(s) 3 missing"),
    ("<image>\nWhat is shown?", "显示了什么？", "zh", "placeholders"),
    ("Pick one.\nA. CT\nB. MRI", "选一个。\nA. CT\nC. MRI", "zh", "option letters AB not kept"),
    ("What organ is shown in this image of the abdomen?", "器" * 200, "zh", "length ratio"),
    ("这是CT吗？", "Is this a CT?", "en", None),
    ("这是CT吗？", "这是CT吗？", "en", "not English"),
    ("", "", "zh", "empty translation"),
])
def test_quality_gates(src, out, to, why):
    result = gate(src, out, "zh" if to == "en" else "en", to)
    assert (result is None) if why is None else (why in result), result


def test_a_built_prompt_is_split_and_rebuilt_with_the_target_templates():
    rec = mcq_record("m", "Which modality?", ["CT", "MRI"], [1], source="s", lang="en", image="a.png")
    kind, image, question, options = split_prompt(rec["conversations"][0]["value"], "en")
    assert (kind, image, question, options) == ("mcq", True, "Which modality?", ["CT", "MRI"])
    assert plan(rec).texts == ["Which modality?", "CT", "MRI"]
    closed = vqa_record("c", "Is it a CT?", "yes", source="s", lang="en", image="a.png")
    assert plan(closed).texts == ["Is it a CT?"]  # the yes/no answer is mapped, never asked


def test_translation_rebuilds_records_and_reports_failures(tmp_path):
    ep = Endpoint(fail_once=["lesion 1 "], fail_always=["lesion 2 "], garbage=["lesion 3 "])
    try:
        client = ChatClient(ep.url, "mt", retries=2, backoff=0.01)
        cache = Cache(tmp_path / "cache.jsonl")
        done, report = translate_records(_records(5), "zh", client, cache, concurrency=4)
        cache.close()
    finally:
        ep.close()
    by_id = {r["id"]: r for r in done}
    assert {f for f, _ in report.failed} == {"q2", "q3"}
    assert "HTTP 400" in dict(report.failed)["q2"] and "no Chinese" in dict(report.failed)["q3"]
    assert ep.attempts["Is lesion 1 larger than 3 cm?"] == 2  # the 503 was retried, then answered
    q1 = by_id["q1@zh"]
    assert q1["lang"] == "zh" and q1["conversations"][1]["value"] == "是"
    assert q1["conversations"][0]["value"] == \
        "<image>\n请用“是”或“否”回答下面的问题。\n译文Is lesion 1 larger than 3 cm?"
    assert q1["meta"]["translated_from"]["id"] == "q1" and q1["meta"]["translated_from"]["model"] == "mt"
    m = by_id["mcq1@zh"]
    assert m["choices"] == ["译文CT", "译文MRI", "译文X-ray"] and m["conversations"][1]["value"] == "B. 译文MRI"
    assert "选项：" in m["conversations"][0]["value"] and "请直接回答正确选项的字母。" in m["conversations"][0]["value"]
    assert by_id["dlg1@zh"]["conversations"][0]["value"] == "译文I have a fever of 39 degrees."
    assert all(not [why for why in _valid(r)] for r in done)


def _valid(record):
    from doctorsun.data.records import validate

    return validate(record)


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "doctorsun", "data", "translate", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_a_killed_run_resumes_without_asking_anything_twice(tmp_path):
    src = tmp_path / "in.jsonl"
    write_records(_records(12), src)
    out = tmp_path / "out" / "zh.jsonl"
    ep = Endpoint(block_after=6)
    try:
        args = [str(src), "--to", "zh", "--endpoint", ep.url, "--model", "mt", "--out", str(out),
                "--concurrency", "2", "--api-key-env", "MT_KEY"]
        proc = _cli(*args, env={**os.environ, "MT_KEY": "k"})
        deadline = time.monotonic() + 60
        while len(ep.answered) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the blocked requests are now in flight
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert not out.exists()
        first = list(ep.answered)
        assert len(first) == 6
        ep.block_after = None
        again = _cli(*args, env={**os.environ, "MT_KEY": "k"})
        log, _ = again.communicate(timeout=120)
        assert again.returncode == 0, log
    finally:
        ep.close()
    assert len(ep.answered) == len(set(ep.answered)), "a text was answered twice"
    records, problems = read_records(out)
    assert not problems and len(records) == 12 + 3
    report = json.loads(out.with_name("zh.report.json").read_text())
    assert report["from_cache"] == 6 and report["asked"] == len(ep.answered) - 6
    # a third run asks nothing at all
    ep2 = Endpoint()
    try:
        third = _cli(*[a if a != ep.url else ep2.url for a in args], env={**os.environ, "MT_KEY": "k"})
        log, _ = third.communicate(timeout=120)
        assert third.returncode == 0, log
    finally:
        ep2.close()
    assert ep2.answered == [] and ep2.attempts == {}


def test_a_missing_api_key_variable_is_named(tmp_path):
    src = tmp_path / "in.jsonl"
    write_records(_records(1), src)
    proc = _cli(str(src), "--to", "zh", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m",
                "--out", str(tmp_path / "o.jsonl"), "--api-key-env", "NO_SUCH_VAR_X")
    log, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "NO_SUCH_VAR_X" in log


def test_an_unreachable_endpoint_fails_items_not_the_run(tmp_path):
    src = tmp_path / "in.jsonl"
    write_records(_records(2), src)
    proc = _cli(str(src), "--to", "zh", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m",
                "--out", str(tmp_path / "o.jsonl"), "--retries", "1")
    log, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, log
    report = json.loads((tmp_path / "o.report.json").read_text())
    assert report["translated"] == 0 and len(report["failed"]) == 5
    assert all("gave up after 2 attempts" in f["reason"] for f in report["failed"])
    assert Path(tmp_path / "o.jsonl").read_text() == ""
