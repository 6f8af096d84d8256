"""A tiny SunMed-VL-like set (coloured squares, captions, yes/no questions, text) and recipe helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


def _write(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> dict[str, str]:
    """Paths of ``captions``, ``questions``, ``text`` and ``general`` JSONL files with images beside them."""
    root = tmp_path_factory.mktemp("tiny-data")
    (root / "images").mkdir()
    captions, questions, general = [], [], []
    for i in range(12):
        name = list(COLOURS)[i % 3]
        Image.new("RGB", (20, 20), COLOURS[name]).save(root / "images" / f"{i}.png")
        image = f"images/{i}.png"
        captions.append({"id": f"cap-{i}", "image": image, "lang": "en", "source": "tiny", "task": "caption",
                         "conversations": [{"from": "human", "value": "<image>\nDescribe the image."},
                                           {"from": "gpt", "value": f"A {name} square."}]})
        asked = list(COLOURS)[(i + i // 3) % 3]
        questions.append({"id": f"q-{i}", "image": image, "lang": "en", "source": "tiny",
                          "task": "vqa-closed",
                          "conversations": [{"from": "human", "value": f"<image>\nIs the square {asked}?"},
                                            {"from": "gpt", "value": "yes" if asked == name else "no"}]})
    for i in range(4):
        general.append({"id": f"gen-{i}", "image": f"images/{i}.png", "lang": "zh", "source": "general",
                        "task": "vqa-open",
                        "conversations": [{"from": "human", "value": "<image>\n这是什么颜色？"},
                                          {"from": "gpt", "value": "一种颜色。"}]})
    text = [{"id": f"t-{i}", "lang": "en", "source": "tiny", "task": "text",
             "conversations": [{"from": "human", "value": f"What does sign {i} mean?"},
                               {"from": "gpt",
                                "value": f"Sign {i} means a finding in the chest."}]} for i in range(10)]
    return {"captions": _write(root / "captions.jsonl", captions),
            "questions": _write(root / "questions.jsonl", questions),
            "text": _write(root / "text.jsonl", text), "general": _write(root / "general.jsonl", general),
            "root": str(root)}


def make_recipe(stage: str, out: Path, files: list[str], *, model=None, build=None, **sections):
    """A small recipe for the tiny models: few steps, fp32, no warm-up."""
    from doctorsun.train.config import recipe_from_dict

    recipe = {"stage": stage, "output_dir": str(out), "data": {"train": files, "max_length": 64},
              "optim": {"lr": 1e-2, "warmup_ratio": 0.0, "scheduler": "constant"},
              "train": {"max_steps": 3, "global_batch": 4, "micro_batch": 4, "logging_steps": 1}}
    if model is not None:
        recipe["model"] = str(model)
    if build is not None:
        recipe["build"] = build
    for key, value in sections.items():
        recipe[key] = {**recipe.get(key, {}), **value} if isinstance(value, dict) else value
    return recipe_from_dict(recipe)
