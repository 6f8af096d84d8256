"""Streaming training data: the prepared path's samples, split by process and worker with none lost or
repeated, seeded, resumable; what needs the whole corpus is refused."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from doctorsun.data.tokenize import ChatTokenizer
from doctorsun.errors import DoctorSunError
from doctorsun.train.config import DataConfig
from doctorsun.train.prepare import build_sample_set
from doctorsun.train.streaming import StreamSet, check_streaming, stream
from tests.train.conftest import make_recipe


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[str]:
    """SunMed-VL-mini's questions in 4 JSONL shards beside its images."""
    from doctorsun.mini import build_mini

    out = tmp_path_factory.mktemp("mini-shards")
    build_mini(out)
    lines = (out / "instruct_train.jsonl").read_text(encoding="utf-8").splitlines()[:400]
    files = []
    for k in range(4):
        path = out / f"part-{k}.jsonl"
        path.write_text("\n".join(lines[k::4]) + "\n", encoding="utf-8")
        files.append(str(path))
    return files


def test_the_stream_holds_the_prepared_samples(tmp_path, tiny_model, shards):
    model, processor = tiny_model
    visual = model.config.image_seq_length
    data = DataConfig(train=shards, max_length=96, langs=["en"], where={"task": ["vqa-closed", "vqa-open"]},
                      cache_dir=str(tmp_path / "cache"))
    prepared, _, _ = build_sample_set(data, processor, visual, 0)
    want = {(s := prepared.sample(k))["id"]: (s["input_ids"], s["labels"], s["images"]) for k in range(len(prepared))}
    tok = ChatTokenizer(processor, visual, max_length=96)
    got = {r["id"]: (r["input_ids"], r["labels"], r["images"]) for r in stream(data, tok, 0)}
    assert len(want) > 50 and got == want


def test_processes_and_workers_split_the_stream_with_nothing_lost_or_repeated(tiny_model, shards):
    model, processor = tiny_model
    data = DataConfig(train=shards, max_length=96, shuffle_buffer=50)
    tok = ChatTokenizer(processor, model.config.image_seq_length, max_length=96)
    everything = [r["id"] for r in stream(data, tok, 0)]
    assert len(everything) == len(set(everything)) > 350  # a few are refused at max_length 96
    assert everything == [r["id"] for r in stream(data, tok, 0)]  # seeded
    assert everything != [r["id"] for r in stream(data, tok, 1)]
    tokens = Counter(tuple(r["input_ids"]) for r in stream(data, tok, 0))
    seen: Counter = Counter()
    for rank in range(2):
        part = StreamSet(stream(data, tok, 0, rank, 2), processor.image_processor)
        loader = torch.utils.data.DataLoader(part, batch_size=None, num_workers=2)
        ids = [tuple(it["input_ids"].tolist()) for it in loader]
        assert 0.4 * len(everything) < len(ids) < 0.6 * len(everything)  # 2 of the 4 shards each
        seen.update(ids)
    assert seen == tokens


def test_what_needs_the_whole_corpus_is_refused():
    for kwargs, why in (({"task_weights": {"mcq": 2}}, "task_weights"), ({"merge_turns": 2}, "merge_turns"),
                        ({"packing": True}, "packing")):
        with pytest.raises(DoctorSunError, match=why):
            check_streaming(DataConfig(train=["x.jsonl"], streaming=True, **kwargs), max_steps=10)
    with pytest.raises(DoctorSunError, match="max_steps"):
        check_streaming(DataConfig(train=["x.jsonl"], streaming=True), max_steps=None)


def test_a_streamed_run_resumes_to_the_same_weights(tmp_path, tiny_build_config, shards):
    from doctorsun.train.stages import run_recipe, stage_for
    from doctorsun.train.trainer import StopAfter
    from tests.train.test_stages import weights

    def recipe(out):
        return make_recipe("finetune", out, shards[:2], build=tiny_build_config.to_dict(),
                           data={"streaming": True, "shuffle_buffer": 20, "max_length": 96},
                           parts={"projector": {"mode": "full"}, "llm": {"mode": "frozen"}},
                           train={"max_steps": 4, "save_steps": 2, "global_batch": 4, "micro_batch": 2})

    run_recipe(recipe(tmp_path / "full"))
    stage = stage_for(recipe(tmp_path / "cut"))
    stage.setup()
    stage.trainer.add_callback(StopAfter(3))
    stage.train()
    summary = run_recipe(recipe(tmp_path / "cut"), resume=True)
    assert summary["steps"] == 4
    a, b = weights(tmp_path / "full" / "model"), weights(tmp_path / "cut" / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in Path(tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    assert any("loss" in row for row in log)
