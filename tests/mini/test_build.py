"""SunMed-VL-mini: layout, valid bilingual records, view-disjoint split, balance, determinism, privacy."""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from PIL import Image

from doctorsun.data.deid import PROFILE
from doctorsun.data.records import validate
from doctorsun.errors import DoctorSunError
from doctorsun.mini import build_mini
from doctorsun.mini.build import FILES
from doctorsun.mini.sources import MEDICAL
from doctorsun.mini.vocab import ATTRIBUTES, OVERLAPS

CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One seed-0 build, with the log it wrote and how long it took."""
    out = tmp_path_factory.mktemp("mini") / "seed0"
    handler = _Capture()
    logging.getLogger("doctorsun").addHandler(handler)
    logging.getLogger("doctorsun").setLevel(logging.DEBUG)
    start = time.time()
    try:
        summary = build_mini(out, seed=0)
    finally:
        logging.getLogger("doctorsun").removeHandler(handler)
    return out, summary, time.time() - start, "\n".join(handler.lines)


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _read(out: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / name).read_text(encoding="utf-8").splitlines()]


def test_layout_counts_and_valid_records(built):
    out, summary, seconds, _ = built
    assert seconds < 60
    assert sorted(p.name for p in out.iterdir()) == sorted([*FILES, "README.md", "images", "summary.json",
                                                           "general-text"])
    assert json.loads((out / "summary.json").read_text()) == summary
    counts = summary["records"]
    assert 2000 <= counts["instruct_train.jsonl"] <= 4000
    assert 800 <= counts["align_train.jsonl"] <= 1400
    assert 300 <= counts["test.jsonl"] <= 600
    assert 250 <= counts["general.jsonl"] <= 400 and counts["text_train.jsonl"] >= 180
    used = set()
    for name in FILES:
        records = _read(out, name)
        assert len(records) == counts[name]
        assert len({r["id"] for r in records}) == len(records)
        for r in records:
            assert validate(r, image_root=out) == [], r["id"]
            assert r["source"] == "sunmed-vl-mini"
            used.update([r["image"]] if "image" in r else [])
    images = sorted((out / "images").iterdir())
    assert {f"images/{p.name}" for p in images} == used  # every image is used, none is missing
    for path in images[::50]:
        with Image.open(path) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (128, 128)


def test_every_item_in_both_languages(built):
    out = built[0]
    for name in FILES:
        stems = defaultdict(dict)
        for r in _read(out, name):
            stem, lang = r["id"].rsplit("-", 1)
            assert lang == r["lang"]
            stems[stem][lang] = r
        for stem, pair in stems.items():
            assert set(pair) == {"en", "zh"}, stem
            en, zh = pair["en"], pair["zh"]
            assert en.get("image") == zh.get("image") and en["task"] == zh["task"]
            assert CJK.search(zh["conversations"][-1]["value"] + zh["conversations"][0]["value"])
            assert not CJK.search(en["conversations"][0]["value"] + en["conversations"][-1]["value"])
            if en["task"] == "mcq":  # same options in the same order: the same letter is right
                assert len(en["choices"]) == len(zh["choices"])
                assert en["meta"]["verdict"] == zh["meta"]["verdict"]
                for r in (en, zh):  # "B. CT" held out, "CT, so B" in training
                    answer = r["conversations"][-1]["value"]
                    assert answer[0 if name == "test.jsonl" else -1] == r["meta"]["verdict"]


def test_split_is_view_disjoint_and_covers_every_modality(built):
    out = built[0]
    train = {r["image"] for name in ("align_train.jsonl", "instruct_train.jsonl") for r in _read(out, name)}
    test = _read(out, "test.jsonl")
    assert not train & {r["image"] for r in test}
    assert {r["meta"]["modality"] for r in test} == {s.modality for s in MEDICAL}
    assert {r["meta"]["origin"] for r in test} == {s.origin for s in MEDICAL}
    # sources with cine frames or volume slices hold out whole frames and slices
    train_bases = {(r["meta"]["origin"], r["meta"]["base"]) for r in _read(out, "instruct_train.jsonl")}
    for r in test:
        if r["meta"]["origin"] in ("nibabel:anatomical.nii", "pydicom:examples_ybr_color.dcm"):
            assert (r["meta"]["origin"], r["meta"]["base"]) not in train_bases
    planes = {r["meta"]["plane"] for r in test if r["meta"]["origin"] == "nibabel:anatomical.nii"}
    assert planes == {"axial", "coronal", "sagittal"}


def _verdict(r: dict) -> str:
    return r.get("meta", {}).get("verdict", r["conversations"][-1]["value"])


def test_answers_are_balanced_and_consistent_with_the_facts(built):
    out = built[0]
    for name in ("instruct_train.jsonl", "test.jsonl", "general.jsonl"):
        records = _read(out, name)
        for lang, (yes, no) in {"en": ("yes", "no"), "zh": ("是", "否")}.items():
            answers = Counter(_verdict(r) for r in records if r["task"] == "vqa-closed" and r["lang"] == lang)
            assert set(answers) == {yes, no} and abs(answers[yes] - answers[no]) <= 1, (name, answers)
    for name in ("instruct_train.jsonl", "test.jsonl"):
        for r in _read(out, name):
            meta, lang, answer = r["meta"], r["lang"], r["conversations"][-1]["value"]
            attribute = ATTRIBUTES[meta["question"]]
            gold = attribute.values[meta[meta["question"]]].answer[lang]
            if r["task"] == "vqa-open":
                assert answer == gold
                continue
            # held-out golds are bare verdicts; training answers name the gold finding first
            bare = meta["verdict"] if r["task"] == "vqa-closed" else f"{meta['verdict']}. {gold}"
            reasoned = f"{gold}, so {meta['verdict']}" if lang == "en" else f"{gold}，{meta['verdict']}"
            assert answer == (bare if name == "test.jsonl" else reasoned), (name, r["id"], answer)
            if r["task"] == "mcq":
                assert gold == r["choices"][ord(meta["verdict"]) - ord("A")]
                assert len(set(r["choices"])) == len(r["choices"]) >= 3
                keys = {k for k, v in attribute.values.items() if v.answer[lang] in r["choices"]}
                gold_key = meta[meta["question"]]
                assert not any(frozenset((k, gold_key)) in OVERLAPS for k in keys - {gold_key})


def test_same_seed_same_bytes_other_seed_other_data(built, tmp_path):
    out = built[0]
    again = tmp_path / "again"
    build_mini(again, seed=1)
    assert (again / "instruct_train.jsonl").read_bytes() != (out / "instruct_train.jsonl").read_bytes()
    assert (again / "images" / "ct-chest-000.png").read_bytes() != (out / "images" / "ct-chest-000.png").read_bytes()
    build_mini(again, seed=0)  # replaces the earlier build in place
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no staging or old folder left behind


def test_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(DoctorSunError, match="not empty and holds no earlier SunMed-VL-mini build"):
        build_mini(tmp_path, seed=0)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def _source_identifiers() -> set[str]:
    """Every identifying value (name, ID, date, institution...) in the DICOM files the set is made from."""
    import pydicom

    from doctorsun.mini.sources import pydicom_file

    values = set()
    for source in MEDICAL:
        package, name = source.origin.split(":")
        if package != "pydicom":
            continue
        for elem in pydicom.dcmread(pydicom_file(name), stop_before_pixels=True).iterall():
            if (elem.keyword in PROFILE and PROFILE[elem.keyword] != "U" or elem.VR == "PN") and elem.VR != "SQ":
                text = str(elem.value).strip()
                if len(text) >= 5 and not text.replace(".", "").isdigit():
                    values.add(text)
    return values


def test_no_identifying_source_value_reaches_the_data_or_the_log(built):
    out, _, _, log = built
    secrets = _source_identifiers()
    assert len(secrets) >= 10  # the sources really carry names, institutions and descriptions
    text = log + "".join(p.read_text(encoding="utf-8") for p in out.iterdir() if p.is_file())
    leaked = sorted(s for s in secrets if s in text)
    assert not leaked


def test_bare_answers_ask_the_same_questions(built, tmp_path):
    out = built[0]
    bare = build_mini(tmp_path / "bare", seed=0, reasoned=False)
    assert bare["reasoned_answers"] is False and built[1]["reasoned_answers"] is True
    assert bare["closed_answers"] == built[1]["closed_answers"]
    assert (tmp_path / "bare" / "test.jsonl").read_bytes() == (out / "test.jsonl").read_bytes()
    pairs = list(zip(_read(tmp_path / "bare", "instruct_train.jsonl"), _read(out, "instruct_train.jsonl"),
                     strict=True))
    assert all(a["conversations"][0] == b["conversations"][0] and a["meta"] == b["meta"] for a, b in pairs)
    changed = [(a, b) for a, b in pairs if a["conversations"][1] != b["conversations"][1]]
    assert {a["task"] for a, _ in changed} == {"vqa-closed", "mcq"}
    for a, b in changed:
        assert a["conversations"][1]["value"] == (a["meta"]["verdict"] if a["task"] == "vqa-closed" else
                                                  f"{a['meta']['verdict']}. "
                                                  f"{a['choices'][ord(a['meta']['verdict']) - 65]}")
        assert b["conversations"][1]["value"].endswith(a["meta"]["verdict"])


@pytest.mark.parametrize(("prediction", "gold", "hit"), [
    ("MRI, so no", "no", True), ("MRI, so yes", "no", False), ("CT, so yes", "yes", True),
    ("CT，否", "否", True), ("CT，是", "否", False), ("眼底照相，是", "是", True)])
def test_every_closed_rule_reads_the_reasoned_verdict(prediction, gold, hit):
    from doctorsun.eval.metrics import llava_med_closed_hit, multimedeval_vqa

    assert llava_med_closed_hit(prediction, gold) is hit
    assert bool(multimedeval_vqa(prediction, gold)["correct"]) is hit


@pytest.mark.parametrize(("prediction", "letter"), [("CT, so B", "B"), ("超声，C", "C"),
                                                     ("nuclear medicine, so D", "D"), ("MRI，A", "A")])
def test_huatuo_reads_the_reasoned_option_letter(prediction, letter):
    from doctorsun.data.prompts import reasoned_answer
    from doctorsun.eval.mcq import huatuo_choice

    options = {"A": "MRI", "B": "CT", "C": "超声", "D": "nuclear medicine"}
    assert huatuo_choice(prediction, options) == (letter, 1)
    finding = options[letter]
    lang = "zh" if "，" in prediction else "en"
    assert reasoned_answer(finding, letter, lang) == prediction
