"""What every stage shares: setup -> train -> save, with the same outputs.

``OUTPUT_DIR/model/`` (the trained model, LoRA merged, written atomically: the next stage, ``chat`` and
``eval`` load it), ``OUTPUT_DIR/checkpoints/checkpoint-N/`` (resumable), ``recipe.yaml`` (the resolved
recipe), ``log.jsonl``, ``loss.png``, ``problems.jsonl`` (records that were skipped, with the reason)
and ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from doctorsun.errors import DoctorSunError
from doctorsun.files import write_json, write_text
from doctorsun.train.config import MODEL_SUBDIR, Recipe, resolve_model_dir

log = logging.getLogger(__name__)

def load_input(recipe: Recipe, start=None):
    """``(model, processor)`` the stage starts from: the previous stage's output, or a fresh build."""
    from doctorsun.model import build_model, load_model

    torch.manual_seed(recipe.train.seed)
    if start is not None:
        return start
    if recipe.build is not None:
        return build_model(recipe.build)
    return load_model(resolve_model_dir(recipe.model))


class Stage:
    """One training stage. Subclasses fill ``setup``; ``train`` and ``save`` are shared."""

    def __init__(self, recipe: Recipe, start=None):
        self.recipe = recipe
        self.start = start
        """``(model, processor)`` already in memory to start from instead of ``recipe.model`` / ``build``."""
        self.out = Path(recipe.output_dir)
        self.model = None
        """The full Doctor Sun model being trained (a ``PeftModel`` when a part is LoRA)."""
        self.processor = None
        self.trainer = None
        self.problems: list[tuple[str, str]] = []
        self.data_report: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}

    def setup(self) -> None:
        raise NotImplementedError

    def run(self, resume: bool = False, force_resume: bool = False) -> dict[str, Any]:
        t0 = time.time()
        self.setup()
        self.train(resume=resume, force_resume=force_resume)
        summary = self.save()
        summary["wall_s"] = round(time.time() - t0, 1)
        if self.is_main:
            write_json(self.out / "summary.json", summary)
        return summary

    @property
    def is_main(self) -> bool:
        return self.trainer is None or self.trainer.args.should_save

    def train(self, resume: bool = False, force_resume: bool = False) -> None:
        from doctorsun.train.resume import check_resume, finished, prepare_output, run_record
        from doctorsun.train.trainer import CHECKPOINTS, LOG_FILE, last_checkpoint

        self.trainer.run_record = run_record(self.recipe)
        if self.is_main:
            prepare_output(self.out, self.out / CHECKPOINTS, resume)
        self.trainer.accelerator.wait_for_everyone()
        checkpoint = None
        if resume:
            checkpoint = last_checkpoint(self.out)
            if checkpoint is None:
                log.warning("--resume: no checkpoint under %s/checkpoints; starting from the beginning",
                            self.out)
            else:
                check_resume(checkpoint, self.trainer.run_record, force_resume)
                log.info("resuming from %s", checkpoint)
                if finished(checkpoint):
                    self._take_finished(checkpoint)
                    return
        elif self.is_main and (self.out / LOG_FILE).exists():
            (self.out / LOG_FILE).unlink()  # a fresh run starts a fresh log
        if self.is_main:
            write_text(self.out / "recipe.yaml", self.recipe.to_yaml())
            self._write_problems()
        result = self.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        self.metrics = dict(result.metrics)
        dropped = getattr(self.trainer, "dropped", [])
        if dropped:  # samples whose images could not be read when their batch came
            self.problems += [(rid, f"dropped at run time: {why}") for rid, why in dropped]
            if self.is_main:
                self._write_problems()

    def _write_problems(self) -> None:
        if self.problems:
            lines = [json.dumps({"id": r, "reason": why}, ensure_ascii=False) for r, why in self.problems]
            write_text(self.out / "problems.jsonl", "\n".join(lines) + "\n")

    def _take_finished(self, checkpoint: Path) -> None:
        """The checkpoint is the run's last step: take its weights and state, train no further step."""
        from transformers.trainer_callback import TrainerState

        log.info("%s is the run's last step: nothing left to train", checkpoint)
        self.trainer._load_from_checkpoint(str(checkpoint))
        self.trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
        self.metrics = {"resumed_finished_run": True}

    def trained_model(self):
        """The Doctor Sun model with LoRA merged, ready to save."""
        from doctorsun.train.parts import merge

        if self.trainer.is_deepspeed_enabled or self.trainer.is_fsdp_enabled:
            raise DoctorSunError("saving the final model from a sharded run: use `accelerate merge-weights` on "
                                 "the last checkpoint (merging LoRA needs whole weights)")
        return merge(self.model)

    def save(self) -> dict[str, Any]:
        from doctorsun.model import save_model
        from doctorsun.train.parts import count_parts
        from doctorsun.train.trainer import LOG_FILE, plot_loss

        counts = count_parts(self.model)
        summary = {
            "stage": self.recipe.stage, "model_dir": str(self.out / MODEL_SUBDIR),
            "trainable": counts.trainable, "frozen": counts.frozen, "skipped_records": len(self.problems),
            "steps": self.trainer.state.global_step, "processes": self.trainer.args.world_size,
            **{k: v for k, v in self.metrics.items()},
        }
        losses = [r["loss"] for r in self.trainer.state.log_history if "loss" in r]
        if losses:
            summary["loss_first"], summary["loss_last"] = losses[0], losses[-1]
        self.trainer.accelerator.wait_for_everyone()
        if self.is_main:
            model = self.trained_model()
            meta = {"stage": self.recipe.stage, "recipe": self.recipe.to_dict(), "summary": summary,
                    "data": self.data_report}
            save_model(model, self.processor, self.out / MODEL_SUBDIR, meta=meta)
            write_text(self.out / MODEL_SUBDIR / "recipe.yaml", self.recipe.to_yaml())
            plot_loss(self.out / LOG_FILE, self.out / "loss.png", f"{self.recipe.stage} stage")
            log.info("%s stage: %d steps, model in %s", self.recipe.stage, summary["steps"],
                     summary["model_dir"])
        self.trainer.accelerator.wait_for_everyone()
        return summary
