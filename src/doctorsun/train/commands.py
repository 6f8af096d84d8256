"""``doctorsun train RECIPE.yaml [--resume] [--dry-run] [--set key=value ...]``: run one stage.

For several processes or GPUs, start the same command under accelerate with one of the shipped
configs, e.g. ``accelerate launch --config_file $(doctorsun train --config zero2) -m doctorsun train R.yaml``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from doctorsun.errors import DoctorSunError

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"
LAUNCH_CONFIGS = {"zero2": "zero2.yaml", "zero3": "zero3.yaml", "fsdp": "fsdp.yaml", "cpu2": "cpu2.yaml"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", help="recipe YAML (see recipes/mini and recipes/doctor-sun-8b)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint in the output dir")
    p.add_argument("--force-resume", action="store_true",
                   help="with --resume: continue even from a checkpoint of another recipe, data or start model")
    p.add_argument("--dry-run", action="store_true",
                   help="print parameter counts, tokens per step and memory per GPU; train nothing")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.max_steps=10 (repeatable)")
    p.add_argument("--config", choices=sorted(LAUNCH_CONFIGS),
                   help="print the path of a shipped accelerate config (for `accelerate launch "
                   "--config_file`)")


def launch_config(name: str) -> Path:
    if name not in LAUNCH_CONFIGS:
        raise DoctorSunError(f"no launch config {name!r}; choose one of {sorted(LAUNCH_CONFIGS)}")
    return CONFIG_DIR / LAUNCH_CONFIGS[name]


def run(args: argparse.Namespace) -> int:
    from doctorsun.train.threads import calm_threads

    calm_threads()
    from doctorsun.train.config import load_recipe

    if args.config:
        print(launch_config(args.config))
        return 0
    if not args.recipe:
        raise DoctorSunError("give a recipe YAML (or --config NAME)")
    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        from doctorsun.train.dryrun import dry_run

        print(dry_run(recipe).render())
        return 0
    from doctorsun.train.stages import run_recipe

    summary = run_recipe(recipe, resume=args.resume, force_resume=args.force_resume)
    if int(os.environ.get("RANK", "0")):
        return 0  # one report per run, from the main process
    print(json.dumps({k: summary[k] for k in ("stage", "model_dir", "steps", "wall_s") if k in summary}))
    if summary.get("skipped_records"):
        print(f"{summary['skipped_records']} record(s) skipped: see "
              f"{Path(recipe.output_dir) / 'problems.jsonl'}")
    return 0
