"""The evaluation runner with the tiny model: outputs, determinism, resume, skips, blank images."""

from __future__ import annotations

import json

import pytest

from doctorsun.errors import DoctorSunError
from doctorsun.eval.config import EvalConfig
from doctorsun.eval.runner import PREDICTIONS, evaluate
from tests.eval.conftest import load_jsonl

GOOD = ["c1", "c2", "o1", "o2", "m1", "t1"]


def _run(engine, sunmed_file, out, **kw):
    records = load_jsonl(sunmed_file)
    kw.setdefault("batch_size", 4)
    config = EvalConfig(max_new_tokens=6, **kw)
    return evaluate(engine, records, config, image_root=sunmed_file.parent, out_dir=out,
                    data_file=sunmed_file)


def _spy(monkeypatch, engine):
    """Record the questions (and images) each ``generate`` call receives."""
    calls = []
    real = engine.generate

    def spy(conversations, images, settings=None, streamer=None):
        calls.append(([c[-1]["content"][-1]["text"] for c in conversations], images))
        return real(conversations, images, settings)

    monkeypatch.setattr(engine, "generate", spy)
    return calls


def test_outputs_scores_and_provenance(engine, sunmed_file, tmp_path):
    out = tmp_path / "run"
    scores = _run(engine, sunmed_file, out)
    for name in (PREDICTIONS, "scores.json", "report.md", "scores.png"):
        assert (out / name).stat().st_size > 0, name
    rows = load_jsonl(out / PREDICTIONS)
    assert [r["id"] for r in rows] == GOOD
    assert {"id", "question", "answer", "prediction", "answer_type", "lang"} <= set(rows[0])
    assert rows[0]["question"] == "Answer the following question with yes or no.\nIs this a CT image?"
    assert {r["id"]: r["answer_type"] for r in rows}["m1"] == "MCQ"
    assert scores["n"] == 6 and scores["n_skipped"] == 2
    assert {p["id"] for p in scores["problems"]} == {"bad-image", "bad-record"}
    for key in ("closed_accuracy", "open_recall", "mcq_accuracy", "token_f1", "exact_match"):
        assert 0.0 <= scores[key] <= 1.0, key
    assert set(scores["breakdown"]["lang"]) == {"en", "zh"}
    assert set(scores["breakdown"]["modality"]) == {"CT", "MRI"}
    assert list(scores["breakdown"]["region"]) == ["head"]
    prov = scores["provenance"]
    import hashlib
    assert prov["data"]["sha256"] == hashlib.sha256(sunmed_file.read_bytes()).hexdigest()
    assert prov["prompt"]["chat_template"] == "chatml" and len(prov["prompt"]["builder_sha256"]) == 64
    assert prov["model"]["meta"]["stage"] == "build"
    assert prov["decoding"]["max_new_tokens"] == 6 and prov["decoding"]["do_sample"] is False
    assert prov["versions"]["doctorsun"] and prov["generated"] == 6
    on_disk = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    assert on_disk["closed_accuracy"] == scores["closed_accuracy"]
    saved = json.loads((out / "eval_config.json").read_text(encoding="utf-8"))
    assert EvalConfig.from_dict(saved) == EvalConfig(batch_size=4, max_new_tokens=6)
    assert prov["config"] == saved
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "bad-image" in report and "by modality" in report and "MultiMedEval" in report


def test_second_run_gives_the_same_predictions(engine, sunmed_file, tmp_path):
    _run(engine, sunmed_file, tmp_path / "a")
    engine.model.train()  # as a training loop would hand it over: evaluated in eval mode, then restored
    try:
        _run(engine, sunmed_file, tmp_path / "b", batch_size=1)
        assert engine.model.training
    finally:
        engine.model.eval()
    first, second = load_jsonl(tmp_path / "a" / PREDICTIONS), load_jsonl(tmp_path / "b" / PREDICTIONS)
    assert len({r["prediction"] for r in first}) > 3       # the answers differ between questions...
    assert [r["prediction"] for r in first] == [r["prediction"] for r in second]   # ...and between runs not


def test_resume_generates_only_what_is_missing(engine, sunmed_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    full = _run(engine, sunmed_file, out)
    rows = (out / PREDICTIONS).read_text(encoding="utf-8").splitlines(keepends=True)
    # an interrupted run: three rows written, then half of the fourth
    (out / PREDICTIONS).write_text("".join(rows[:3]) + rows[3][:20], encoding="utf-8")
    calls = _spy(monkeypatch, engine)
    again = _run(engine, sunmed_file, out)
    asked = [q for questions, _ in calls for q in questions]
    assert len(asked) == 3 and "Is this a CT image?" not in " ".join(asked)
    assert again["provenance"]["resumed"] == 3 and again["provenance"]["generated"] == 3
    assert [r["id"] for r in load_jsonl(out / PREDICTIONS)] == GOOD
    assert again["closed_accuracy"] == full["closed_accuracy"] and again["n"] == 6


def test_resume_refuses_predictions_of_another_run(engine, sunmed_file, tmp_path):
    import torch

    _run(engine, sunmed_file, tmp_path / "run", limit=1)
    with pytest.raises(DoctorSunError, match="blank_image"):
        _run(engine, sunmed_file, tmp_path / "run", limit=1, blank_image=True)
    # same model path, new weights (a retrained model saved in place): refused too
    param = engine.model.model.multi_modal_projector.linear_1.weight
    saved = param.detach().clone()
    try:
        with torch.no_grad():
            param.mul_(2.0)
        with pytest.raises(DoctorSunError, match="weights_fingerprint"):
            _run(engine, sunmed_file, tmp_path / "run", limit=1)
        fresh = _run(engine, sunmed_file, tmp_path / "run", limit=1, resume=False)   # starting over is fine
        assert fresh["provenance"]["generated"] == 1 and fresh["provenance"]["resumed"] == 0
    finally:
        with torch.no_grad():
            param.copy_(saved)


def test_blank_image_swaps_every_image_for_a_black_one(engine, sunmed_file, tmp_path, monkeypatch):
    calls = _spy(monkeypatch, engine)
    scores = _run(engine, sunmed_file, tmp_path / "blank", blank_image=True)
    images = [img for _, batch in calls for imgs in batch for img in imgs]
    assert len(images) == 5
    assert all(img.getextrema() == ((0, 0), (0, 0), (0, 0)) for img in images)
    assert sorted(img.size for img in images) == [(16, 16), (16, 16), (20, 16), (20, 16), (24, 20)]
    assert scores["provenance"]["blank_image"] is True


def test_limit_and_a_failing_batch(engine, sunmed_file, tmp_path, monkeypatch):
    real = engine.generate

    def flaky(conversations, images, settings=None, streamer=None):
        if any("Which organ" in c[-1]["content"][-1]["text"] for c in conversations):
            raise RuntimeError("boom")
        return real(conversations, images, settings)

    monkeypatch.setattr(engine, "generate", flaky)
    scores = _run(engine, sunmed_file, tmp_path / "lim", limit=4)
    assert scores["n"] == 3 and scores["provenance"]["limit"] == 4
    assert [p["id"] for p in scores["problems"]] == ["o1"] and "boom" in scores["problems"][0]["reason"]


@pytest.mark.parametrize("fields, message", [
    ({"bench": "vqa-med-2019"}, "unknown benchmark 'vqa-med-2019'"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"max_new_tokens": 2.5}, "max_new_tokens must be an integer >= 1"),
    ({"limit": 0}, "limit must be >= 1"),
])
def test_eval_config_refuses_bad_values(fields, message):
    with pytest.raises(DoctorSunError, match=message):
        EvalConfig(**fields)
    with pytest.raises(DoctorSunError, match="unknown eval config keys"):
        EvalConfig.from_dict({"temperature": 0.7})
