"""De-duplication and decontamination on real medical images (scikit-image's fundus photograph and IHC
slide, pydicom's CT and MR), re-encoded, resized by one pixel and copied."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import skimage

from doctorsun.data.converters import read_set
from doctorsun.data.converters.base import caption_record, mcq_record, vqa_record
from doctorsun.data.dedup import BenchmarkIndex, Item, deduplicate, item_of
from doctorsun.data.hashing import hash_image, near_pairs, normalise_text, text_key
from doctorsun.data.image import load_image
from doctorsun.data.io import read_records, write_records
from tests.fixtures import public_sets as ps

SKIMAGE = Path(skimage.data.data_dir)


def _variants(folder: Path) -> dict[str, Path]:
    """The fundus photograph and its copies: PNG, lossless re-encode, 1 px resize, JPEG q75; and the slide."""
    folder.mkdir(parents=True, exist_ok=True)
    base = load_image(SKIMAGE / "retina.jpg").resize((256, 256))
    paths = {"png": folder / "retina.png", "recoded": folder / "retina-copy.png",
             "resized": folder / "retina-257.png", "jpeg": folder / "retina.jpg", "ihc": folder / "ihc.png"}
    base.save(paths["png"])
    base.save(paths["recoded"], compress_level=1)
    base.resize((257, 256)).save(paths["resized"])
    base.save(paths["jpeg"], quality=75)
    load_image(SKIMAGE / "ihc.png").resize((256, 256)).save(paths["ihc"])
    return paths


def test_pixel_hash_ignores_the_encoding_and_phash_survives_resize_and_jpeg(tmp_path):
    v = _variants(tmp_path)
    h = {k: hash_image(p) for k, p in v.items()}
    assert h["png"].pixels == h["recoded"].pixels
    assert h["png"].pixels != h["resized"].pixels and h["png"].pixels != h["jpeg"].pixels
    assert (h["png"].phash ^ h["resized"].phash).bit_count() <= 2
    assert (h["png"].phash ^ h["jpeg"].phash).bit_count() <= 6
    assert (h["png"].phash ^ h["ihc"].phash).bit_count() > 12


@pytest.mark.parametrize("threshold", [0, 3, 6, 10])
def test_near_pairs_are_exactly_what_all_pairs_comparison_finds(threshold):
    rng = random.Random(threshold)
    stored = [rng.getrandbits(64) for _ in range(400)]
    # plant near neighbours so that every distance up to past the threshold occurs
    stored += [s ^ sum(1 << b for b in rng.sample(range(64), rng.randint(0, threshold + 2))) for s in stored[:200]]
    queries = stored[::7] + [rng.getrandbits(64) for _ in range(50)]
    qi, si, d = near_pairs(queries, stored, threshold)
    brute = sorted((i, j, (s ^ q).bit_count()) for i, q in enumerate(queries) for j, s in enumerate(stored)
                   if (s ^ q).bit_count() <= threshold)
    assert sorted(zip(qi.tolist(), si.tolist(), d.tolist(), strict=True)) == brute
    qi, si, _ = near_pairs(stored, stored, threshold, earlier_only=True)
    assert len(qi) == sum(1 for i, q in enumerate(stored) for s in stored[:i] if (s ^ q).bit_count() <= threshold)
    assert (si < qi).all()


def test_text_normalisation_ignores_case_punctuation_and_prompt_wording():
    a = vqa_record("a", "Is there a Fracture?", "Yes.", source="x", lang="en", image="i.png")
    b = {"id": "b", "conversations": [{"from": "human", "value": "<image>\nis there a fracture"},
                                      {"from": "gpt", "value": "yes"}]}
    assert text_key(a) == text_key(b)
    assert normalise_text("肺 结节，多发。") == "肺结节多发"
    assert text_key(a) != text_key(vqa_record("c", "Is there a fracture?", "no", source="x", lang="en", image="i.png"))


def _rec(rid, question, answer, image, **kw):
    return vqa_record(rid, question, answer, source=kw.pop("source", "s"), lang="en", image=image, **kw)


def test_duplicates_are_the_same_text_about_the_same_picture(tmp_path):
    v = _variants(tmp_path / "img")
    (tmp_path / "img" / "broken.png").write_bytes(b"not a png")
    records = [
        _rec("a", "Is this a fundus photograph?", "yes", "retina.png"),
        _rec("b", "Is the optic disc visible?", "yes", "retina.png"),         # same image, other question: kept
        _rec("c", "Is this a fundus photograph?", "yes", "retina-copy.png"),   # re-encoded copy: exact
        _rec("d", "is this a FUNDUS photograph", "Yes.", "retina-257.png"),    # resized copy: near
        _rec("e", "Is this a fundus photograph?", "yes", "ihc.png"),           # other picture: kept
        _rec("f", "Is the optic disc visible?", "yes", "broken.png"),          # unreadable
        caption_record("g", "A fundus photograph.", source="cap", image="retina.png"),
        caption_record("h", "Colour fundus image of a retina.", source="cap2", image="retina.jpg"),
        caption_record("i", "眼底照片。", source="cap", image="retina.png"),  # the other language: kept
        {"id": "t1", "conversations": [{"from": "human", "value": "What is a stroke?"},
                                       {"from": "gpt", "value": "Brain ischaemia."}], "lang": "en",
         "source": "txt", "task": "text"},
        {"id": "t2", "conversations": [{"from": "human", "value": "what is a stroke"},
                                       {"from": "gpt", "value": "Brain ischaemia"}], "lang": "en",
         "source": "txt", "task": "text"},
    ]
    del v
    items = [item_of(r, tmp_path / "img") for r in records]
    drops = {d.id: d for d in deduplicate(items)}
    assert set(drops) == {"c", "d", "f", "h", "t2"}
    assert (drops["c"].reason, drops["c"].twin) == ("exact-image", "a")
    assert (drops["d"].reason, drops["d"].twin) == ("near-image", "a")
    assert drops["f"].reason == "unreadable-image" and "broken.png" in drops["f"].detail
    assert drops["h"].twin == "g" and "one caption per image and language" in drops["h"].detail
    assert (drops["t2"].reason, drops["t2"].twin) == ("same-text", "t1")
    exact = {d.id for d in deduplicate(items, images="exact")}
    assert exact == {"c", "f", "t2"}  # the resized copy and the JPEG caption are other pictures to exact matching
    assert {d.id for d in deduplicate(items, images="path", one_per_image=())} == {"t2"}


def test_decontamination_drops_identical_recoded_and_resized_images_of_test_items(tmp_path):
    """A VQA-RAD test item's image, planted into a training file three ways, is found each time."""
    root = ps.write_vqa_rad(tmp_path / "raw")
    folder = root / "VQA_RAD Image Folder"
    big = load_image(SKIMAGE / "retina.jpg").resize((256, 256))
    big.save(folder / "synpic100003.jpg", quality=95)  # a test item's image, at a realistic size
    test_image = load_image(folder / "synpic100003.jpg")
    train = tmp_path / "train"
    train.mkdir()
    (train / "same.jpg").write_bytes((folder / "synpic100003.jpg").read_bytes())
    test_image.save(train / "recoded.png")
    test_image.resize((257, 256)).save(train / "resized.png")
    load_image(SKIMAGE / "ihc.png").resize((256, 256)).save(train / "clean.png")
    medqa = ps.write_medqa(tmp_path / "raw")
    test_q = next(r for r in read_set("medqa", medqa).records)
    records = [_rec("t-same", "What is seen?", "kidney", "same.jpg"),
               _rec("t-recoded", "What is seen?", "kidney", "recoded.png"),
               _rec("t-resized", "Any mass?", "no", "resized.png"),
               _rec("t-clean", "What is seen?", "kidney", "clean.png"),
               {**test_q, "id": "t-leaked-text"},
               mcq_record("t-text-ok", "Which drug?", ["A drug", "B drug"], [0], source="s", lang="en")]
    write_records(records, train / "train.jsonl")
    out = tmp_path / "clean"
    proc = subprocess.run([sys.executable, "-m", "doctorsun", "data", "decontaminate", str(train / "train.jsonl"),
                           "--against", f"vqa-rad={root}", "--against", f"medqa:test={medqa}", "--out", str(out),
                           "--no-hash-cache"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    kept, problems = read_records(out / "train.jsonl", image_root=out, check_images=True)
    assert not problems and [r["id"] for r in kept] == ["t-clean", "t-text-ok"]
    dropped = {d["id"]: d for d in map(json.loads, (out / "dropped.jsonl").read_text().splitlines())}
    assert set(dropped) == {"t-same", "t-recoded", "t-resized", "t-leaked-text"}
    assert all(dropped[k]["twin"].startswith("vqa-rad:") for k in ("t-same", "t-recoded", "t-resized"))
    assert dropped["t-recoded"]["detail"] == "same decoded pixels" and "bit(s) apart" in dropped["t-resized"]["detail"]
    assert dropped["t-leaked-text"] == {"id": "t-leaked-text", "reason": "benchmark-text",
                                        "twin": f"medqa:{test_q['id']}", "detail": "same question and answer",
                                        "source": "train.jsonl"}
    report = json.loads((out / "report.json").read_text())
    assert report["by_benchmark"] == {"medqa": 1, "vqa-rad": 3}
    assert report["benchmarks"]["vqa-rad"]["split"] == "test" and report["benchmarks"]["medqa"]["items"] == 3
    assert "vqa-rad 3" in proc.stdout


def test_every_eval_benchmark_name_is_read_for_decontamination(tmp_path):
    """``--against`` takes each ``doctorsun eval --bench`` name, in the layout ``eval`` reads."""
    from doctorsun.eval.benchmarks import BENCHMARKS

    for name, bench in BENCHMARKS.items():
        if bench.converter is None:
            path = tmp_path / f"{name}.jsonl"
            write_records([_rec(f"{name}-1", "Is it CT?", "yes", "x.png")], path)
        else:
            from doctorsun.data.converters import PRESETS

            path = ps.WRITERS[PRESETS.get(bench.converter, (bench.converter,))[0]](tmp_path / name)
        result = read_set(name, path)
        assert result.records, name
        index = BenchmarkIndex()
        index.add(name, [item_of(r, result.image_root) for r in result.records])
        assert index.counts[name]["items"] == len(result.records)


def test_an_unknown_matching_mode_is_refused():
    with pytest.raises(Exception, match="unknown image matching"):
        deduplicate([Item("x", ("/a.png",), "k")], images="fuzzy")
