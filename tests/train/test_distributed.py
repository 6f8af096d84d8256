"""Two processes on the CPU (torch.distributed, gloo, started by ``accelerate launch``) give the same
weights as one process with the same global batch."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from doctorsun.train.commands import launch_config
from doctorsun.train.config import load_recipe
from doctorsun.train.stages import run_recipe
from tests.train.test_stages import weights


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_recipe(path: Path, out: Path, model: Path, data: str, micro_batch: int) -> Path:
    recipe = {
        "stage": "finetune", "model": str(model), "output_dir": str(out),
        "data": {"train": [data], "max_length": 64},
        "parts": {"llm": {"mode": "lora", "r": 4, "alpha": 8, "dropout": 0.0}, "projector": {"mode": "full"},
                  "vision": {"mode": "frozen"}},  # (a ViT's key bias gets no gradient: Adam amplifies noise)
        "optim": {"lr": 1e-2, "warmup_ratio": 0.0, "scheduler": "linear"},
        "train": {"max_steps": 3, "global_batch": 4, "micro_batch": micro_batch, "logging_steps": 1},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_two_processes_equal_one(tmp_path, tiny_model_dir, tiny_data):
    one = write_recipe(tmp_path / "one.yaml", tmp_path / "one", tiny_model_dir, tiny_data["questions"], 4)
    two = write_recipe(tmp_path / "two.yaml", tmp_path / "two", tiny_model_dir, tiny_data["questions"], 2)
    run_recipe(load_recipe(one))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launch_config("cpu2")),
           "--main_process_port", str(free_port()), "-m", "doctorsun", "train", str(two)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = yaml.safe_load((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 3

    a, b = weights(tmp_path / "one" / "model"), weights(tmp_path / "two" / "model")
    changed = [n for n in a if not torch.equal(a[n], weights(tiny_model_dir)[n])]
    assert changed  # training did something
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)
