"""The training loop: the Hugging Face ``Trainer`` (on accelerate), with what DoctorSun adds.

- the loss counts assistant tokens only and runs the LM head only where some row has a label;
  it is normalised by the label count of the whole global batch, so gradient accumulation and any
  number of processes give the same update;
- length-grouped batches in a seeded order that a resumed run repeats exactly;
- resumable checkpoints that hold only the trainable weights (plus optimizer, scheduler and RNG
  state), each written into a staging folder and renamed into place, so a crash never leaves a
  half-written ``checkpoint-N`` for ``--resume`` to pick;
- a JSONL log and a loss-curve PNG.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_pt_utils import get_length_grouped_indices

from doctorsun.data.tokenize import IGNORE
from doctorsun.errors import DoctorSunError
from doctorsun.files import replace_dir, save_figure, write_json, write_text
from doctorsun.train.config import Recipe

log = logging.getLogger(__name__)

TRAINABLE_FILE = "trainable.safetensors"
RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"
LOG_FILE = "log.jsonl"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class LengthGroupedSampler(torch.utils.data.Sampler):
    """Transformers' length grouping (random mega-batches, sorted by length inside) with a generator
    seeded by ``seed + epoch``: every epoch is a new order, and a resumed run draws the same one."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=g))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def dataloader_workers(recipe: Recipe) -> int:
    """``train.dataloader_workers``, or its default: 0 on CPU, 4 on a GPU."""
    workers = recipe.train.dataloader_workers
    return workers if workers is not None else (4 if torch.cuda.is_available() else 0)


def training_arguments(recipe: Recipe, out: Path, **overrides: Any) -> TrainingArguments:
    """``TrainingArguments`` for a recipe: the global batch is micro_batch x processes x accumulation."""
    loop, optim = recipe.train, recipe.optim
    per_step = loop.micro_batch * world_size()
    if loop.global_batch % per_step:
        raise DoctorSunError(f"train.global_batch {loop.global_batch} is not a multiple of micro_batch "
                             f"{loop.micro_batch} x {world_size()} processes")
    workers = dataloader_workers(recipe)
    kwargs: dict[str, Any] = dict(
        output_dir=str(out / CHECKPOINTS),
        per_device_train_batch_size=loop.micro_batch,
        gradient_accumulation_steps=loop.global_batch // per_step,
        learning_rate=optim.lr,
        weight_decay=optim.weight_decay,
        adam_beta1=optim.betas[0],
        adam_beta2=optim.betas[1],
        max_grad_norm=optim.grad_clip,
        warmup_steps=optim.warmup_ratio,
        lr_scheduler_type=optim.scheduler,
        num_train_epochs=loop.epochs,
        max_steps=loop.max_steps or -1,
        seed=loop.seed,
        data_seed=loop.seed,
        bf16=loop.mixed_precision == "bf16",
        fp16=loop.mixed_precision == "fp16",
        gradient_checkpointing=loop.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if loop.gradient_checkpointing else None,
        save_strategy="steps" if loop.save_steps else "no",
        save_steps=loop.save_steps or 500,
        save_total_limit=loop.save_total_limit,
        logging_steps=loop.logging_steps,
        logging_first_step=True,
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=workers,
        dataloader_persistent_workers=workers > 0,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
        include_num_input_tokens_seen="no",
        # A stream is already split by process (data.streaming): each reads its own part.
        accelerator_config={"dispatch_batches": False} if recipe.data.streaming else None,
        save_only_model=False,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


class StageTrainer(Trainer):
    """``Trainer`` with DoctorSun's loss, sampler and checkpoints (see the module docstring)."""

    def __init__(self, *args, recipe: Recipe, lengths: list[int] | None = None, lm_loss: bool = True,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.recipe = recipe
        self.lengths = lengths
        self.dropped: list[tuple[str, str]] = []
        """``(record id, reason)`` of samples dropped at run time (an image that could not be read)."""
        self.run_record: dict | None = None
        """Written into every checkpoint as ``run.json`` (``doctorsun.train.resume.run_record``)."""
        if lm_loss:
            # ``compute_loss`` below shifts the labels and divides by ``num_items_in_batch`` itself.
            self.model_accepts_loss_kwargs = True
            self._loss_shifts_labels = True

    def _get_train_sampler(self, train_dataset=None):
        if self.lengths is None or not self.recipe.train.group_by_length:
            return super()._get_train_sampler(train_dataset)
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
        return LengthGroupedSampler(self.lengths, batch, self.args.seed)

    def create_optimizer(self, model=None):
        """AdamW with one parameter group per (learning rate, weight decay): parts may set their own lr."""
        from doctorsun.train.parts import part_of

        if self.optimizer is None and any(p.lr for _, p in self.recipe.parts.items()):
            model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(model))
            groups: dict[tuple[float, float], list] = {}
            for name, p in model.named_parameters():
                if p.requires_grad:
                    part = part_of(name)
                    lr = (getattr(self.recipe.parts, part).lr if part else None) or self.args.learning_rate
                    groups.setdefault((lr, self.args.weight_decay if name in decay else 0.0), []).append(p)
            cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(self.args, model)
            kwargs.pop("lr", None)
            params = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
            self.optimizer = cls(params, lr=self.args.learning_rate, **kwargs)
        return super().create_optimizer(model)

    def _get_num_items_in_batch(self, batch_samples: list, device):
        """The loss's normaliser over the global batch: the label-token count (``token``), or with
        ``data.loss_reduction`` sample / square the sum of the batches' ``loss_weights``."""
        if not batch_samples or "loss_weights" not in batch_samples[0]:
            return super()._get_num_items_in_batch(batch_samples, device)
        total = sum(b["loss_weights"][:, 1:].sum() for b in batch_samples).to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            total = self.accelerator.gather(total).sum()
        return total

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.dropped += inputs.pop("dropped", [])  # samples whose images could not be read at run time
        if not inputs:  # a contrastive batch of which every image was dropped: a zero loss
            loss = sum(p.sum() for p in model.parameters() if p.requires_grad) * 0
            return (loss, {}) if return_outputs else loss
        if "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        weights = inputs.pop("loss_weights", None)  # data.loss_reduction sample / square
        targets = labels[:, 1:]  # (B, T-1): the token at t + 1 is predicted from position t
        keep = (targets != IGNORE).any(0).nonzero().squeeze(1)  # (K,) positions some row learns from
        nothing = not len(keep)
        if nothing:  # nothing to learn (every sample dropped): a zero loss that still runs the model,
            keep = torch.zeros(1, dtype=torch.long, device=labels.device)  # so every process takes part
        outputs = model(**inputs, logits_to_keep=keep, use_cache=False)
        logits = outputs.logits  # (B, K, V)
        per_token = F.cross_entropy(logits.flatten(0, 1).float(), targets[:, keep].flatten(),
                                    ignore_index=IGNORE, reduction="none")  # 0 where there is no label
        if weights is not None:
            weights = weights[:, 1:]
            per_token = per_token * weights[:, keep].flatten()
        loss = per_token.sum()
        if nothing:
            loss = logits.sum() * 0
        if num_items_in_batch is None:
            count = (targets != IGNORE).sum() if weights is None else weights.sum()
            loss = loss / count.clamp(min=1)  # a weighted sample with labels weighs >= 1 in all
        else:
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices:
                # DDP averages gradients over processes; the count above is already global.
                loss = loss * self.accelerator.num_processes
        return (loss, outputs) if return_outputs else loss

    # --- checkpoints: trainable weights only, renamed into place -----------------------------------

    def _trainable_names(self, model) -> list[str]:
        seen, names = set(), []
        for name, p in model.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                names.append(name)
        return names

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        from safetensors.torch import save_file

        if not self.args.should_save:
            return
        out = Path(output_dir or self.args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model)
        state = state_dict if state_dict else dict(model.named_parameters())
        tensors = {n: state[n].detach().cpu().contiguous() for n in self._trainable_names(model) if n in state}
        save_file(tensors, str(out / TRAINABLE_FILE), metadata={"format": "pt"})

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        from safetensors.torch import load_file

        model = self.accelerator.unwrap_model(model or self.model)
        path = Path(resume_from_checkpoint) / TRAINABLE_FILE
        if not path.is_file():
            raise DoctorSunError(f"checkpoint {resume_from_checkpoint} has no {TRAINABLE_FILE}")
        state = load_file(str(path))
        missing = set(self._trainable_names(model)) - set(state)
        if missing:
            raise DoctorSunError(f"checkpoint {resume_from_checkpoint} lacks {len(missing)} trainable "
                                 f"tensor(s) "
                                 f"(e.g. {sorted(missing)[0]}): was it written by another recipe?")
        model.load_state_dict(state, strict=False)

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = Path(self.args.output_dir)
        staging = run_dir / ".staging"
        name = f"checkpoint-{self.state.global_step}"
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self.args.output_dir = str(staging)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.output_dir = str(run_dir)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            write_text(staging / name / "recipe.yaml", self.recipe.to_yaml())
            if self.run_record is not None:  # what the weights depend on, for a safe --resume
                write_json(staging / name / RUN_FILE, self.run_record)
            replace_dir(staging / name, run_dir / name)
            shutil.rmtree(staging, ignore_errors=True)
            for old in checkpoints(run_dir)[: -self.args.save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints under ``run_dir``, oldest first (staging folders are never listed)."""
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p)
             for p in run_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found)]


def last_checkpoint(out: Path) -> Path | None:
    found = checkpoints(Path(out) / CHECKPOINTS)
    return found[-1] if found else None


class JsonlLog(TrainerCallback):
    """Appends every logged dict (loss, learning rate, grad norm, tokens seen) to ``log.jsonl``."""

    def __init__(self, path: Path, stage: str):
        self.path, self.stage, self.t0 = path, stage, time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row = {"stage": self.stage, "step": state.global_step, "epoch": round(state.epoch or 0, 4),
               "elapsed_s": round(time.time() - self.t0, 2), **logs}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


class StopAfter(TrainerCallback):
    """Ends training after ``steps`` optimizer steps (tests interrupt a run with it)."""

    def __init__(self, steps: int):
        self.steps = steps

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.steps:
            control.should_training_stop = True
            control.should_save = False


def plot_loss(log_path: Path, png: Path, title: str) -> Path | None:
    """The training loss per step from ``log.jsonl`` as a PNG (nothing when no loss was logged)."""
    if not log_path.is_file():
        return None
    rows = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    points = sorted({r["step"]: r["loss"] for r in rows if "loss" in r}.items())
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=2, linewidth=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, png)
