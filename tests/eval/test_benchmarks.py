"""Every benchmark end to end through ``doctorsun eval``, on its fixture in the published layout."""

from __future__ import annotations

import json

import pytest

from doctorsun.cli import main
from doctorsun.eval.benchmarks import BENCHMARKS, load_benchmark
from tests.eval.conftest import load_jsonl, write_sunmed_set
from tests.fixtures import public_sets

# benchmark -> (fixture writer, breakdown fields its report must have besides answer_type and lang)
CASES = {
    "vqa-rad": (public_sets.write_vqa_rad, {"organ", "question_type"}),
    "slake": (public_sets.write_slake, {"modality", "organ", "content_type"}),
    "pathvqa": (public_sets.write_pathvqa, set()),
    "pmc-vqa": (public_sets.write_pmc_vqa, set()),
    "omnimedvqa": (public_sets.write_omnimedvqa, {"modality", "question_type", "dataset"}),
    "medqa": (public_sets.write_medqa, {"step"}),
    "pubmedqa": (public_sets.write_pubmedqa, set()),
    "cmb": (public_sets.write_cmb, {"exam_type", "question_type"}),
    "cmexam": (public_sets.write_cmexam, {"department", "competency"}),
    "mmlu": (public_sets.write_mmlu, {"subject"}),
    "cmmlu": (public_sets.write_cmmlu, {"subject"}),
    "ceval": (public_sets.write_ceval, {"subject"}),
    "mmbench": (public_sets.write_mmbench, {"category", "l2_category"}),
    "mmmu-med": (public_sets.write_mmmu, {"subject", "subfield"}),
    "medxpertqa-mm": (public_sets.write_medxpertqa, {"medical_task", "body_system", "question_type"}),
    "medxpertqa-text": (public_sets.write_medxpertqa, {"medical_task"}),
    "iu-xray": (public_sets.write_iu_xray, set()),
    "mimic-cxr": (public_sets.write_mimic_cxr, set()),
}
EXPECTED = {"medxpertqa-text": (1, 0)}
"""Benchmarks whose converter options read another part of the fixture than its default."""


def test_every_benchmark_has_a_case():
    assert set(CASES) | {"sunmed-vl-mini"} == set(BENCHMARKS)


@pytest.mark.parametrize("bench", list(CASES))
def test_benchmark_end_to_end(bench, tiny_model_dir, tmp_path, capsys):
    writer, groups = CASES[bench]
    data = writer(tmp_path / "data")
    out = tmp_path / "out"
    rc = main(["eval", "--model", str(tiny_model_dir), "--bench", bench, "--data", str(data), "--out",
               str(out),
               "--max-new-tokens", "4", "--batch-size", "4"])
    assert rc == 0
    good, bad = EXPECTED.get(bench) or public_sets.EXPECTED[writer.__name__.removeprefix("write_")]
    if BENCHMARKS[bench].circular:  # every rotation of the options is a prediction row
        good = sum(len(r["choices"]) for r in load_benchmark(bench, data).records)
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    assert (scores["n"], scores["n_skipped"]) == (good, bad)
    assert len(load_jsonl(out / "predictions.jsonl")) == good
    assert (out / "report.md").is_file() and (out / "scores.png").stat().st_size > 1000
    assert groups <= set(scores["breakdown"]), set(scores["breakdown"])
    assert scores["provenance"]["data"]["files"] >= 1 and len(scores["provenance"]["data"]["sha256"]) == 64
    if any(r["answer_type"] == "MCQ" for r in load_jsonl(out / "predictions.jsonl")):
        assert scores["mcq_method"] == BENCHMARKS[bench].mcq_methods[0]
        assert set(scores["metrics"]["mcq"]) == set(BENCHMARKS[bench].mcq_methods)
    elif BENCHMARKS[bench].converter in ("iu-xray", "mimic-cxr"):
        assert {"bleu_4", "rouge_l", "meteor", "cider"} <= set(scores)
        assert set(scores["metrics"]["report"]) >= {"bleu_1", "bleu_2", "bleu_3", "implementation"}
    else:
        assert scores["closed_accuracy"] is not None and scores["token_f1"] is not None
    assert f"{bench}: {good} scored" in capsys.readouterr().out


def test_vqa_rad_reports_both_closed_counts(tmp_path):
    """VQA-RAD marks "Is the mass on the left or right?" CLOSED: 4 closed by answer_type, 3 yes/no."""
    from doctorsun.eval.runner import prepare
    from doctorsun.eval.scoring import score_rows

    data = load_benchmark("vqa-rad", public_sets.write_vqa_rad(tmp_path))
    rows = [{**prepare(r, data.image_root, BENCHMARKS["vqa-rad"]).row,
             "prediction": "yes"} for r in data.records]
    llava = score_rows(rows)["metrics"]["llava_med"]
    assert (llava["n_closed"], llava["n_yesno"]) == (4, 3)
    assert llava["yesno_accuracy"] == pytest.approx(1 / 3)        # golds no, yes, no
    assert llava["closed_accuracy"] == pytest.approx(1 / 4)        # + "left", never a hit for "yes"


def test_cmb_multiple_answer_questions(tmp_path):
    from doctorsun.eval.runner import prepare

    data = load_benchmark("cmb", public_sets.write_cmb(tmp_path))
    rows = {r["id"]: prepare(r, None, BENCHMARKS["cmb"]).row for r in data.records}
    multi = [r for r in rows.values() if r["multiple"]]
    assert [(r["gold"], r["lang"]) for r in multi] == [("ABC", "zh")]


def test_sunmed_file_through_the_cli(tiny_model_dir, tmp_path):
    data = write_sunmed_set(tmp_path / "mini")
    out = tmp_path / "out"
    assert main(["eval", "--model", str(tiny_model_dir), "--bench", "sunmed-vl-mini", "--data",
                 str(data.parent),
                 "--out", str(out), "--max-new-tokens", "4", "--limit", "3", "--blank-image"]) == 0
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    # the reader rejects the malformed record; the limit takes the first 3 good ones
    assert scores["n"] == 3 and scores["provenance"]["blank_image"] is True
    assert [p["id"] for p in scores["problems"]] == ["bad-record"]


def test_cli_errors_are_one_line(tiny_model_dir, tmp_path, capsys):
    rc = main(["eval", "--model", str(tiny_model_dir), "--bench", "slake", "--data", str(tmp_path / "nope"),
               "--out", str(tmp_path / "out")])
    assert rc == 2
    assert "slake: data not found" in capsys.readouterr().err


def test_cli_checks_numbers_before_loading_anything(tmp_path, capsys):
    rc = main(["eval", "--model", str(tmp_path / "none"), "--bench", "slake", "--data", str(tmp_path),
               "--out", str(tmp_path / "out"), "--batch-size", "0"])
    assert rc == 2 and "--batch-size must be >= 1, not 0" in capsys.readouterr().err


def test_sunmed_vl_mini_end_to_end(tiny_model_dir, tmp_path):
    """The real SunMed-VL-mini builder's held-out file, read and scored as the quickstart does."""
    from doctorsun.mini import build_mini

    build_mini(tmp_path / "mini", seed=0)
    out = tmp_path / "out"
    assert main(["eval", "--model", str(tiny_model_dir), "--bench", "sunmed-vl-mini",
                 "--data", str(tmp_path / "mini" / "test.jsonl"), "--out", str(out), "--max-new-tokens", "4",
                 "--limit", "40", "--batch-size", "8"]) == 0
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    assert scores["n"] == 40 and scores["n_skipped"] == 0
    assert {"answer_type", "lang", "modality", "region", "attribute"} <= set(scores["breakdown"])
    rows = load_jsonl(out / "predictions.jsonl")
    assert all((tmp_path / "mini" / r["image"][0]).is_file() for r in rows)   # paths relative to the file


def test_quickstart_scoring_replaces_an_earlier_runs_answers(tiny_model_dir, tmp_path):
    """A second quickstart run scores its newly trained model into the same folder, not the old answers."""
    from types import SimpleNamespace

    import torch

    from doctorsun.mini import build_mini
    from doctorsun.model import load_model
    from doctorsun.model.generate import Engine
    from doctorsun.quickstart import score, test_sample

    build_mini(tmp_path / "mini", seed=0)
    records = test_sample(tmp_path / "mini", 6, 0)
    args, out = SimpleNamespace(eval_batch=6, seed=0), tmp_path / "after"
    score(Engine(*load_model(tiny_model_dir), name="first run"), records, tmp_path / "mini", out, args)
    model, processor = load_model(tiny_model_dir)
    with torch.no_grad():
        next(model.parameters()).add_(0.5)  # retrained: other weights, another fingerprint
    score(Engine(model, processor, name="second run"), records, tmp_path / "mini", out, args)
    assert json.loads((out / "run.json").read_text(encoding="utf-8"))["model"] == "second run"
    assert len(load_jsonl(out / "predictions.jsonl")) == 6


def test_report_benchmarks_answer_at_report_length():
    """Without --max-new-tokens a report benchmark allows 160 tokens (a findings section), VQA 32."""
    import argparse

    from doctorsun.eval.commands import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    lengths = {}
    for bench in ("iu-xray", "mimic-cxr", "slake"):
        args = parser.parse_args(["--model", "m", "--bench", bench, "--data", "d", "--out", "o"])
        lengths[bench] = config_from_args(args)[0].max_new_tokens
    assert lengths == {"iu-xray": 160, "mimic-cxr": 160, "slake": 32}
    args = parser.parse_args(["--model", "m", "--bench", "iu-xray", "--data", "d", "--out", "o",
                              "--max-new-tokens", "20"])
    assert config_from_args(args)[0].max_new_tokens == 20
