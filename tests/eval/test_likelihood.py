"""Likelihood scoring of multiple choice (the cloze form): the engine's log-probabilities, the cloze
prompt, and ``doctorsun eval --scoring likelihood`` end to end on MMLU's published layout."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from doctorsun.cli import main
from doctorsun.eval.benchmarks import get_benchmark, load_benchmark
from doctorsun.eval.runner import prepare
from doctorsun.model.chat import literal_messages, user_message
from tests.eval.conftest import load_jsonl
from tests.fixtures import public_sets


def _reference(engine, conversation, images, reply) -> float:
    """Sum of log-probabilities of ``reply``'s tokens, from one unpadded forward pass."""
    prompt = engine.processor.apply_chat_template(literal_messages(conversation), add_generation_prompt=True,
                                                  tokenize=False)
    enc = engine.processor(text=[prompt + reply], images=images or None, return_tensors="pt")
    n_prompt = engine.processor(text=[prompt], images=images or None, return_tensors="pt")["input_ids"].shape[1]
    with torch.no_grad():
        logits = engine.model(**enc).logits[0].float()
    ids = enc["input_ids"][0]
    lp = torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[1:, None]).squeeze(-1)
    return float(lp[n_prompt - 1:].sum())


def test_batched_loglikelihood_equals_one_at_a_time(engine):
    """Left padding in a batch of different lengths (with and without an image) must not move a score."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    convs = [[user_message("What is the capital of France?", 0)],
             [user_message("Which modality?", 1)],
             [user_message("A much longer question about the number of chambers in the human heart?", 0)]]
    images = [[], [image], []]
    replies = ["Paris", "Magnetic resonance imaging", "4"]
    batched = engine.loglikelihood(convs, images, replies)
    for conv, imgs, reply, (value, n_tokens) in zip(convs, images, replies, batched, strict=True):
        assert n_tokens == len(engine.tokenizer(reply, add_special_tokens=False)["input_ids"])
        assert abs(value - _reference(engine, conv, imgs, reply)) < 1e-3
    assert batched[0][0] != batched[1][0]


def test_text_options_share_their_prompt_and_keep_their_scores(engine, monkeypatch):
    """Text-only rows: each distinct prompt runs once (its cache copied to its options), and every option
    scores what one unpadded pass over prompt + option gives, whatever the prompts' and options' lengths."""
    convs = [[user_message("What is the capital of France?", 0)]] * 4 + \
            [[user_message("A much longer question about the number of chambers in the human heart?", 0)]] * 3
    replies = ["Paris", "Rome", "Berlin, the capital of Germany", "M", "4", "two chambers", "Four"]
    calls = []
    forward = engine.model.forward

    def counting(*args, **kwargs):
        calls.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    monkeypatch.setattr(engine.model, "forward", counting)
    got = engine.loglikelihood(convs, [[] for _ in convs], replies)
    monkeypatch.setattr(engine.model, "forward", forward)
    assert calls[0][0] == 2 and calls[1][0] == len(replies)  # two prompts, then every reply after its own
    for conv, reply, (value, n_tokens) in zip(convs, replies, got, strict=True):
        assert n_tokens == len(engine.tokenizer(reply, add_special_tokens=False)["input_ids"])
        assert abs(value - _reference(engine, conv, [], reply)) < 1e-3, reply
    assert len({round(v, 3) for v, _ in got}) == len(got)


def test_cloze_prompt_drops_the_option_list(tmp_path):
    data = load_benchmark("mmlu", public_sets.write_mmlu(tmp_path))
    item = prepare(data.records[0], None, get_benchmark("mmlu"))
    asked = item.messages[-1]["content"][-1]["text"]
    cloze = item.cloze[-1]["content"][-1]["text"]
    assert "A. Femur" in asked and cloze == "Which bone is the longest in the human body?"


def test_eval_likelihood_end_to_end_and_choice_rule(engine, tiny_model_dir, tmp_path, monkeypatch, capsys):
    """The CLI run writes every option's log-probability; the choice is the best per UTF-8 byte, and the
    score follows the choice: favouring the gold option scores 1, favouring another scores 0."""
    data = public_sets.write_mmlu(tmp_path / "data")
    out = tmp_path / "out"
    rc = main(["eval", "--model", str(tiny_model_dir), "--bench", "mmlu", "--data", str(data), "--out", str(out),
               "--scoring", "likelihood", "--batch-size", "2"])
    assert rc == 0
    rows = load_jsonl(out / "predictions.jsonl")
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    assert scores["n"] == 3 and scores["mcq_method"] == "likelihood"
    assert scores["provenance"]["config"]["scoring"] == "likelihood"
    for row in rows:
        assert set(row["loglik"]) == set(row["options"]) == set("ABCD")
        per_byte = {k: v[0] / len(row["options"][k].encode()) for k, v in row["loglik"].items()}
        assert row["choice"] == max(per_byte, key=per_byte.get)
        assert row["prediction"] == f"{row['choice']}. {row['options'][row['choice']]}"
    assert scores["mcq_accuracy"] == np.mean([r["choice"] == r["gold"] for r in rows])

    from doctorsun.eval.config import EvalConfig
    from doctorsun.eval.runner import evaluate

    records = load_benchmark("mmlu", data).records
    gold_text = {r["choices"][ord(r["meta"]["answer_letters"]) - 65] for r in records}
    for favour_gold, expected in ((True, 1.0), (False, 0.0)):
        def fake(convs, images, replies, favour_gold=favour_gold):
            return [((0.0 if (r in gold_text) == favour_gold else -50.0), 1) for r in replies]

        monkeypatch.setattr(engine, "loglikelihood", fake)
        result = evaluate(engine, records, EvalConfig(bench="mmlu", scoring="likelihood", resume=False),
                          image_root=None, out_dir=tmp_path / f"fake-{favour_gold}")
        assert result["mcq_accuracy"] == expected


def test_an_engine_without_likelihoods_is_told_so(engine, tmp_path, monkeypatch):
    from doctorsun.eval.config import EvalConfig
    from doctorsun.eval.runner import evaluate

    class NoLikelihood:
        kind, name, model, processor = "vllm", "x", engine.model, engine.processor

    records = load_benchmark("mmlu", public_sets.write_mmlu(tmp_path)).records
    scores = evaluate(NoLikelihood(), records, EvalConfig(bench="mmlu", scoring="likelihood"), image_root=None,
                      out_dir=tmp_path / "out")
    assert scores["n"] == 0
    assert all("cannot score likelihoods" in p["reason"] for p in scores["problems"][-3:])
