"""Training throughput: DoctorSun's loop against a LLaVA-style loop, same model, same data, one run.

- DoctorSun: length-grouped batches, the LM head run only where a label is (``StageTrainer``);
- DoctorSun padding-free: the same loss, batches in random order (as LLaVA's), each joined into one
  row with restarting positions instead of padded (``data.padding_free``, the mini fine-tuning recipe);
- LLaVA-style: random order, pad to the longest in the batch, no packing, the model's own loss over
  every position (what LLaVA's ``train.py`` does with the HF Trainer).

Both train the mini fine-tuning parts (projector + LoRA on the LLM) on SunMed-VL-mini questions. Prints
tokens per second (real, non-padding tokens) of each, their ratio, the FLOPs each step executes
(counted by ``torch.utils.flop_counter``) as achieved FLOP/s, and that as a share of this machine's
dense matmul FLOP/s measured in the same run. Nothing is claimed beyond what it measures.

    python benchmarks/train_throughput.py                       # SmolLM2-135M + mini ViT on the CPU, fp32
    python benchmarks/train_throughput.py --steps 20 --micro-batch 16 --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see doctorsun.train.threads
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="a SunMed-VL-mini folder (default: build one in a temporary folder)")
    p.add_argument("--llm", default="smollm2-135m", help="LLM to build with (default smollm2-135m)")
    p.add_argument("--steps", type=int, default=8, help="timed optimizer steps per loop (default 8)")
    p.add_argument("--micro-batch", type=int, default=8, help="samples per step (default 8)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="float32 on CPU; bfloat16 (mixed precision) on GPUs")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the accelerator's datasheet peak for --dtype, to print MFU against it too")
    p.add_argument("--json", help="also write the numbers to this file")
    return p.parse_args()


def matmul_flops(device: str, dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """Dense n x n matmul FLOP/s measured here (the best of ``reps``)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(reps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def build(args, data: Path):
    """(model, processor, train set) with the mini fine-tuning parts applied."""
    from doctorsun.model import BuildConfig, VisionConfig, build_model
    from doctorsun.train.config import DataConfig, PartConfig, PartsConfig
    from doctorsun.train.parts import apply_parts
    from doctorsun.train.prepare import build_sample_set

    model, processor = build_model(BuildConfig(llm=args.llm,
                                               vision=VisionConfig(image_size=64, patch_size=16)))
    dataset, _, _ = build_sample_set(DataConfig(train=[str(data / "instruct_train.jsonl")], max_length=256),
                                     processor, model.config.image_seq_length, seed=0)
    parts = PartsConfig(vision=PartConfig("frozen"), projector=PartConfig("full"),
                        llm=PartConfig("lora", r=16, alpha=32, dropout=0.0))
    return apply_parts(model, parts), processor, dataset


def make_trainer(kind: str, model, processor, dataset, args, out: Path):
    from transformers import Trainer

    from doctorsun.train.config import recipe_from_dict
    from doctorsun.train.data import Collator
    from doctorsun.train.trainer import StageTrainer, training_arguments

    n = args.steps + 1  # one untimed warm-up step
    recipe = recipe_from_dict({"stage": "finetune", "model": "unused", "output_dir": str(out),
                               "data": {"train": ["unused"]},
                               "optim": {"lr": 1e-4, "warmup_ratio": 0.0, "scheduler": "constant"},
                               "train": {"max_steps": n, "global_batch": args.micro_batch,
                                         "micro_batch": args.micro_batch, "logging_steps": n,
                                         "group_by_length": kind == "doctorsun",
                                         "mixed_precision": "bf16" if args.dtype == "bfloat16" else "no"}})
    targs = training_arguments(recipe, out, disable_tqdm=True, use_cpu=args.device == "cpu")
    common = dict(model=model, args=targs, train_dataset=dataset, data_collator=Collator(
        processor.tokenizer.pad_token_id, padding_free=kind == "padding-free"))
    if kind in ("doctorsun", "padding-free"):
        return StageTrainer(**common, recipe=recipe, lengths=dataset.lengths)
    return Trainer(**common)  # random order, the model's own loss over all positions


class Meter:
    """Times each step and counts its real and padded tokens; FLOPs of one step are counted apart."""

    def __init__(self):
        self.times, self.real, self.padded, self.t = [], [], [], None

    def wrap(self, trainer, device: str):
        step = trainer.training_step

        def timed(model, inputs, num_items_in_batch=None):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            loss = step(model, inputs, num_items_in_batch)
            if device == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - t)
            mask = inputs.get("attention_mask")
            self.real.append(int(mask.sum()) if mask is not None else inputs["input_ids"].numel())
            self.padded.append(inputs["input_ids"].numel())
            return loss

        trainer.training_step = timed


def step_flops(trainer, dataset, args) -> float:
    """FLOPs of one forward + backward on a typical batch, counted as executed."""
    loader = trainer.get_train_dataloader()
    batch = trainer._prepare_inputs(next(iter(loader)))
    with FlopCounterMode(display=False) as counter:
        trainer.compute_loss(trainer.model, dict(batch)).backward()
    trainer.model.zero_grad(set_to_none=True)
    return counter.get_total_flops(), batch["input_ids"].numel()


def run_loop(kind: str, args, data: Path, out: Path) -> dict:
    torch.manual_seed(0)
    model, processor, dataset = build(args, data)
    model.to(args.device)
    trainer = make_trainer(kind, model, processor, dataset, args, out / kind)
    flops, flop_tokens = step_flops(trainer, dataset, args)
    meter = Meter()
    meter.wrap(trainer, args.device)
    trainer.train()
    times, real, padded = meter.times[1:], meter.real[1:], meter.padded[1:]  # drop the warm-up step
    seconds = sum(times)
    return {"tokens_per_s": sum(real) / seconds, "padding_share": 1 - sum(real) / sum(padded),
            "step_s": seconds / len(times), "flops_per_padded_token": flops / flop_tokens,
            "flop_per_s": flops / flop_tokens * sum(padded) / seconds}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    peak = matmul_flops(args.device, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = Path(args.data) if args.data else tmp / "mini"
        if not args.data:
            from doctorsun.mini import build_mini

            build_mini(data)
        kinds = ("llava-style", "doctorsun", "padding-free")
        results = {kind: run_loop(kind, args, data, tmp) for kind in kinds}
    ours, theirs = results["doctorsun"], results["llava-style"]
    print(f"\ntraining throughput, {args.llm} + mini ViT, projector + LoRA r16, micro-batch "
          f"{args.micro_batch}, "
          f"{args.device} {args.dtype}, {args.steps} timed steps each")
    print(f"measured dense {args.dtype} matmul (2048^3): {peak / 1e9:,.1f} GFLOP/s")
    print(f"{'loop':<13} {'tokens/s':>10} {'padding':>8} {'s/step':>8} {'GFLOP/s':>9} {'share of matmul':>16}")
    for kind, r in results.items():
        print(f"{kind:<13} {r['tokens_per_s']:>10.1f} {r['padding_share']:>8.1%} {r['step_s']:>8.2f} "
              f"{r['flop_per_s'] / 1e9:>9.1f} {r['flop_per_s'] / peak:>16.1%}")
    print(f"doctorsun / llava-style tokens per second: {ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x")
    print(f"padding-free / llava-style tokens per second: "
          f"{results['padding-free']['tokens_per_s'] / theirs['tokens_per_s']:.2f}x")
    if args.peak_tflops:
        for kind, r in results.items():
            print(f"MFU of {kind} against the {args.peak_tflops:g} TFLOP/s datasheet peak: "
                  f"{r['flop_per_s'] / (args.peak_tflops * 1e12):.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"matmul_flop_per_s": peak, **results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
