"""Fixtures for evaluation tests: the tiny model as an engine, and hand-made SunMed-VL records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from doctorsun.data.prompts import closed_prompt, mcq_answer, mcq_prompt, open_prompt, with_image


@pytest.fixture(scope="session")
def engine(tiny_model_dir):
    """The tiny model, loaded once, its LLM matrices redrawn wider (std 0.5, fixed seed): at the default
    init it answers every question with newlines, which would make determinism tests vacuous. Tests that
    patch ``generate`` patch this instance with monkeypatch."""
    import torch

    from doctorsun.model.generate import Engine

    engine = Engine.load(tiny_model_dir)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in engine.model.model.language_model.parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    return engine


def _turns(prompt: str, answer: str, image: bool = True) -> list[dict]:
    return [{"from": "human", "value": with_image(prompt) if image else prompt},
            {"from": "gpt", "value": answer}]


def write_sunmed_set(root: Path) -> Path:
    """A SunMed-VL test file with every kind of question, one missing image and one malformed record."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, size in (("ct.png", (20, 16)), ("mri.png", (16, 16)), ("fundus.jpg", (24, 20))):
        Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)).save(root / name)
    choices = ["CT", "MRI", "Ultrasound"]
    records = [
        {"id": "c1", "image": "ct.png", "conversations": _turns(closed_prompt("Is this a CT image?"), "yes"),
         "lang": "en", "source": "mini", "task": "vqa-closed", "answer_type": "CLOSED",
         "meta": {"modality": "CT", "region": "head"}},
        {"id": "c2", "image": "mri.png", "conversations": _turns(closed_prompt("这是CT图像吗？", "zh"), "否"),
         "lang": "zh", "source": "mini", "task": "vqa-closed", "answer_type": "CLOSED",
         "meta": {"modality": "MRI"}},
        {"id": "o1", "image": "mri.png",
         "conversations": _turns(open_prompt("Which organ is shown?"), "brain"),
         "lang": "en", "source": "mini", "task": "vqa-open", "answer_type": "OPEN",
         "meta": {"modality": "MRI"}},
        {"id": "o2", "image": "fundus.jpg",
         "conversations": _turns(open_prompt("这是什么图像？", "zh"), "眼底照片"),
         "lang": "zh", "source": "mini", "task": "vqa-open", "answer_type": "OPEN"},
        {"id": "m1", "image": "ct.png",
         "conversations": _turns(mcq_prompt("Which modality?", choices), mcq_answer(choices, 0)),
         "lang": "en", "source": "mini", "task": "mcq", "answer_type": "CLOSED", "choices": choices},
        {"id": "t1",
         "conversations": _turns(mcq_prompt("Which drug reverses heparin?", ["Protamine", "Vitamin K"]),
                                             "A. Protamine", image=False),
         "lang": "en", "source": "mini", "task": "mcq", "choices": ["Protamine", "Vitamin K"]},
        {"id": "bad-image", "image": "missing.png", "conversations": _turns("What is this?", "a scan"),
         "lang": "en", "source": "mini", "task": "vqa-open"},
        {"id": "bad-record", "conversations": [{"from": "human", "value": "No answer follows."}],
         "lang": "en", "source": "mini", "task": "text"},
    ]
    path = root / "test.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture()
def sunmed_file(tmp_path) -> Path:
    return write_sunmed_set(tmp_path / "sunmed")


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
