"""Report-generation metrics: pycocoevalcap's BLEU / ROUGE-L / CIDEr on hand-worked cases, METEOR's
implementations, and the clinical-metric hook."""

from __future__ import annotations

import shutil

import pytest

from doctorsun.eval import report_metrics
from doctorsun.eval.report_metrics import clinical_scores, corpus_scores, tokens


def test_tokens_drop_punctuation_and_case():
    assert tokens("The Heart is NORMAL. No effusion!") == "the heart is normal no effusion"
    assert tokens("心脏大小正常。") == "心 脏 大 小 正 常"


def test_identical_reports_score_full_marks_and_unrelated_ones_nothing():
    refs = ["the heart size is normal", "there is a small left pleural effusion", "no pneumothorax is seen"]
    same = corpus_scores(refs, refs)
    assert all(same[f"bleu_{n}"] == pytest.approx(1.0) for n in range(1, 5))
    assert same["rouge_l"] == pytest.approx(1.0) and same["meteor"] > 0.9
    other = corpus_scores(["zebra apple banana cherry"] * 3, refs)
    assert other["bleu_1"] < 1e-6 and other["rouge_l"] == 0 and other["cider"] == 0 and other["meteor"] == 0


def test_bleu_1_by_hand():
    """One hypothesis "the heart is normal" (4 words) against "the heart is normal in size" (6): every
    word is right (precision 1), brevity penalty exp(1 - 6/4) = 0.6065."""
    s = corpus_scores(["The heart is normal."], ["The heart is normal in size."])
    assert s["bleu_1"] == pytest.approx(0.60653, abs=1e-4)


def test_rouge_l_by_hand():
    """LCS of "a b c d" and "a c d e" is 3: P = R = 3/4, ROUGE-L F (beta 1.2) = 0.75."""
    assert corpus_scores(["a b c d"], ["a c d e"])["rouge_l"] == pytest.approx(0.75)


def test_empty_prediction_scores_zero_and_is_kept():
    s = corpus_scores(["", "the lungs are clear"], ["the lungs are clear", "the lungs are clear"])
    assert s["n"] == 2 and 0 < s["bleu_1"] < 1


def test_meteor_implementation_is_named(monkeypatch):
    s = corpus_scores(["the lungs are clear"], ["lungs are clear"], meteor="nltk")
    assert s["implementation"]["meteor"].startswith("nltk") and 0 < s["meteor"] < 1
    monkeypatch.setenv("DOCTORSUN_METEOR", "nltk")
    assert corpus_scores(["the lungs are clear"], ["lungs are clear"])["meteor"] == s["meteor"]
    with pytest.raises(ValueError, match="meteor must be"):
        corpus_scores(["a"], ["a"], meteor="perl")


@pytest.mark.skipif(shutil.which("java") is None, reason="the reference METEOR runs on Java")
def test_java_meteor_agrees_roughly_with_nltk():
    preds, refs = ["the heart is normal in size", "small effusion on the left"], ["heart size is normal",
                                                                                  "small left pleural effusion"]
    java = corpus_scores(preds, refs, meteor="java")
    nltk = corpus_scores(preds, refs, meteor="nltk")
    assert java["implementation"]["meteor"].startswith("pycocoevalcap")
    assert abs(java["meteor"] - nltk["meteor"]) < 0.25


def word_overlap(predictions, references):
    """A stand-in clinical metric for the hook: share of reference words found in the prediction."""
    pairs = zip(predictions, references, strict=True)
    hits = [len(set(p.split()) & set(r.split())) / len(set(r.split())) for p, r in pairs]
    return {"word_overlap": sum(hits) / len(hits)}


def test_clinical_hook_runs_a_user_function_and_reports_failures():
    out = clinical_scores(["tests.eval.test_report_metrics:word_overlap", "chexbert", "nonsense"],
                          ["heart normal", "effusion"], ["heart normal", "no effusion"])
    assert out["tests.eval.test_report_metrics:word_overlap"] == {"word_overlap": 0.75}
    assert "error" in out["chexbert"]  # f1chexbert is installed, but its weights cannot be fetched here
    assert "unknown clinical metric" in out["nonsense"]["error"]
    assert set(report_metrics.CLINICAL) == {"chexbert", "radgraph", "radgraph-xl"}


def test_eval_reports_clinical_metrics_under_their_names(tiny_model_dir, tmp_path):
    import json

    from doctorsun.cli import main
    from tests.fixtures import public_sets

    data = public_sets.write_iu_xray(tmp_path / "data")
    out = tmp_path / "out"
    assert main(["eval", "--model", str(tiny_model_dir), "--bench", "iu-xray", "--data", str(data), "--out",
                 str(out), "--max-new-tokens", "6", "--clinical", "tests.eval.test_report_metrics:word_overlap"]) == 0
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    assert "word_overlap" in scores["metrics"]["clinical"]["tests.eval.test_report_metrics:word_overlap"]
    assert scores["provenance"]["config"]["clinical"] == ["tests.eval.test_report_metrics:word_overlap"]
