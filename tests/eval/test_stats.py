"""Uncertainty and paired comparison: bootstrap intervals, McNemar, kappa, and ``eval compare`` on two
hand-made runs with a known difference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from doctorsun.cli import main
from doctorsun.errors import DoctorSunError
from doctorsun.eval import stats
from doctorsun.eval.compare import compare
from doctorsun.eval.scoring import score_rows


def test_bootstrap_interval_is_seeded_and_covers_the_estimate():
    values = [1.0] * 30 + [0.0] * 10
    first, again = stats.bootstrap_ci(values, seed=3), stats.bootstrap_ci(values, seed=3)
    assert first == again and first["value"] == 0.75 and first["n"] == 40
    lo, hi = first["ci95"]
    assert lo < 0.75 < hi and 0.55 < lo and hi < 0.9  # about 0.75 +- 1.96 x sqrt(.75 x .25 / 40) = 0.134
    smooth = [i / 37 for i in range(37)]  # many distinct means: another seed moves the interval
    assert stats.bootstrap_ci(smooth, seed=4)["ci95"] != stats.bootstrap_ci(smooth, seed=3)["ci95"]
    assert stats.bootstrap_ci([0.5] * 7)["ci95"] == [0.5, 0.5]
    assert stats.bootstrap_ci([]) == {"value": None, "n": 0, "ci95": None}


def test_mcnemar_exact_and_kappa_against_hand_worked_values():
    a = [True] * 5 + [False] * 5
    b = [True] * 9 + [False]
    assert stats.mcnemar_exact(a, b) == {"b": 0, "c": 4, "p": 0.125}  # 2 x (1/2)^4
    assert stats.mcnemar_exact(a, a)["p"] == 1.0
    assert stats.mcnemar_exact([True, False, True], [False, True, False]) == {"b": 2, "c": 1, "p": 1.0}
    # 8 of 10 agree; both say yes half the time: kappa = (0.8 - 0.5) / 0.5
    assert stats.cohen_kappa([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 1, 0, 0, 0, 0]) == pytest.approx(0.6)
    assert stats.cohen_kappa([True, True], [True, True]) is None


def test_every_headline_number_carries_n_and_an_interval():
    rows = [{"id": str(i), "question": "q", "answer": "yes", "prediction": "yes" if i % 4 else "no",
             "answer_type": "CLOSED", "lang": "en"} for i in range(20)]
    scores = score_rows(rows, seed=0)
    ci = scores["uncertainty"]
    assert ci["closed_accuracy"]["value"] == scores["closed_accuracy"] == 0.75
    assert ci["closed_accuracy"]["n"] == 20 and ci["token_f1"]["n"] == 20
    assert ci["closed_accuracy"]["ci95"][0] < 0.75 < ci["closed_accuracy"]["ci95"][1]
    assert "percentile bootstrap" in ci["method"] and score_rows(rows, seed=0)["uncertainty"] == ci


def make_run(folder: Path, right: list[bool], records_sha: str = "r" * 64) -> Path:
    """An evaluation folder with closed questions answered right or wrong as given."""
    folder.mkdir(parents=True)
    rows = [{"id": f"q{i}", "question": "Is there a nodule?", "answer": "yes",
             "prediction": "yes" if ok else "no", "answer_type": "CLOSED", "lang": "en"}
            for i, ok in enumerate(right)]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompt = {"chat_template_sha256": "t" * 64, "builder_sha256": "b" * 64}
    scores = {"bench": "sunmed-vl-mini", "provenance": {"records_sha256": records_sha, "prompt": prompt}}
    (folder / "scores.json").write_text(json.dumps(scores))
    return folder


def test_compare_two_runs_with_a_known_difference(tmp_path, capsys):
    a = make_run(tmp_path / "a", [True] * 5 + [False] * 5)
    b = make_run(tmp_path / "b", [True] * 9 + [False])
    result = compare(a, b, seed=0)
    closed = result["metrics"]["closed_accuracy"]
    assert (closed["n"], closed["a"], closed["b"]) == (10, 0.5, 0.9)
    assert closed["difference"]["value"] == pytest.approx(0.4)
    lo, hi = closed["difference"]["ci95"]
    assert lo <= 0.4 <= hi and lo > 0  # every resample of these pairs has B ahead or level
    assert closed["mcnemar"] == {"b": 0, "c": 4, "p": 0.125}
    assert main(["eval", "compare", str(a), str(b), "--metric", "closed_accuracy", "--out", str(tmp_path / "c")]) == 0
    assert "| closed_accuracy | 10 | 0.500 | 0.900 | +0.400 |" in capsys.readouterr().out
    saved = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert list(saved["metrics"]) == ["closed_accuracy"] and (tmp_path / "c" / "compare.png").stat().st_size > 0


def test_compare_refuses_runs_on_other_data_unless_forced(tmp_path):
    a = make_run(tmp_path / "a", [True, False])
    b = make_run(tmp_path / "b", [True, True], records_sha="s" * 64)
    with pytest.raises(DoctorSunError, match="differ in data"):
        compare(a, b)
    assert compare(a, b, force=True)["forced_over"] == ["data"]
    with pytest.raises(DoctorSunError, match="not in both runs"):
        compare(a, b, metrics=["judge_accuracy"], force=True)


def test_compare_pairs_judge_verdicts_too(tmp_path):
    a = make_run(tmp_path / "a", [True] * 4)
    b = make_run(tmp_path / "b", [True] * 4)
    for run, verdicts in ((a, ["incorrect"] * 4), (b, ["correct", "correct", "correct", "partially"])):
        lines = [json.dumps({"id": f"q{i}", "verdict": v, "raw": v}) for i, v in enumerate(verdicts)]
        (run / "judgments.jsonl").write_text("\n".join(lines) + "\n")
    judge = compare(a, b, metrics=["judge_accuracy"])["metrics"]["judge_accuracy"]
    assert (judge["n"], judge["a"], judge["b"]) == (4, 0.0, 0.75)
    assert judge["mcnemar"] == {"b": 0, "c": 3, "p": 0.25}
