"""``doctorsun data prepare RECIPE.yaml [--set key=value ...] [--rebuild]``: build a stage's prepared
training data ahead of time (``train.prepare``), so that ``doctorsun train`` starts at once.

The stage's tokenizer, chat template and visual-token count come from its start model (``model:``, read
without its weights) or, for a ``build:`` recipe, from the model it assembles.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from doctorsun.errors import DoctorSunError


@dataclass
class PrepareReport:
    """What ``doctorsun data prepare`` prints per stage."""

    stage: str
    path: Path
    reused: bool
    samples: int
    refused: int
    seconds: float
    tokens: int = 0
    disk_bytes: int = 0

    def line(self) -> str:
        verb = "reused" if self.reused else "built"
        return (f"{self.stage}: {verb} {self.path} in {self.seconds:.1f} s: {self.samples} samples, "
                f"{self.tokens} tokens, {self.refused} skipped, {self.disk_bytes / 2**20:.1f} MiB")


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="a stage recipe YAML (text, align or finetune)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set data.num_proc=8 (repeatable)")
    p.add_argument("--rebuild", action="store_true", help="build the entry again even when it exists")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def stage_processor(recipe):
    """``(processor, visual tokens per image)`` of the model a stage starts from."""
    if recipe.build is not None:
        from doctorsun.model import build_model

        model, processor = build_model(recipe.build)
        return processor, model.config.image_seq_length
    from transformers import AutoConfig, AutoProcessor

    from doctorsun.train.config import resolve_model_dir

    path = resolve_model_dir(recipe.model)
    if not (path / "config.json").is_file():
        raise DoctorSunError(f"{recipe.stage} starts from {recipe.model}, which is not a model folder yet: "
                             "prepare this stage after the stage before it has run")
    return AutoProcessor.from_pretrained(path), AutoConfig.from_pretrained(path).image_seq_length


def run(args: argparse.Namespace) -> int:
    from doctorsun.data.tokenize import ChatTokenizer
    from doctorsun.train.config import load_recipe
    from doctorsun.train.prepare import prepare

    recipe = load_recipe(args.recipe, args.overrides)
    if recipe.stage == "vision":
        raise DoctorSunError("the vision stage reads image-caption pairs directly; nothing to prepare")
    processor, visual = stage_processor(recipe)
    data = recipe.data
    tok = ChatTokenizer(processor, visual, max_length=data.max_length, label_scope=data.label_scope)
    prepared = prepare(data, tok, recipe.train.seed, rebuild=args.rebuild)
    report = PrepareReport(recipe.stage, prepared.path, prepared.reused, len(prepared.rows),
                           len(prepared.problems), prepared.seconds, int(prepared.lengths.sum()),
                           disk_bytes(prepared.path))
    if args.json:
        print(json.dumps({**report.__dict__, "path": str(report.path)}))
    else:
        print(report.line())
        if prepared.problems:
            print(f"{len(prepared.problems)} record(s) skipped: see {prepared.path / 'problems.jsonl'}")
    return 0
