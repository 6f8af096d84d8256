"""The LLM judge against real servers on 127.0.0.1: a scripted OpenAI-compatible one for exact replies
(errors, rate limits, nonsense), and ``doctorsun serve`` itself with a tiny model."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from doctorsun.errors import DoctorSunError
from doctorsun.eval.config import EvalConfig
from doctorsun.eval.judge import JudgeConfig, parse_verdict
from doctorsun.eval.runner import evaluate
from tests.serve.conftest import Server

QUESTIONS = {"j1": "Which lobe is affected?", "j2": "What is the lesion?", "j3": "Which side?",
             "j4": "What organ is shown?", "j5": "胸片显示什么？"}


def scripted_judge():
    """An OpenAI-compatible chat endpoint whose replies depend on the question being judged."""
    app = FastAPI()
    app.state.asked = Counter()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        qid = next(k for k, q in QUESTIONS.items() if q in prompt)
        app.state.asked[qid] += 1
        if qid == "j1" and app.state.asked[qid] == 1:
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "0"})
        if qid == "j4":
            return JSONResponse({"error": {"message": "judge is down"}}, status_code=500)
        text = {"j1": '{"verdict": "correct", "score": 9}', "j2": 'Sure! {"verdict": "partially", "score": 5}',
                "j3": "I like turtles.", "j5": '{"verdict": "incorrect", "score": 1}'}[qid]
        assert body["temperature"] == 0 and body["model"] == "judge-7b"
        return {"id": "x", "object": "chat.completion", "model": "judge-7b-0401",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}

    return app


def records():
    return [{"id": k, "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": "left lower lobe"}],
             "lang": "zh" if k == "j5" else "en", "source": "t", "task": "vqa-open", "answer_type": "OPEN"}
            for k, q in QUESTIONS.items()]


@pytest.fixture()
def fixed_answers(engine, monkeypatch):
    """The model answers j1 with the gold words and everything else with something else."""
    def generate(conversations, images, settings=None, streamer=None):
        return ["left lower lobe" if "lobe" in c[-1]["content"][-1]["text"] else "a cat" for c in conversations]

    monkeypatch.setattr(engine, "generate", generate)
    return engine


def test_judged_evaluation_with_errors_nonsense_retries_and_a_cache(fixed_answers, tmp_path):
    with Server(scripted_judge()) as srv:
        judge = JudgeConfig(f"{srv.url}/v1", "judge-7b", concurrency=3, backoff_s=0.0, retries=2)
        config = EvalConfig(max_new_tokens=4, judge=judge)
        scores = evaluate(fixed_answers, records(), config, image_root=tmp_path, out_dir=tmp_path / "run")
        j = scores["judge"]
        assert j["verdicts"] == {"correct": 1, "partially": 1, "incorrect": 1}
        assert (j["n_open"], j["n_judged"], j["n_excluded"], j["asked"]) == (5, 3, 2, 5)
        reasons = {e["id"]: e["reason"] for e in j["excluded"]}
        assert reasons["j3"] == "unparseable judgment" and "HTTP 500" in reasons["j4"] and "3 attempt" in reasons["j4"]
        assert scores["judge_accuracy"] == pytest.approx(1 / 3) == scores["uncertainty"]["judge_accuracy"]["value"]
        assert j["score"]["value"] == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3
        assert j["served_model"] == ["judge-7b-0401"] and j["prompt_version"] == "doctorsun-judge-v1"
        assert srv.server.config.app.state.asked["j1"] == 2  # the 429 was retried once
        # MultiMedEval calls j1 right and j2, j5 wrong; the judge agrees on all three
        assert j["n_kappa"] == 3 and j["kappa_vs_multimedeval"] == pytest.approx(1.0)
        assert scores["provenance"]["judge"]["model"] == "judge-7b"
        report = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
        assert "## LLM judge" in report and "judge accuracy" in report

        before = Counter(srv.server.config.app.state.asked)
        again = evaluate(fixed_answers, records(), config, image_root=tmp_path, out_dir=tmp_path / "run")
        asked = srv.server.config.app.state.asked - before
        assert asked == Counter({"j4": 3})  # only the failed judgment is asked again
        assert again["judge"]["asked"] == 1 and again["judge"]["verdicts"] == j["verdicts"]
        saved = [json.loads(line) for line in (tmp_path / "run" / "judgments.jsonl").read_text().splitlines()]
        assert [s["id"] for s in saved] == list(QUESTIONS)


def test_a_doctorsun_server_as_judge(chatty_model_dir, fixed_answers, tmp_path, monkeypatch):
    """A real ``doctorsun serve`` (tiny model, API key) answers every judge request; its words are no verdict,
    so every judgment is recorded as unparseable and nothing is counted."""
    from doctorsun.model.generate import Engine
    from doctorsun.serve.api import create_app
    from doctorsun.serve.config import ServeConfig

    monkeypatch.setenv("JUDGE_KEY", "k-123")
    app = create_app(Engine.load(chatty_model_dir), ServeConfig(model_name="tiny-judge", api_key="k-123",
                                                               default_max_tokens=8))
    with Server(app) as srv:
        judge = JudgeConfig(f"{srv.url}/v1", "tiny-judge", api_key_env="JUDGE_KEY", concurrency=2)
        scores = evaluate(fixed_answers, records()[:2], EvalConfig(max_new_tokens=4, judge=judge),
                          image_root=tmp_path, out_dir=tmp_path / "run")
    saved = [json.loads(line) for line in (tmp_path / "run" / "judgments.jsonl").read_text().splitlines()]
    assert [s["served_model"] for s in saved] == ["tiny-judge", "tiny-judge"]
    assert all(s["error"] == "unparseable judgment" and "raw" in s for s in saved)
    assert scores["judge"]["n_judged"] == 0 and scores["judge_accuracy"] is None
    assert "k-123" not in (tmp_path / "run" / "scores.json").read_text()  # the key is never written


def test_judge_settings_and_reply_parsing():
    assert parse_verdict('{"verdict": "correct", "score": 10}') == ("correct", 10.0)
    assert parse_verdict('x {"verdict": "Partially correct"} y') == ("partially", None)
    assert parse_verdict("Verdict: incorrect") == ("incorrect", None)
    assert parse_verdict("部分正确。") == ("partially", None)
    assert parse_verdict('{"verdict": "maybe"}') is None and parse_verdict("") is None
    with pytest.raises(DoctorSunError, match="must start with http"):
        JudgeConfig("127.0.0.1:8000", "m")
    with pytest.raises(DoctorSunError, match=r"\$NO_SUCH_KEY_VAR is not set"):
        JudgeConfig("http://127.0.0.1:1/v1", "m", api_key_env="NO_SUCH_KEY_VAR")


def scripted_matcher():
    """An OpenAI-compatible endpoint answering MMBench's matching prompt: it names the option that says
    "blue" when the answer speaks of the sky, and says nothing useful otherwise."""
    import re

    app = FastAPI()
    app.state.prompts = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        prompt = body["messages"][-1]["content"]
        app.state.prompts.append(prompt)
        last = prompt.rsplit("Example 3:", 1)[-1]
        blue = re.search(r"\n([A-D])\. blue\n", last)
        text = blue.group(1) if "sky" in last and blue else "Hard to say."
        return {"id": "x", "object": "chat.completion", "model": "matcher-1",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}

    return app


def test_mmbench_answers_its_rules_cannot_read_are_matched_by_the_judge(engine, monkeypatch, tmp_path):
    """MMBench with an LLM matcher, as VLMEvalKit scores it: the colour question is answered in words no
    rule reads ("the sky's colour"); the matcher names "blue" in every rotation, so the question counts.
    The counting question gets an answer the matcher cannot place either: after three tries an option is
    drawn (seeded). The Chinese question is read as wrong in one rotation, so its other, unreadable
    rotations are not asked about. A re-run asks nothing."""
    from doctorsun.eval.benchmarks import load_benchmark
    from doctorsun.eval.judge import match_messages
    from tests.fixtures import public_sets

    def generate(conversations, images, settings=None, streamer=None):
        out = []
        for c in conversations:
            text = c[-1]["content"][-1]["text"]
            if "colour" in text:
                out.append("the same as the sky's colour")
            elif "How many" in text:
                out.append("a number of them")
            else:  # Chinese: red when red is offered first, else no option named
                out.append("红色" if "\nA. 红色" in text else "像天空一样")
        return out

    monkeypatch.setattr(engine, "generate", generate)
    data = load_benchmark("mmbench", public_sets.write_mmbench(tmp_path))
    plain = evaluate(engine, data.records, EvalConfig(bench="mmbench", max_new_tokens=4),
                     image_root=data.image_root, out_dir=tmp_path / "plain")
    assert plain["circular_accuracy"] == 0.0 and "mmbench_matching" not in plain

    with Server(scripted_matcher()) as srv:
        judge = JudgeConfig(f"{srv.url}/v1", "matcher", backoff_s=0.0)
        config = EvalConfig(bench="mmbench", max_new_tokens=4, judge=judge)
        scores = evaluate(engine, data.records, config, image_root=data.image_root, out_dir=tmp_path / "run")
        prompts = list(srv.server.config.app.state.prompts)
        m = scores["mmbench_matching"]
        # 4 colour + 3 counting + 3 of the 4 Chinese rotations unread; the Chinese ones are not asked for
        assert (m["n_unread"], m["n_asked_for"], m["asked"], m["matched"], m["random"]) == (10, 7, 7, 4, 3)
        assert m["failed"] == []
        assert len(prompts) == 4 + 3 * 3  # a counting answer is asked about three times
        assert not any("像天空一样" in p for p in prompts)
        assert all("There are several options: \nA. " in p and "Answer: " in p for p in prompts)
        # the bare question, as VLMEvalKit quotes it (no hint); "?" added by MMBench's template
        assert any("Question: What is the main colour of the object??\nOptions: " in p for p in prompts)
        assert not any("The photo was taken outdoors." in p for p in prompts)
        matches = [json.loads(line) for line in (tmp_path / "run" / "choice_matches.jsonl").read_text().splitlines()]
        by_id = {x["id"]: x for x in matches}
        counting = [x for i, x in by_id.items() if x.get("random")]
        assert len(counting) == 3 and all(x["choice"] in "ABCZ" for x in counting)
        colour = [x for x in matches if not x.get("random")]
        assert len(colour) == 4 and len({x["choice"] for x in colour}) == 4  # blue moves with each rotation
        circular = scores["metrics"]["circular"]
        assert circular["n"] == 3 and scores["circular_accuracy"] >= 1 / 3  # the colour question counts
        assert "## MMBench answer matching (LLM)" in (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
        assert scores["provenance"]["judge"]["match_prompt_version"] == "mmbench-match-v1"

        again = evaluate(engine, data.records, config, image_root=data.image_root, out_dir=tmp_path / "run")
        assert len(srv.server.config.app.state.prompts) == len(prompts)  # all from the cache
        assert again["mmbench_matching"]["asked"] == 0
        assert again["circular_accuracy"] == scores["circular_accuracy"]

    zh = match_messages({"stem": "图中物体的主要颜色是什么？", "options": {"A": "红色", "B": "蓝色"},
                         "prediction": "蓝"})
    assert zh[0]["content"].startswith("你是一个帮助我匹配答案") and "B. 蓝色\n" in zh[0]["content"]
