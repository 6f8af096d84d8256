"""The general-skill part of SunMed-VL-mini: knowledge questions in MMLU / CMMLU layouts, the
open-endedness rule, base-model replay records, and the quickstart's general scores."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from doctorsun.data.converters import convert
from doctorsun.mini.general_text import (
    KNOWLEDGE,
    OPEN_PROMPTS,
    REPLAY_PROMPTS,
    open_ended,
    replay_records,
    write_knowledge,
)


def test_knowledge_reads_back_through_the_real_converters(tmp_path):
    roots = write_knowledge(tmp_path)
    en, zh = convert("mmlu", roots["mmlu"]), convert("cmmlu", roots["cmmlu"])
    assert len(en.records) == len(zh.records) == len(KNOWLEDGE) and not en.problems and not zh.problems
    by_question = {r["conversations"][0]["value"].split("\n")[0]: r for r in en.records}
    paris = by_question["What is the capital of France?"]
    assert paris["meta"]["answer_letters"] == "C" and paris["choices"][2] == "Paris"
    assert {r["lang"] for r in zh.records} == {"zh"}
    # the same question in both languages has its answer at the same option
    assert sorted(r["meta"]["answer_letters"] for r in en.records) == sorted(r["meta"]["answer_letters"]
                                                                             for r in zh.records)
    assert len({q for _, q, *_ in KNOWLEDGE}) == len(KNOWLEDGE)  # no question twice


def test_knowledge_answers_are_spread_over_the_letters():
    counts = {letter: sum(1 for *_, a in KNOWLEDGE if "ABCD"[a] == letter) for letter in "ABCD"}
    assert min(counts.values()) >= len(KNOWLEDGE) // 6, counts  # a letter bias cannot score well


@pytest.mark.parametrize(("answer", "lang", "expected"), [
    ("Pneumonia often causes cough, fever and shortness of breath.", "en", True),
    ("no", "en", False), ("Yes.", "en", False), ("", "en", False), ("breathing difficulties", "en", False),
    ("肺炎常见症状包括咳嗽、发热和胸痛。", "zh", True), ("否", "zh", False), ("是的。", "zh", False),
    ("肺炎", "zh", False),
])
def test_open_ended(answer, lang, expected):
    assert open_ended(answer, lang) is expected


def test_replay_records_keep_only_usable_answers():
    answers = {lang: ["A long and friendly answer about the question."] * len(p) for lang, p in REPLAY_PROMPTS.items()}
    answers["en"][0] = "no"                            # not open-ended
    answers["zh"][1] = "这是一个很长的回答，但是被截断了\ufffd很长"  # did not decode
    answers["zh"][2] = "这是一个完整而且足够长的回答。"
    records = replay_records(answers)
    ids = {r["id"] for r in records}
    assert "mini-general-text-000-en" not in ids and "mini-general-text-001-zh" not in ids
    assert len(records) == sum(map(len, REPLAY_PROMPTS.values())) - 2
    assert all(r["task"] == "text" and r["meta"]["domain"] == "general" and "image" not in r for r in records)
    assert not set(REPLAY_PROMPTS["en"]) & set(OPEN_PROMPTS["en"])  # scored prompts are never trained on


def test_quickstart_general_scores_and_table(tiny_model_dir, tmp_path, monkeypatch):
    """The scores follow the engine: a model that picks the right option and answers at length keeps
    everything; one that says "no" loses the open-ended share; the table shows the general columns."""
    from doctorsun.model.generate import Engine
    from doctorsun.quickstart import general_scores, table

    engine = Engine.load(tiny_model_dir)
    write_knowledge(tmp_path / "general-text")
    args = SimpleNamespace(eval_batch=8, seed=0)
    right = {q: o[a] for _, q, o, _, _, a in KNOWLEDGE} | {q: o[a] for *_, q, o, a in KNOWLEDGE}

    def loglikelihood(convs, images, replies):  # the cloze question, then the option as the reply
        return [((0.0 if right[c[-1]["content"][-1]["text"]] == r else -5.0), 1)
                for c, r in zip(convs, replies, strict=True)]

    monkeypatch.setattr(engine, "loglikelihood", loglikelihood)
    monkeypatch.setattr(engine, "generate", lambda convs, imgs, s=None: ["A helpful answer of several words."]
                        * len(convs))
    good = general_scores(engine, tmp_path, tmp_path / "good", args)
    assert good == {"knowledge_en": 1.0, "knowledge_zh": 1.0, "knowledge": 1.0, "open_ended": 1.0, "general": 1.0}
    monkeypatch.setattr(engine, "generate", lambda convs, imgs, s=None: ["no"] * len(convs))
    terse = general_scores(engine, tmp_path, tmp_path / "terse", args)
    assert terse["open_ended"] == 0.0 and terse["general"] == 0.5
    rows = json.loads((tmp_path / "terse" / "open_prompts.json").read_text(encoding="utf-8"))
    assert len(rows) == sum(map(len, OPEN_PROMPTS.values())) and not any(r["open_ended"] for r in rows)
    text = table({"untrained": {"closed_accuracy": 0.5, **good, "retention": 1.0},
                  "after 4-finetune": {**terse, "retention": 0.5}})
    assert "general knowledge | open-ended | general retention" in text
    assert "| after 4-finetune | - | 1.000 | 0.000 | 0.500 |" in text
