"""``doctorsun data check``: a file with every kind of bad record loads all good ones and names each bad one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from doctorsun.cli import main
from doctorsun.data.check import check_file, composition


def rec(rid: str, image="imgs/ok.png", lang="en", task="vqa-open", source="unit", human="<image>\nWhat?",
        gpt="Lung.", **extra) -> dict:
    r = {"id": rid, "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}],
         "lang": lang, "source": source, "task": task, **extra}
    if image is not None:
        r["image"] = image
    return r


@pytest.fixture()
def data_file(tmp_path):
    """A JSONL holding 4 good records and one bad item of each kind ``check`` must name."""
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8), "white").save(tmp_path / "imgs" / "ok.png")
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG truncated")
    good = [rec("good-1"), rec("good-2", lang="zh", human="<image>\n这是什么？", gpt="肺", source="other"),
            rec("good-3", image=None, human="What is asthma?", task="text"),
            rec("good-4", task="mcq", choices=["CT", "MRI"], gpt="A. CT")]
    bad = {
        "missing-image": rec("missing-image", image="imgs/nowhere.png"),
        "unreadable-image": rec("unreadable-image", image="imgs/broken.png"),
        "two-placeholders": rec("two-placeholders", human="<image>\n<image>\nCompare."),
        "empty-turn": rec("empty-turn", gpt="   "),
        "not-alternating": rec("not-alternating") | {"conversations": [
            {"from": "human", "value": "<image>\nq"}, {"from": "human", "value": "q"},
            {"from": "gpt", "value": "a"}]},
        "gpt-first": rec("gpt-first") | {"conversations": [
            {"from": "gpt", "value": "hello"}, {"from": "human", "value": "<image>\nq"},
            {"from": "gpt", "value": "a"}]},
        "no-task": {k: v for k, v in rec("no-task").items() if k != "task"},
        "bad-lang": rec("bad-lang", lang="de"),
        "bad-task": rec("bad-task", task="chitchat"),
        "good-1": rec("good-1"),  # a second record with the same id
    }
    reasons = {
        "missing-image": "missing image imgs/nowhere.png",
        "unreadable-image": "unreadable image imgs/broken.png",
        "two-placeholders": "2 <image> placeholder(s) for 1 image(s)",
        "empty-turn": "turn 2 (gpt) is empty",
        "not-alternating": "do not alternate",
        "gpt-first": "first turn is not from human",
        "no-task": "missing field 'task'",
        "bad-lang": "unknown lang 'de'",
        "bad-task": "unknown task 'chitchat'",
        "good-1": "duplicate id (first at line 1)",
    }
    lines = [json.dumps(r, ensure_ascii=False) for r in good[:2]] + ["{oops"]
    lines += [json.dumps(r) for r in good[2:]] + [json.dumps(r) for r in bad.values()]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, good, reasons


def test_every_bad_record_is_named_with_its_reason(data_file):
    path, good, reasons = data_file
    report = check_file(path)
    assert [r["id"] for r in report.good] == [r["id"] for r in good]
    found = dict(report.bad)
    assert found.pop("line 3").startswith("not valid JSON")
    assert set(found) == set(reasons)
    for rid, reason in reasons.items():
        assert reason in found[rid], (rid, found[rid])
    assert not report.ok


def test_summary_by_source_language_and_task(data_file):
    path, good, _ = data_file
    summary = check_file(path).summary()
    assert summary["good"] == 4 and summary["bad"] == 11
    assert summary["by_source"] == {"unit": 3, "other": 1}
    assert summary["by_lang"] == {"en": 3, "zh": 1}
    assert summary["by_task"] == {"vqa-open": 2, "text": 1, "mcq": 1}
    assert composition(good) == {k: v for k, v in summary.items() if k.startswith("by_")}


def test_no_decode_only_looks_for_files(data_file):
    path, _, _ = data_file
    bad = dict(check_file(path, check_images=False).bad)
    assert "unreadable-image" not in bad and "missing-image" in bad


def test_cli_exit_codes_and_output(data_file, capsys, tmp_path):
    path, _, _ = data_file
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "4 good, 11 bad" in out
    assert "BAD bad-lang: unknown lang 'de'" in out
    assert "lang: en 3, zh 1" in out
    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps([rec("only")]), encoding="utf-8")
    assert main(["data", "check", str(clean), "--image-root", str(tmp_path)]) == 0
    assert main(["data", "check", str(tmp_path / "absent.jsonl")]) == 2
    assert "data file not found" in capsys.readouterr().err


def test_max_bad_limits_the_listing(data_file):
    path, _, _ = data_file
    text = check_file(path).format(max_bad=2)
    assert text.count("BAD ") == 2 and "... and 9 more" in text


def test_each_distinct_image_is_decoded_once_and_no_pixels_are_kept(tmp_path, monkeypatch):
    import doctorsun.data.image as image_module

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    (tmp_path / "c.png").write_bytes(b"not a png")
    records = [rec(f"r{i}", image=["a.png", "b.png", "c.png"][i % 3]) for i in range(30)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    calls = []
    real = image_module.load_image
    monkeypatch.setattr(image_module, "load_image", lambda p, *a, **k: calls.append(p) or real(p, *a, **k))
    report = check_file(path, workers=2)
    assert sorted(Path(c).name for c in calls) == ["a.png", "b.png", "c.png"]
    assert len(report.good) == 20 and sorted(rid for rid, _ in report.bad) == sorted(f"r{i}" for i in range(2, 30, 3))
    assert all("unreadable image c.png" in why for _, why in report.bad)
