"""Resuming that is never silently wrong. A checkpoint records what its weights depend on (``run.json``:
the recipe without its schedule-only keys, the data files' fingerprints, the starting model's), and
``--resume`` refuses one that differs unless forced. A fresh run moves an earlier run's checkpoints
aside instead of mixing with them; a run that already reached its last step is not stepped again; and
what a killed save left behind is cleaned up on the next start.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from doctorsun.errors import DoctorSunError
from doctorsun.files import fingerprint, remove_leftovers
from doctorsun.train.config import Recipe, resolve_model_dir
from doctorsun.train.trainer import RUN_FILE

log = logging.getLogger(__name__)

SCHEDULE_ONLY = {("train", "max_steps"), ("train", "epochs"), ("train", "save_steps"), ("train", "save_total_limit"),
                 ("train", "logging_steps"), ("train", "plan_gpus"), ("train", "plan_gpu_memory_gb"),
                 ("train", "dataloader_workers"), ("data", "num_proc"), ("data", "cache_dir"),
                 ("output_dir",), ("recipe_dir",)}
"""Recipe keys a resumed run may change: how long and how often, and with how many workers, not what is
trained on what."""


def _flat(d: dict, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for k, v in d.items():
        key = (*prefix, k)
        if isinstance(v, dict) and v:
            out.update(_flat(v, key))
        else:
            out[key] = v
    return out


def _model_source(recipe: Recipe) -> dict[str, Any]:
    if recipe.build is not None:
        return {"build": recipe.build.to_dict()}
    path = resolve_model_dir(recipe.model)
    weights = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    return {"model": str(recipe.model), "weights": [fingerprint(w) for w in weights]}


def run_record(recipe: Recipe) -> dict[str, Any]:
    """What a checkpoint's weights depend on."""
    files = [*recipe.data.train, *recipe.data.general]
    recipe_keys = {".".join(k): v for k, v in _flat(recipe.to_dict()).items()
                   if not any(k[:len(s)] == s for s in SCHEDULE_ONLY)}
    return {"recipe": recipe_keys, "data": {f: fingerprint(f) if Path(f).exists() else None for f in files},
            "start": _model_source(recipe)}


def differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(saved.get("recipe", {})) | set(now["recipe"])):
        if saved.get("recipe", {}).get(key) != now["recipe"].get(key):
            out.append(f"recipe {key}: {saved.get('recipe', {}).get(key)!r} -> {now['recipe'].get(key)!r}")
    if saved.get("data") != now["data"]:
        changed = sorted(set(saved.get("data") or {}) ^ set(now["data"]) |
                         {f for f in now["data"] if (saved.get("data") or {}).get(f) != now["data"][f]})
        out.append(f"data files changed: {', '.join(changed)}")
    if saved.get("start") != now["start"]:
        out.append("the starting model changed")
    return out


def check_resume(checkpoint: Path, record: dict[str, Any], force: bool = False) -> None:
    """Refuse (or with ``force`` warn about) a checkpoint written by another recipe, data or model;
    ``record`` is this run's ``run_record``."""
    path = checkpoint / RUN_FILE
    if not path.is_file():
        message = f"checkpoint {checkpoint} records no {RUN_FILE}: what it was trained on cannot be checked"
        if not force:
            raise DoctorSunError(message + " (pass --force-resume to resume anyway)")
        log.warning(message)
        return
    diff = differences(json.loads(path.read_text(encoding="utf-8")), record)
    if diff and not force:
        raise DoctorSunError(f"checkpoint {checkpoint} belongs to another run: " + "; ".join(diff)
                             + " (start a fresh run, or pass --force-resume)")
    for line in diff:
        log.warning("resuming despite: %s", line)


def finished(checkpoint: Path) -> bool:
    """Whether the checkpoint is the run's last step (its trainer state says so)."""
    state = checkpoint / "trainer_state.json"
    if not state.is_file():
        return False
    saved = json.loads(state.read_text(encoding="utf-8"))
    return bool(saved.get("max_steps")) and saved.get("global_step", 0) >= saved["max_steps"]


def prepare_output(out: Path, checkpoints_dir: Path, resume: bool) -> Path | None:
    """Clean a killed save's leftovers; for a fresh run, move earlier checkpoints aside (returns where)."""
    for folder in (out, checkpoints_dir):
        for p in remove_leftovers(folder):
            log.info("removed %s, left by an interrupted save", p)
    if resume or not checkpoints_dir.is_dir() or not any(checkpoints_dir.iterdir()):
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, n = out / f"checkpoints.before-{stamp}", 0
    while aside.exists():
        n += 1
        aside = out / f"checkpoints.before-{stamp}-{n}"
    checkpoints_dir.rename(aside)
    log.warning("a fresh run into %s: the earlier run's checkpoints were moved to %s", out, aside)
    return aside
