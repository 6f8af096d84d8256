"""``doctorsun data build``: the small manifest (converter fixtures + SunMed-VL-mini) built end to end."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from doctorsun.data.build import build
from doctorsun.data.converters import read_set
from doctorsun.data.hashing import hash_image
from doctorsun.data.io import read_records
from doctorsun.data.manifest import load_manifest, manifest_from_dict
from doctorsun.errors import DoctorSunError
from tests.fixtures import public_sets as ps

MANIFEST = Path(__file__).resolve().parents[1] / "fixtures" / "sunmed-vl-small.yaml"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    from doctorsun.mini import build_mini

    d = tmp_path_factory.mktemp("sunmed")
    for name in ("pmc-oa", "vqa-rad", "slake", "pmc-vqa", "medqa"):
        ps.WRITERS[name](d / "raw")
    build_mini(d / "mini")
    shutil.copy(MANIFEST, d / "manifest.yaml")
    return d


@pytest.fixture(scope="module")
def built(workdir) -> Path:
    out = workdir / "out"
    proc = subprocess.run([sys.executable, "-m", "doctorsun", "data", "build", str(workdir / "manifest.yaml"),
                           "--out", "out", "--no-hash-cache"], capture_output=True, text=True, timeout=600, cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _shard_records(out: Path) -> list[dict]:
    card = json.loads((out / "card.json").read_text())
    rows = []
    for s in card["shards"]:
        lines = (out / s["file"]).read_text(encoding="utf-8").splitlines()
        assert len(lines) == s["records"]
        assert hashlib.sha256((out / s["file"]).read_bytes()).hexdigest() == s["sha256"]
        rows += [json.loads(line) for line in lines]
    return rows


def test_the_card_counts_equal_the_files(built):
    card = json.loads((built / "card.json").read_text())
    records = _shard_records(built)
    assert len(records) == card["records"] == sum(r["records"] for r in card["counts"])
    counted = Counter((r["source"], r["lang"], r["task"]) for r in records)
    assert {(c["source"], c["lang"], c["task"]): c["records"] for c in card["counts"]} == dict(counted)
    assert len({r["id"] for r in records}) == len(records)
    dropped = [json.loads(line) for line in (built / "dropped.jsonl").read_text().splitlines()]
    steps = card["steps"]
    assert len(dropped) == steps["dedup"]["dropped"] + steps["decontaminate"]["dropped"]
    assert {d["id"] for d in dropped}.isdisjoint({r["id"].split("#")[0] for r in records})
    # the medical:general ratio, the weight-2 source taken twice, the count-limited sources
    mix = steps["mix"]
    assert mix["general"] == round(0.5 * mix["medical"]) and mix["total"] == len(records)
    assert steps["sample"]["pmc-vqa"]["taken"] == 2 * steps["sample"]["pmc-vqa"]["available"]
    assert sum(r["id"].endswith("#2") and r["source"] == "pmc-vqa" for r in records) == \
        steps["sample"]["pmc-vqa"]["available"]
    assert steps["sample"]["mini-instruct"]["taken"] == 400
    assert not {r["task"] for r in records if r["id"].startswith("mini-") and r["source"] != "general"} - \
        {"vqa-closed", "vqa-open", "mcq", "caption"}
    # the README tells the same numbers
    readme = (built / "README.md").read_text()
    assert f"{card['records']} records in {len(card['shards'])} shard(s)" in readme
    assert "| pmc-vqa | CC BY-SA 4.0 |" in readme


def test_bad_items_are_reported_by_id_and_lose_nothing_else(built):
    bad = [json.loads(line) for line in (built / "bad.jsonl").read_text().splitlines()]
    assert [b["source"] for b in bad] == ["pmc-oa"] and "caption" in bad[0]["reason"]
    records = _shard_records(built)
    assert sum(r["source"] == "pmc-oa" for r in records) == 3


def test_no_record_shares_an_image_or_a_text_item_with_a_benchmark(built, workdir):
    records = _shard_records(built)
    test_pixels = set()
    for bench, path in (("vqa-rad", "raw/VQA_RAD"), ("slake", "raw/Slake1.0"), ("sunmed-vl-mini", "mini/test.jsonl")):
        result = read_set(bench, workdir / path)
        for r in result.records:
            for p in ([r["image"]] if isinstance(r.get("image"), str) else r.get("image") or []):
                test_pixels.add(hash_image(result.image_root / p).pixels)
    train_pixels = {hash_image(built / r["image"]).pixels for r in records if isinstance(r.get("image"), str)}
    assert train_pixels and not train_pixels & test_pixels
    steps = json.loads((built / "card.json").read_text())["steps"]["decontaminate"]
    assert steps["by_benchmark"]["vqa-rad"] == 2 and steps["by_benchmark"]["medqa"] == 1


def test_training_reads_the_built_folder_directly(built):
    from doctorsun.train.data import file_records

    rows = list(file_records(str(built), None))
    assert len(rows) == json.loads((built / "card.json").read_text())["records"]
    assert all(problem is None for _, _, problem, _ in rows)
    assert all(Path(p).is_file() for _, _, _, images in rows for p in images)
    proc = subprocess.run([sys.executable, "-m", "doctorsun", "data", "check", str(built)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "0 bad record(s)" in proc.stdout, proc.stdout[-2000:]


def test_the_same_manifest_and_seed_give_byte_identical_output(built, workdir, monkeypatch):
    again = workdir / "again"
    manifest = load_manifest(workdir / "manifest.yaml", workdir)
    build(manifest, again, hash_cache=workdir / "hashes.sqlite", progress=False)
    names = sorted(p.name for p in built.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        a, b = built / name, again / name
        if a.is_symlink():
            assert a.readlink() == b.readlink()
        else:
            assert a.read_bytes() == b.read_bytes(), name
    # a second build reads every image hash from the cache (decoding any would fail) and writes the same bytes
    import doctorsun.data.hashing as hashing

    def no_decoding(path):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(hashing, "hash_image", no_decoding)
    third = workdir / "third"
    build(manifest, third, hash_cache=workdir / "hashes.sqlite", progress=False)
    monkeypatch.undo()
    assert (third / "card.json").read_bytes() == (built / "card.json").read_bytes()
    # another seed draws another sample
    text = (workdir / "manifest.yaml").read_text().replace("seed: 7", "seed: 8")
    (workdir / "manifest-8.yaml").write_text(text)
    other = build(load_manifest(workdir / "manifest-8.yaml", workdir), workdir / "other", hash_cache=None,
                  progress=False)
    assert other.card["shards"][0]["sha256"] != json.loads((built / "card.json").read_text())["shards"][0]["sha256"]


def test_a_translation_step_adds_translated_copies(workdir, tmp_path, monkeypatch):
    from tests.data.test_translate import Endpoint

    monkeypatch.setenv("DOCTORSUN_CACHE", str(tmp_path / "cache"))
    ep = Endpoint()
    try:
        m = manifest_from_dict({
            "name": "t", "seed": 0,
            "sources": [{"converter": "vqa-rad", "path": "raw/VQA_RAD", "split": "train"},
                        {"converter": "pmc-vqa", "path": "raw/PMC-VQA", "split": "train"}],
            "translate": {"to": "zh", "endpoint": ep.url, "model": "mt", "sources": ["pmc-vqa"]}}, workdir)
        result = build(m, tmp_path / "out", hash_cache=None, progress=False)
    finally:
        ep.close()
    records, problems = read_records(tmp_path / "out")
    assert not problems
    zh = [r for r in records if r["lang"] == "zh"]
    assert len(zh) == 2 and all(r["source"] == "pmc-vqa" and r["id"].endswith("@zh") for r in zh)
    assert all(r["meta"]["translated_from"]["model"] == "mt" for r in zh)
    assert result.card["steps"]["translate"]["translated"] == 2
    assert {r["source"] for r in records} == {"vqa-rad", "pmc-vqa"}


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, "unknown manifest key(s) colour"),
    ({"sources": [{"converter": "vqa-radd", "path": "x"}]}, "unknown converter 'vqa-radd'"),
    ({"sources": [{"path": "x", "count": 3, "weight": 1}]}, "a count or a weight, not both"),
    ({"sources": [{"path": "x", "tasks": ["vqa"]}]}, "unknown tasks vqa"),
    ({"sources": [{"path": "x"}, {"path": "x"}]}, "name used twice"),
    ({"sources": [{"path": "x", "optoins": {}}]}, "sources[0].optoins"),
    ({"ratio": "1:0.5"}, "no source is general"),
    ({"translate": {"to": "fr", "endpoint": "u", "model": "m"}}, "translate.to 'fr'"),
])
def test_a_bad_manifest_names_what_is_wrong(change, message):
    data = {"sources": [{"path": "a.jsonl"}], **change}
    with pytest.raises(DoctorSunError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        manifest_from_dict(data)


def test_the_reference_manifest_is_valid():
    recipes = Path(__file__).resolve().parents[2] / "recipes"
    shipped = [p for p in recipes.glob("*/*.yaml") if "sources:" in p.read_text()]
    assert recipes / "doctor-sun-8b" / "sunmed-vl.yaml" in shipped
    for path in shipped:
        load_manifest(path)
    m = load_manifest(recipes / "doctor-sun-8b" / "sunmed-vl.yaml")
    assert m.ratio == "1:0.5" and m.general() and m.decontaminate is not None
    assert {"pmc-oa", "pmc-vqa", "vqa-rad", "slake", "pathvqa", "llava-med"} <= {s.converter for s in m.sources}


def test_a_stream_gets_the_built_folder_as_its_shards(built, tmp_path):
    from doctorsun.data.io import expand_corpora

    card = json.loads((built / "card.json").read_text())
    plain = tmp_path / "plain.jsonl"
    plain.write_text("")
    assert expand_corpora([str(built), str(plain)]) == [str(built / s["file"]) for s in card["shards"]] + [str(plain)]
    (built / card["shards"][-1]["file"]).rename(tmp_path / "moved.jsonl")
    try:
        with pytest.raises(DoctorSunError, match="missing"):
            expand_corpora([built])
    finally:
        (tmp_path / "moved.jsonl").rename(built / card["shards"][-1]["file"])
