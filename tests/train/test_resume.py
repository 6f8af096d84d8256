"""An interrupted run, resumed from its last checkpoint, ends with the same weights as an uninterrupted one."""

import json
from pathlib import Path

import pytest
import torch

from doctorsun.train.stages import run_recipe, stage_for
from doctorsun.train.trainer import StopAfter, checkpoints, last_checkpoint
from tests.train.conftest import make_recipe
from tests.train.test_stages import weights


def recipe(out, tiny_build_config, tiny_data):
    return make_recipe(
        "finetune", out, [tiny_data["questions"]], build=tiny_build_config.to_dict(),
        parts={"llm": {"mode": "lora", "r": 4, "alpha": 8, "dropout": 0.1}, "projector": {"mode": "full"},
               "vision": {"mode": "frozen"}},
        optim={"warmup_ratio": 0.2, "scheduler": "cosine"},
        # 12 samples, 4 per step in micro-batches of 2: 3 steps an epoch, accumulation 2
        train={"max_steps": 6, "save_steps": 2, "global_batch": 4, "micro_batch": 2, "save_total_limit": 2},
    )


def test_resume_gives_the_same_weights(tmp_path, tiny_build_config, tiny_data):
    full = recipe(tmp_path / "full", tiny_build_config, tiny_data)
    run_recipe(full)

    cut = recipe(tmp_path / "cut", tiny_build_config, tiny_data)
    stage = stage_for(cut)
    stage.setup()
    stage.trainer.add_callback(StopAfter(5))  # "crash" one step into the second epoch, after checkpoint 4
    stage.train()
    assert [p.name for p in checkpoints(tmp_path / "cut" / "checkpoints")] == ["checkpoint-2", "checkpoint-4"]
    assert not (tmp_path / "cut" / "model").exists()
    assert sorted(p.name for p in last_checkpoint(tmp_path / "cut").iterdir()) == [
        "optimizer.pt", "recipe.yaml", "rng_state.pth", "run.json", "scheduler.pt", "trainable.safetensors",
        "trainer_state.json"]

    summary = run_recipe(recipe(tmp_path / "cut", tiny_build_config, tiny_data), resume=True)
    assert summary["steps"] == 6
    a, b = weights(tmp_path / "full" / "model"), weights(tmp_path / "cut" / "model")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_resume_without_checkpoint_starts_fresh(tmp_path, tiny_build_config, tiny_data, caplog):
    r = recipe(tmp_path / "fresh", tiny_build_config, tiny_data)
    r.train.max_steps = 1
    r.train.save_steps = None
    summary = run_recipe(r, resume=True)
    assert summary["steps"] == 1
    assert "no checkpoint" in caplog.text


def test_checkpoint_from_another_recipe_is_refused(tmp_path, tiny_build_config, tiny_data):
    from doctorsun.errors import DoctorSunError

    r = recipe(tmp_path / "other", tiny_build_config, tiny_data)
    r.train.max_steps = 2
    run_recipe(r)
    r.parts.vision.mode = "full"  # now the vision tower should be in the checkpoint too
    with pytest.raises(DoctorSunError, match="belongs to another run: recipe parts.vision.mode: 'frozen' -> 'full'"):
        run_recipe(r, resume=True)
    with pytest.raises(DoctorSunError, match="lacks .* trainable tensor"):  # forced, it still cannot load
        run_recipe(r, resume=True, force_resume=True)


def constant(out, tiny_build_config, tiny_data, steps=2):
    """A constant learning rate: one extra step would show in the weights."""
    r = recipe(out, tiny_build_config, tiny_data)
    r.optim.scheduler, r.optim.warmup_ratio = "constant", 0.0
    r.train.max_steps, r.train.save_steps = steps, steps
    return r


def test_resuming_a_finished_run_trains_no_further_step(tmp_path, tiny_build_config, tiny_data):
    run_recipe(constant(tmp_path / "done", tiny_build_config, tiny_data))
    before = weights(tmp_path / "done" / "model")
    summary = run_recipe(constant(tmp_path / "done", tiny_build_config, tiny_data), resume=True)
    assert summary["steps"] == 2 and summary.get("resumed_finished_run")
    after = weights(tmp_path / "done" / "model")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_fresh_run_moves_another_runs_checkpoints_aside(tmp_path, tiny_build_config, tiny_data):
    out = tmp_path / "shared"
    run_recipe(constant(out, tiny_build_config, tiny_data, steps=4))  # checkpoint-4 of the first run
    fresh = constant(out, tiny_build_config, tiny_data, steps=2)
    fresh.optim.lr = 5e-3
    run_recipe(fresh)  # used to keep checkpoint-4 and prune its own checkpoint-2
    assert [p.name for p in checkpoints(out / "checkpoints")] == ["checkpoint-2"]
    aside = [p for p in out.iterdir() if p.name.startswith("checkpoints.before-")]
    assert len(aside) == 1 and [p.name for p in checkpoints(aside[0])] == ["checkpoint-4"]


def test_resume_refuses_a_checkpoint_of_other_data_or_recipe_unless_forced(tmp_path, tiny_build_config, tiny_data):
    from doctorsun.errors import DoctorSunError

    out = tmp_path / "run"
    cut = constant(out, tiny_build_config, tiny_data, steps=4)
    cut.train.save_steps = 2
    stage = stage_for(cut)
    stage.setup()
    stage.trainer.add_callback(StopAfter(3))
    stage.train()
    assert json.loads((last_checkpoint(out) / "run.json").read_text())["data"]

    other_lr = constant(out, tiny_build_config, tiny_data, steps=4)
    other_lr.optim.lr = 1e-3
    with pytest.raises(DoctorSunError, match=r"belongs to another run: recipe optim.lr: 0.01 -> 0.001"):
        run_recipe(other_lr, resume=True)
    data = Path(tiny_data["questions"])
    data.write_text(data.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    longer = constant(out, tiny_build_config, tiny_data, steps=4)  # max_steps may change: schedule only
    with pytest.raises(DoctorSunError, match="data files changed: .*questions"):
        run_recipe(longer, resume=True)
    assert run_recipe(longer, resume=True, force_resume=True)["steps"] == 4


def test_leftovers_of_a_killed_save_are_removed_on_the_next_start(tmp_path, tiny_build_config, tiny_data):
    out = tmp_path / "killed"
    (out / ".model.tmp-abc123").mkdir(parents=True)
    (out / ".model.tmp-abc123" / "model.safetensors").write_bytes(b"\0" * 1000)
    (out / "checkpoints" / ".staging" / "checkpoint-2").mkdir(parents=True)
    run_recipe(constant(out, tiny_build_config, tiny_data), resume=True)
    assert not (out / ".model.tmp-abc123").exists() and not (out / "checkpoints" / ".staging").exists()
    assert (out / "model" / "config.json").is_file()
