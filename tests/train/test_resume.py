"""An interrupted run, resumed from its last checkpoint, ends with the same weights as an uninterrupted one."""

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
        "optimizer.pt", "recipe.yaml", "rng_state.pth", "scheduler.pt", "trainable.safetensors",
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
    with pytest.raises(DoctorSunError, match="lacks .* trainable tensor"):
        run_recipe(r, resume=True)
