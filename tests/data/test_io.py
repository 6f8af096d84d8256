"""Readers and writers: LLaVA JSON, JSONL, ShareGPT, Hugging Face datasets; bad items never cost good ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from doctorsun.data.io import (
    from_sharegpt,
    read_raw,
    read_records,
    rebase_images,
    save_hf_dataset,
    to_sharegpt,
    write_records,
)
from doctorsun.data.records import validate
from doctorsun.errors import DoctorSunError


def record(i: int, lang: str = "en", image: str | None = "img/a.png") -> dict:
    question = "这是什么？" if lang == "zh" else f"What is shown in {i}?"
    r = {"id": f"r{i}", "conversations": [{"from": "human",
                                           "value": ("<image>\n" if image else "") + question},
                                          {"from": "gpt", "value": "肺" if lang == "zh" else "lung"}],
         "lang": lang, "source": "unit", "task": "vqa-open", "meta": {"n": i}}
    if image:
        r["image"] = image
    return r


RECORDS = [record(0), record(1, "zh"), record(2, image=None) | {"task": "text"},
           record(3) | {"task": "mcq", "choices": ["CT", "MRI"], "answer_type": "CLOSED"}]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_llava_round_trip(tmp_path, suffix):
    path = write_records(RECORDS, tmp_path / f"out{suffix}")
    records, problems = read_records(path)
    assert problems == []
    assert records == RECORDS
    assert "这是什么" in path.read_text(encoding="utf-8")  # ensure_ascii=False
    assert [p.name for p in tmp_path.iterdir()] == [f"out{suffix}"]  # no temporary file left behind


def test_sharegpt_round_trip(tmp_path):
    path = write_records(RECORDS, tmp_path / "share.json", fmt="sharegpt")
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw[0]["messages"][0] == {"role": "user", "content": "<image>\nWhat is shown in 0?"}
    assert raw[0]["images"] == ["img/a.png"]
    records, problems = read_records(path)
    assert problems == [] and records == RECORDS


def test_plain_sharegpt_items_get_inferred_fields(tmp_path):
    items = [{"messages": [{"role": "system", "content": "You are a radiologist."},
                           {"role": "user", "content": "<image>图中是什么器官？"},
                           {"role": "assistant", "content": "肝脏"}], "images": ["x.png"]},
             {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                           {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye"}]},
             {"messages": [{"role": "robot", "content": "?"}]}]
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    records, problems = read_records(path)
    assert [r["id"] for r in records] == ["plain-item-0", "plain-item-1"]
    first, second = records
    assert first["lang"] == "zh" and first["image"] == "x.png" and first["meta"]["system"] == "You are a radiologist."
    assert first["source"] == "plain" and first["task"] == "vqa-open"
    assert second["task"] == "dialogue" and second["lang"] == "en" and "image" not in second
    assert problems == [("item 2", "ShareGPT item: unknown role 'robot'")]


def test_sharegpt_helpers_are_inverse():
    for r in RECORDS:
        assert from_sharegpt(to_sharegpt(r)) == r


def test_jsonl_bad_lines_are_reported_and_the_rest_loads(tmp_path):
    lines = [json.dumps(RECORDS[0]), "{not json", "", json.dumps(RECORDS[1], ensure_ascii=False),
             json.dumps({"id": "bad", "conversations": []}), json.dumps(RECORDS[2])]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records, problems = read_records(path)
    assert [r["id"] for r in records] == ["r0", "r1", "r2"]
    assert problems[0][0] == "line 2" and "not valid JSON" in problems[0][1]
    assert problems[1][0] == "bad" and "missing field 'lang'" in problems[1][1]
    assert len(problems) == 2


def test_json_errors_name_the_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[{"id": "a"', encoding="utf-8")
    with pytest.raises(DoctorSunError, match="broken.json is not valid JSON"):
        read_records(broken)
    not_a_list = tmp_path / "obj.json"
    not_a_list.write_text('{"id": "a"}', encoding="utf-8")
    with pytest.raises(DoctorSunError, match="must hold a JSON list"):
        read_records(not_a_list)
    with pytest.raises(DoctorSunError, match="data file not found"):
        read_records(tmp_path / "nope.jsonl")
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(DoctorSunError, match="unknown data file type"):
        read_records(tmp_path / "notes.txt")


def test_write_refuses_unknown_suffix(tmp_path):
    with pytest.raises(DoctorSunError, match="use a .json or .jsonl suffix"):
        write_records(RECORDS, tmp_path / "out.csv")


def test_read_records_can_check_images(tmp_path):
    (tmp_path / "img").mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "a.png")
    path = write_records([RECORDS[0], record(5, image="img/missing.png")], tmp_path / "x.jsonl")
    records, problems = read_records(path, image_root=tmp_path)
    assert [r["id"] for r in records] == ["r0"]
    assert problems[0][0] == "r5" and "missing image img/missing.png" in problems[0][1]


def test_hf_dataset_round_trip(tmp_path):
    out = save_hf_dataset(RECORDS, tmp_path / "ds")
    records, problems = read_records(out)
    assert problems == []
    assert records == RECORDS
    with pytest.raises(DoctorSunError, match="already exists"):
        save_hf_dataset(RECORDS, out)


def test_hf_dataset_dict_and_sharegpt_columns(tmp_path):
    from datasets import Dataset, DatasetDict

    share = Dataset.from_list([{"messages": [{"role": "user", "content": "Q?"},
                                             {"role": "assistant", "content": "A."}], "images": []}])
    DatasetDict({"train": share, "test": share}).save_to_disk(str(tmp_path / "dd"))
    items, problems = read_raw(tmp_path / "dd")
    assert [where for where, _ in items] == ["train row 0", "test row 0"] and problems == []
    records, problems = read_records(tmp_path / "dd")
    assert problems == []
    assert [r["id"] for r in records] == ["sharegpt-train-row-0", "sharegpt-test-row-0"]
    assert records[0]["conversations"] == [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A."}]


def test_folder_that_is_not_a_dataset(tmp_path):
    with pytest.raises(DoctorSunError, match="not a saved Hugging Face dataset"):
        read_records(tmp_path)


def test_rebase_images(tmp_path):
    src, dst = tmp_path / "a" / "b", tmp_path / "out"
    moved = rebase_images([record(0), record(1) | {"image": ["x.png", "y.png"]}, RECORDS[2]], src, dst)
    # The images lie outside the output folder: a link to them there, never a ../ path.
    assert moved[0]["image"] == str(Path("b.images") / "img" / "a.png")
    assert moved[1]["image"] == [str(Path("b.images/x.png")), str(Path("b.images/y.png"))]
    assert (dst / "b.images").is_symlink() and (dst / "b.images").resolve() == src.resolve()
    assert "image" not in moved[2]
    assert record(0)["image"] == "img/a.png"  # inputs untouched
    other = tmp_path / "c" / "b"  # another folder of the same name gets a link of its own
    assert rebase_images([record(0)], other, dst)[0]["image"] == str(Path("b.images-2") / "img" / "a.png")
    assert rebase_images([record(0)], src, dst)[0]["image"] == moved[0]["image"]  # the link is reused
    inside = rebase_images([record(0)], dst / "sub", dst)[0]["image"]
    assert inside == str(Path("sub") / "img" / "a.png")


def test_image_paths_that_leave_the_image_root_are_refused(tmp_path):
    for path in ("../x.png", "img/../../x.png", "/etc/passwd", "a/../../b.png"):
        reasons = validate(record(0) | {"image": path})
        assert any("leaves the image root" in r for r in reasons), path
    for path in ("img/a.png", "img/../a.png", "./a.png"):
        assert not any("leaves the image root" in r for r in validate(record(0) | {"image": path})), path
