"""The prepared training set: equal to tokenising the mixed records directly, cached by everything it
depends on, images read lazily (a broken one is dropped from its batch and reported), never rebuilt on
resume."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from doctorsun.data.tokenize import ChatTokenizer, pack
from doctorsun.train.config import DataConfig
from doctorsun.train.data import Collator, PreparedSet, read_mixed
from doctorsun.train.prepare import build_sample_set, prepare
from tests.train.conftest import make_recipe


@pytest.fixture(scope="module")
def mini_data(tmp_path_factory) -> Path:
    """SunMed-VL-mini (real images that installed packages ship, bilingual questions)."""
    from doctorsun.mini import build_mini

    out = tmp_path_factory.mktemp("mini")
    build_mini(out)
    return out


def direct(data: DataConfig, processor, visual: int):
    """The reference: the planned records in memory, each tokenised by ``ChatTokenizer`` on its own."""
    records, problems, _ = read_mixed(data, 0)
    tok = ChatTokenizer(processor, visual, max_length=data.max_length, label_scope=data.label_scope)
    samples, refused = tok.tokenize_all(records)
    return samples, problems + refused


@pytest.mark.parametrize("num_proc", [1, 2])
def test_prepared_samples_equal_direct_tokenisation_on_sunmed_vl_mini(tmp_path, tiny_model, mini_data, num_proc):
    model, processor = tiny_model
    visual = model.config.image_seq_length
    data = DataConfig(train=[str(mini_data / "instruct_train.jsonl")], general=[str(mini_data / "general.jsonl")],
                      ratio="1:0.1", merge_turns=2, task_weights={"vqa-closed": 0.5}, max_length=96,
                      num_proc=num_proc, cache_dir=str(tmp_path / "cache"))
    samples, problems = direct(data, processor, visual)
    dataset, got_problems, report = build_sample_set(data, processor, visual, 0)
    assert len(samples) > 500 and len(dataset) == len(samples)
    assert sorted(got_problems) == sorted(problems)
    assert report["merged_records"] < report["records_before_merge"]  # merging happened
    for k in range(0, len(samples), 7):
        want, got = samples[k], dataset.sample(k)
        assert got["id"] == want["record"]["id"]
        assert got["input_ids"] == want["input_ids"] and got["labels"] == want["labels"]
        assert got["images"] == want["record"]["_images"]
    item = dataset[3]
    assert torch.equal(item["input_ids"], torch.tensor(samples[3]["input_ids"]))
    assert item["pixel_values"].shape[0] == len(samples[3]["record"]["_images"])
    assert dataset.lengths == [len(s["input_ids"]) for s in samples]


def test_packed_rows_equal_packing_the_direct_samples(tmp_path, tiny_model, mini_data):
    model, processor = tiny_model
    visual = model.config.image_seq_length
    data = DataConfig(train=[str(mini_data / "text_train.jsonl")], max_length=128, packing=True, label_scope="all",
                      cache_dir=str(tmp_path / "cache"))
    samples, _ = direct(data, processor, visual)
    dataset, _, _ = build_sample_set(data, processor, visual, 0)
    rows = pack(samples, data.max_length)
    assert len(dataset) == len(rows) < len(samples)
    for i in (0, len(rows) // 2, len(rows) - 1):
        item = dataset[i]
        for key in ("input_ids", "labels", "position_ids"):
            assert item[key].tolist() == rows[i][key], key
    assert dataset.lengths == [len(r["input_ids"]) for r in rows]


def test_cache_is_reused_and_every_input_makes_a_new_entry(tmp_path, tiny_model, tiny_model_dir, tiny_data):
    model, processor = tiny_model
    visual = model.config.image_seq_length
    files = tmp_path / "data"
    shutil.copytree(Path(tiny_data["root"]), files)
    base = DataConfig(train=[str(files / "questions.jsonl")], general=[str(files / "general.jsonl")],
                      ratio="1:0.25", max_length=64, cache_dir=str(tmp_path / "cache"))

    def entry(data=base, vis=visual, seed=0, tok_processor=processor):
        tok = ChatTokenizer(tok_processor, vis, max_length=data.max_length, label_scope=data.label_scope)
        p = prepare(data, tok, seed)
        return p.path, p.reused

    first, reused = entry()
    assert not reused
    assert entry() == (first, True)
    # Settings that do not change the samples share the entry.
    assert entry(replace(base, num_proc=2, packing=True, padding_free=True)) == (first, True)
    seen = {first}
    changes = {"ratio": replace(base, ratio="1:0.3"), "max_length": replace(base, max_length=60),
               "merge_turns": replace(base, merge_turns=2), "limit": replace(base, limit=5),
               "langs": replace(base, langs=["en", "zh"]), "where": replace(base, where={"task": ["vqa-closed"]}),
               "task_weights": replace(base, task_weights={"vqa-closed": 0.5}),
               "label_scope": replace(base, label_scope="all"), "image_root": replace(base, image_root=str(files))}
    for name, data in changes.items():
        path, reused = entry(data)
        assert not reused and path not in seen, name
        seen.add(path)
    for name, kwargs in {"seed": {"seed": 1}, "visual tokens": {"vis": visual + 1}}.items():
        try:
            path, reused = entry(**kwargs)
        except Exception as exc:  # noqa: BLE001 - more visual tokens may refuse every record; still a new entry
            assert "refused" in str(exc), name
            continue
        assert not reused and path not in seen, name
        seen.add(path)
    from doctorsun.model import load_model

    _, other = load_model(tiny_model_dir)
    other.tokenizer.add_tokens(["zqxnewword"])  # the vocabulary changed: another tokenizer
    path, reused = entry(tok_processor=other)
    assert not reused and path not in seen
    seen.add(path)
    # The file's content: one more record makes a new entry holding it.
    questions = files / "questions.jsonl"
    rows = questions.read_text().splitlines()
    extra = {**json.loads(rows[0]), "id": "q-new"}
    questions.write_text("\n".join([*rows, json.dumps(extra)]) + "\n")
    path, reused = entry()
    assert not reused and path not in seen
    tok = ChatTokenizer(processor, visual, max_length=64)
    assert "q-new" in prepare(base, tok, 0).samples.data.column("id").to_pylist()


def test_an_image_broken_after_preparing_is_dropped_from_its_batch_and_reported(tmp_path, tiny_build_config,
                                                                                tiny_data):
    from doctorsun.train.stages import run_recipe

    files = tmp_path / "data"
    shutil.copytree(Path(tiny_data["root"]), files)
    recipe = make_recipe("finetune", tmp_path / "run", [str(files / "questions.jsonl")],
                         build=tiny_build_config.to_dict(), data={"cache_dir": str(tmp_path / "cache")},
                         train={"max_steps": 3, "global_batch": 4, "micro_batch": 4})
    from doctorsun.model import build_model

    model, processor = build_model(tiny_build_config)
    build_sample_set(recipe.data, processor, model.config.image_seq_length, 0)  # prepared while it was fine
    (files / "images" / "5.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image any more")
    summary = run_recipe(recipe)
    assert summary["steps"] == 3
    problems = [json.loads(line) for line in (tmp_path / "run" / "problems.jsonl").read_text().splitlines()]
    assert [p["id"] for p in problems] == ["q-5"] * len(problems) and len(problems) >= 1
    assert "dropped at run time" in problems[0]["reason"] and "5.png" in problems[0]["reason"]


def test_a_batch_whose_every_sample_was_dropped_learns_nothing_and_runs(tiny_model, tmp_path):
    from doctorsun.train.trainer import StageTrainer, training_arguments

    model, processor = tiny_model
    batch = Collator(processor.tokenizer.pad_token_id)([{"dropped": [("a", "bad")]}, {"dropped": [("b", "bad")]}])
    assert batch["dropped"] == [("a", "bad"), ("b", "bad")] and batch["input_ids"].shape == (1, 2)
    recipe = make_recipe("finetune", tmp_path, ["unused"], model="unused")
    trainer = StageTrainer(model=model, args=training_arguments(recipe, tmp_path), recipe=recipe)
    loss = trainer.compute_loss(model, dict(batch))
    assert loss.item() == 0 and loss.requires_grad
    assert trainer.dropped == [("a", "bad"), ("b", "bad")]


def test_resume_reads_the_prepared_entry_and_tokenises_nothing(tmp_path, tiny_build_config, tiny_data, monkeypatch):
    from doctorsun.train.stages import run_recipe, stage_for
    from doctorsun.train.trainer import StopAfter

    def recipe():
        return make_recipe("finetune", tmp_path / "run", [tiny_data["questions"]], build=tiny_build_config.to_dict(),
                           data={"cache_dir": str(tmp_path / "cache")},
                           train={"max_steps": 4, "save_steps": 2, "global_batch": 4, "micro_batch": 4})

    stage = stage_for(recipe())
    stage.setup()
    stage.trainer.add_callback(StopAfter(3))
    stage.train()

    def no_tokenising(self, record):
        raise AssertionError("a resumed run tokenised a record")

    monkeypatch.setattr(ChatTokenizer, "__call__", no_tokenising)
    assert run_recipe(recipe(), resume=True)["steps"] == 4


def test_prepared_set_reads_rows_without_holding_token_lists(tmp_path, tiny_model, tiny_data):
    """The dataset keeps only the memory-mapped table and the row numbers, never Python token lists."""
    model, processor = tiny_model
    data = DataConfig(train=[tiny_data["questions"]], max_length=64, cache_dir=str(tmp_path / "cache"))
    dataset, _, _ = build_sample_set(data, processor, model.config.image_seq_length, 0)
    assert isinstance(dataset, PreparedSet)
    assert dataset.samples.cache_files and all(Path(f["filename"]).is_file() for f in dataset.samples.cache_files)
    held = [v for v in vars(dataset).values() if isinstance(v, list) and v and isinstance(v[0], list)]
    assert not held
