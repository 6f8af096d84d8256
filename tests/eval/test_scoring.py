"""Aggregation over prediction rows, checked against sums worked out by hand."""

from __future__ import annotations

import math

import pytest

from doctorsun.eval.scoring import score_rows

OPTIONS = {"A": "CT", "B": "MRI"}


def _row(rid, answer_type, answer, pred, lang="en", **extra):
    return {"id": rid, "question": "q", "answer": answer, "prediction": pred, "answer_type": answer_type,
            "lang": lang, **extra}


ROWS = [
    _row("1", "CLOSED", "yes", "Yes, there is.", groups={"modality": "CT"}),
    _row("2", "CLOSED", "no", "yes", groups={"modality": "CT"}),
    _row("3", "CLOSED", "left", "left"),                       # VQA-RAD: CLOSED but not yes/no
    _row("4", "OPEN", "left lung", "the left lung", groups={"modality": "MRI"}),
    _row("5", "OPEN", "肝脏", "肝", lang="zh"),
    _row("6", "MCQ", "B. MRI", "The answer is B.", options=OPTIONS, gold="B"),
    _row("7", "MCQ", "A. CT", "mri", options=OPTIONS, gold="A"),
]


@pytest.fixture(scope="module")
def scores():
    return score_rows(ROWS, ("huatuo", "closest"), ["modality"])


def test_llava_med_numbers(scores):
    llava = scores["metrics"]["llava_med"]
    # closed by answer_type: rows 1-3; only row 1 says yes/no and holds the gold (row 3 says neither)
    assert llava["closed_accuracy"] == pytest.approx(1 / 3) and llava["n_closed"] == 3
    assert llava["yesno_accuracy"] == 0.5 and llava["n_yesno"] == 2      # rows 1, 2
    assert llava["open_recall"] == pytest.approx((1 + 0.5) / 2)          # rows 4, 5 (肝 of 肝脏)
    assert llava["open_f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert llava["open_bleu1"] == pytest.approx((1 + math.exp(-1)) / 2)
    assert scores["closed_accuracy"] == llava["closed_accuracy"]
    assert scores["open_recall"] == llava["open_recall"]


def test_multimedeval_numbers(scores):
    mme = scores["metrics"]["multimedeval"]
    assert mme["n_closed"] == 2 and mme["closed_accuracy"] == 0.5        # yes/no golds only
    assert mme["n_open"] == 3 and mme["open_accuracy"] == pytest.approx(2 / 3)
    assert mme["open_recall"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert mme["recall"] == pytest.approx((1 + 0 + 1 + 1 + 0.5) / 5)
    assert mme["f1"] == pytest.approx((0.5 + 0 + 1 + 1 + 2 / 3) / 5, abs=1e-7)
    assert mme["bleu1"] == pytest.approx((1 / 3 + 0 + 1 + 1 + math.exp(-1)) / 5)
    assert scores["token_f1"] == mme["f1"]


def test_exact_match_and_mcq(scores):
    em = scores["metrics"]["exact_match"]
    assert em["accuracy"] == pytest.approx(1 / 5)                         # only row 3
    assert em["closed_accuracy"] == pytest.approx(1 / 3) and em["open_accuracy"] == 0.0
    assert scores["metrics"]["mcq"] == {"huatuo": {"accuracy": 0.5, "n": 2},
                                        "closest": {"accuracy": 0.0, "n": 2}}
    assert scores["mcq_accuracy"] == 0.5 and scores["mcq_method"] == "huatuo"
    assert scores["n"] == 7


def test_breakdown(scores):
    by_type = scores["breakdown"]["answer_type"]
    assert set(by_type) == {"CLOSED", "OPEN", "MCQ"}
    assert by_type["CLOSED"]["n"] == 3 and "open_recall" not in by_type["CLOSED"]
    assert by_type["OPEN"]["open_recall"] == pytest.approx(0.75)
    assert by_type["MCQ"] == {"n": 2, "mcq_accuracy": 0.5}
    assert scores["breakdown"]["lang"]["zh"] == pytest.approx(
        {"n": 1, "open_recall": 0.5, "token_f1": 2 / 3, "bleu1": math.exp(-1), "exact_match": 0.0})
    assert scores["breakdown"]["modality"]["CT"]["closed_accuracy"] == 0.5
    assert scores["breakdown"]["modality"]["MRI"]["n"] == 1


def test_multiple_answer_questions_use_only_cmb():
    rows = [_row("m", "MCQ", "A. x\nC. z", "答案是AC", options={"A": "x", "B": "y", "C": "z"}, gold="AC",
                 multiple=True)]
    scores = score_rows(rows, ("cmb", "huatuo"))
    assert scores["metrics"]["mcq"] == {"cmb": {"accuracy": 1.0, "n": 1}}
    assert scores["closed_accuracy"] is None and "token_f1" not in scores


def test_free_text_fields_are_not_broken_down():
    rows = [_row(str(i), "OPEN", "liver", "liver", groups={"attribute": f"text {i}", "modality": "CT"})
            for i in range(60)]
    breakdown = score_rows(rows, group_fields=["attribute", "modality"])["breakdown"]
    assert "attribute" not in breakdown and breakdown["modality"]["CT"]["n"] == 60
