"""Files as careless exports and hostile senders make them: a bad line is one reported record, a BOM is
no problem, nothing good is lost, and nothing reaches outside its folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from doctorsun.data.converters import convert
from doctorsun.data.io import read_records
from tests.fixtures import public_sets as ps

GOOD = {"image": "x.png", "lang": "en", "source": "t", "task": "vqa-open",
        "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A lung."}]}


def good(i: int) -> bytes:
    return json.dumps({"id": f"r{i}", **GOOD}).encode() + b"\n"


def test_jsonl_bad_lines_cost_only_themselves(tmp_path):
    path = tmp_path / "data.jsonl"
    nested = b'{"id": "deep", "meta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    path.write_bytes(b"\xef\xbb\xbf" + good(0) + b'{"id": "latin1", "x": "caf\xe9"}\n' + nested
                     + b"[1, 2, 3]\n" + good(1))
    records, problems = read_records(path)
    assert [r["id"] for r in records] == ["r0", "r1"]  # the BOM did not cost the first record
    reasons = dict(problems)
    assert "not UTF-8" in reasons["line 2"] and "nested too deeply" in reasons["line 3"]
    assert "not a JSON object" in reasons["line 4"]


def test_a_json_list_with_a_bom_and_one_bad_string_keeps_the_rest(tmp_path):
    items = [{"id": "a", **GOOD}, {"id": "b", **GOOD}]
    raw = json.dumps(items).encode().replace(b"A lung.", b"A lung\xff.", 1)
    (tmp_path / "data.json").write_bytes(b"\xef\xbb\xbf" + raw)
    records, problems = read_records(tmp_path / "data.json")
    assert [r["id"] for r in records] == ["b"]
    assert problems[0][0] == "a" and "not UTF-8" in problems[0][1]


def test_converters_keep_every_good_row_of_a_careless_file(tmp_path):
    medqa = ps.write_medqa(tmp_path)
    test = medqa / "data_clean" / "questions" / "US" / "test.jsonl"
    test.write_bytes(b"\xef\xbb\xbf" + test.read_bytes() + b'"just a string"\n{"question": "caf\xe9"}\n')
    got = convert("medqa", medqa)
    assert len(got.records) == 3  # the three good questions of the fixture, the first one despite the BOM
    assert {why for _, why in got.problems} >= {"not a JSON object but str"}

    rad = ps.write_vqa_rad(tmp_path)
    js = rad / "VQA_RAD Dataset Public.json"
    rows = json.loads(js.read_text())
    rows[1]["question"] = "Which lobe @@?"  # @@ becomes a byte that is not UTF-8 below
    rows.append({**rows[2], "image_name": "../../etc/passwd"})
    rows.append({**rows[2]})
    del rows[-1]["qid"]
    raw = json.dumps(rows, ensure_ascii=False).encode().replace(b"@@", b"\xff")
    js.write_bytes(b"\xef\xbb\xbf" + raw)
    got = convert("vqa-rad", rad, split="all")
    reasons = dict(got.problems)
    assert "not UTF-8" in reasons["1"]
    assert any("leaves the set's image folder" in why for why in reasons.values())
    made_up = [rid for rid, _ in got.notes]
    assert len(made_up) == 1 and made_up[0].startswith("vqa-rad-item") and made_up[0] in {r["id"] for r in got.records}
    assert len(got.records) == 9  # the fixture's 9 good rows (less the spoilt one) + the row without a qid

    pmc = ps.write_pmc_vqa(tmp_path)
    csv = pmc / "test.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + csv.read_bytes().replace(b"Which imaging", b"Which \xff imaging"))
    got = convert("pmc-vqa", pmc)
    assert len(got.records) == 2 and any("not UTF-8" in why for _, why in got.problems)


def test_llava_med_item_with_a_placeholder_but_no_image_is_reported(tmp_path):
    src = ps.write_llava_med(tmp_path)
    items = json.loads(src.read_text())
    items.append({"id": "no-image", "conversations": [{"from": "human", "value": "<image>\nWhat is it?"},
                                                      {"from": "gpt", "value": "A chest X-ray."}]})
    src.write_text(json.dumps(items))
    got = convert("llava-med", src)
    assert ("no-image", "a turn holds <image> but the item names no image") in got.problems
    assert "llava-med-no-image" not in {r["id"] for r in got.records}


def test_nifti_voxel_sizes_cannot_blow_up_the_picture(tmp_path):
    import nibabel as nib

    from doctorsun.data.image import load_image

    vol = np.random.default_rng(0).random((64, 64, 4)).astype(np.float32)
    img = nib.Nifti1Image(vol, np.diag([2000.0, 1.0, 1.0, 1.0]))
    img.header.set_zooms((2000.0, 1.0, 1.0))
    path = Path(tmp_path / "odd.nii.gz")
    nib.save(img, path)
    picture = load_image(path, max_pixels=64 * 64 * 20)
    width, height = picture.size
    assert width * height <= 64 * 64 * 20 and max(width, height) <= 64 * 16


def test_an_image_link_that_leaves_the_set_is_refused(tmp_path):
    rad = ps.write_vqa_rad(tmp_path)
    images = rad / "VQA_RAD Image Folder"
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes((images / "synpic100003.jpg").read_bytes())
    (images / "synpic100003.jpg").unlink()
    (images / "synpic100003.jpg").symlink_to(outside)
    (images / "inside.jpg").symlink_to(images / "synpic100001.jpg")  # a link within the folder is fine
    got = convert("vqa-rad", rad, split="all")
    refused = [rid for rid, why in got.problems if "link that leaves" in why]
    assert refused and all(r["image"] != "synpic100003.jpg" for r in got.records)
    assert any(r["image"] == "synpic100001.jpg" for r in got.records)
