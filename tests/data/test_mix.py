"""Hybrid mixing: exact counts for the ratio, replacement only when asked, same seed -> same mix."""

from __future__ import annotations

import json

import pytest

from doctorsun.cli import main
from doctorsun.data.io import read_records, write_records
from doctorsun.data.mix import mix, parse_ratio
from doctorsun.errors import DoctorSunError


def recs(prefix: str, n: int, source: str, lang: str = "en") -> list[dict]:
    return [{"id": f"{prefix}{i}",
             "conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}],
             "lang": lang, "source": source, "task": "text"} for i in range(n)]


MEDICAL = recs("m", 40, "pmc-vqa")
GENERAL = recs("g", 30, "general", "zh")


@pytest.mark.parametrize("ratio, n_general",
                         [("1:0", 0), ("1:0.2", 8), ("1:0.5", 20), ("2:1", 20), ("0.75", 30)])
def test_exact_counts(ratio, n_general):
    records, report = mix(MEDICAL, GENERAL, ratio=ratio, seed=3)
    assert sum(r["source"] == "pmc-vqa" for r in records) == 40
    assert sum(r["source"] == "general" for r in records) == n_general
    assert report["general"] == n_general and report["total"] == 40 + n_general
    assert report["by_source"] == {k: v for k, v in {"pmc-vqa": 40, "general": n_general}.items() if v}
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)  # without replacement nothing repeats


def test_rounding_follows_round():
    records, _ = mix(MEDICAL[:5], GENERAL, ratio="1:0.5")  # 2.5 -> 2 (round half to even)
    assert sum(r["source"] == "general" for r in records) == 2


def test_too_few_general_records_is_an_error_unless_replace():
    with pytest.raises(DoctorSunError, match="needs 40 general records but only 30 exist"):
        mix(MEDICAL, GENERAL, ratio="1:1")
    records, report = mix(MEDICAL, GENERAL, ratio="1:1", replace=True, seed=1)
    general = [r for r in records if r["source"] == "general"]
    assert len(general) == 40
    assert report["general_repeats"] >= 10  # 40 draws from 30 records must repeat at least 10
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    assert any("#" in r["id"] for r in general)


def test_same_seed_same_mix_other_seed_other_mix():
    a, _ = mix(MEDICAL, GENERAL, seed=7)
    b, _ = mix(MEDICAL, GENERAL, seed=7)
    c, _ = mix(MEDICAL, GENERAL, seed=8)
    assert a == b
    assert [r["id"] for r in a] != [r["id"] for r in c]


def test_inputs_are_not_modified():
    before = json.dumps(GENERAL)
    mix(MEDICAL, GENERAL, ratio="1:1", replace=True)
    assert json.dumps(GENERAL) == before


@pytest.mark.parametrize("bad", ["abc", "1:x", "0:1", "1:-1"])
def test_bad_ratios(bad):
    with pytest.raises(DoctorSunError, match="ratio"):
        parse_ratio(bad)


def test_cli_writes_records_and_report_with_rebased_images(tmp_path, capsys):
    med = [r | {"image": "img.png",
                "conversations": [{"from": "human", "value": "<image>\nq"},
                                  {"from": "gpt", "value": "a"}]} for r in MEDICAL[:6]]
    write_records(med, tmp_path / "med" / "m.jsonl")
    write_records(GENERAL[:10], tmp_path / "gen" / "g.json")
    out = tmp_path / "out" / "mixed.jsonl"
    args = ["data", "mix", "--medical", str(tmp_path / "med" / "m.jsonl"), "--general",
            str(tmp_path / "gen" / "g.json"),
            "--ratio", "1:0.5", "--seed", "5", "--out", str(out)]
    assert main(args) == 0
    records, problems = read_records(out)
    assert problems == [] and len(records) == 9
    assert {r["image"] for r in records if "image" in r} == {"med.images/img.png"}  # a link, never ../
    assert (tmp_path / "out" / "med.images").resolve() == (tmp_path / "med").resolve()
    report = json.loads((tmp_path / "out" / "mixed.report.json").read_text())
    assert report["medical"] == 6 and report["general"] == 3 and report["by_lang"] == {"en": 6, "zh": 3}
    assert "mixed 6 medical + 3 general = 9 records" in capsys.readouterr().out
    first = out.read_bytes()
    assert main(args) == 0 and out.read_bytes() == first  # deterministic file
