"""Evaluation throughput: batched generation against one question at a time (how LLaVA's
``model_vqa`` scripts answer), and vLLM (``--engine vllm``, its own environment from ``make vllm``; every
item handed over at once, so its continuous batching schedules them), on the same model and the same items,
through the same runner. Without a vLLM environment the vLLM row says so.

Prints the measured items per second of each and their ratio; nothing is claimed beyond what it measures.

    python benchmarks/eval_throughput.py                      # tiny random model, built on the fly
    python benchmarks/eval_throughput.py --llm smollm2-135m   # the real SmolLM2-135M + a small ViT
    python benchmarks/eval_throughput.py --model DIR --device cuda --items 64 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

QUESTIONS = [("Is this a CT image?", "yes", "CLOSED"), ("Which organ is shown?", "liver", "OPEN"),
             ("Is there a fracture?", "no", "CLOSED"),
             ("What abnormality is seen in the left lung?", "a nodule", "OPEN"),
             ("这张图片是MRI吗？", "否", "CLOSED"), ("图中显示的是哪个器官？", "肝脏", "OPEN")]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="an existing model dir (default: build one on the fly)")
    p.add_argument("--llm", default="tiny", help="when building: 'tiny' (random 2-layer) or 'smollm2-135m'")
    p.add_argument("--items", type=int, default=32, help="questions to answer (default 32)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size of the batched run (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="tokens per answer (default 16)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    return p.parse_args()


def build_model(llm: str, out: Path) -> tuple[Path, str]:
    """A model dir made on the fly: SmolLM2's tokenizer with a tiny random Llama, or the real SmolLM2."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from doctorsun.model import BuildConfig, VisionConfig, build_model, save_model
    from doctorsun.model.llm import load_llm

    vision = VisionConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2,
                          num_attention_heads=2,
                          intermediate_size=128)
    if llm == "tiny":
        _, tok = load_llm("smollm2-135m")
        torch.manual_seed(0)
        # head_dim 64: vLLM's CPU attention has no kernel for 16
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                          tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id)
        LlamaForCausalLM(cfg).save_pretrained(out / "llm")
        tok.save_pretrained(out / "llm")
        llm, label = str(out / "llm"), "tiny random Llama (2 layers, 128 wide) + SmolLM2 tokenizer"
    else:
        label = f"{llm} + small scratch ViT"
    model, processor = build_model(BuildConfig(llm=llm, vision=vision))
    save_model(model, processor, out / "model", meta={"stage": "build"})
    return out / "model", f"{label}, 16 visual tokens"


def write_items(root: Path, n: int) -> list[dict]:
    """``n`` SunMed-VL questions about random images of a few sizes (fixed seed)."""
    from doctorsun.data.prompts import closed_prompt, open_prompt, with_image

    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        question, answer, kind = QUESTIONS[i % len(QUESTIONS)]
        lang = "zh" if any("\u4e00" <= c <= "\u9fff" for c in question) else "en"
        prompt = closed_prompt(question, lang) if kind == "CLOSED" else open_prompt(question, lang)
        side = (48, 64, 96)[i % 3]
        Image.fromarray(rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)).save(root / f"{i}.png")
        records.append({"id": f"q{i}", "image": f"{i}.png", "lang": lang, "source": "bench",
                        "answer_type": kind,
                        "task": "vqa-closed" if kind == "CLOSED" else "vqa-open",
                        "conversations": [{"from": "human", "value": with_image(prompt)},
                                          {"from": "gpt", "value": answer}]})
    return records


def timed_run(engine, records, root: Path, out: Path, batch_size: int, max_new_tokens: int) -> dict:
    from doctorsun.eval.config import EvalConfig
    from doctorsun.eval.runner import evaluate

    config = EvalConfig(bench="sunmed-vl-mini", batch_size=batch_size, max_new_tokens=max_new_tokens)
    scores = evaluate(engine, records, config, image_root=root, out_dir=out)
    preds = [json.loads(line)["prediction"] for line in (out / "predictions.jsonl").read_text().splitlines()]
    return {"seconds": scores["provenance"]["generation_seconds"],
            "items_per_s": scores["provenance"]["items_per_s"],
            "predictions": preds}


def main() -> None:
    args = parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from doctorsun.model.generate import Engine

    with tempfile.TemporaryDirectory(prefix="eval-throughput-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        model_dir, label = (Path(args.model), args.model) if args.model else build_model(args.llm, tmp)
        engine = Engine.load(model_dir, dtype=args.dtype, device=args.device)
        (tmp / "items").mkdir()
        records = write_items(tmp / "items", args.items)
        print(f"model: {label}\nitems: {args.items}, max_new_tokens: {args.max_new_tokens}, device: "
              f"{args.device}, "
              f"torch threads: {torch.get_num_threads()} (setup {time.perf_counter() - t0:.1f} s)\n"
              f"load average (1 min): {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (other work skews "
              f"both runs)")
        timed_run(engine, records[: args.batch_size], tmp / "items", tmp / "warmup", args.batch_size,
                  args.max_new_tokens)  # first calls pay one-off costs; keep them out of both timings
        single = timed_run(engine, records, tmp / "items", tmp / "single", 1, args.max_new_tokens)
        batched = timed_run(engine, records, tmp / "items", tmp / "batched", args.batch_size,
                            args.max_new_tokens)
        vllm, why = run_vllm(engine, model_dir, args, records, tmp)
    for name, run in (("one at a time (batch 1)", single), (f"batched (batch {args.batch_size})", batched)):
        print(f"{name + ':':32}{run['items_per_s']:8.2f} items/s  ({run['seconds']:.2f} s)")
    print(f"{'ratio batched / one at a time:':32}{batched['items_per_s'] / single['items_per_s']:8.2f}x")
    same = sum(a == b for a, b in zip(single["predictions"], batched["predictions"], strict=True))
    print(f"{'identical answers in both runs:':32}{same} of {len(records)}")
    if vllm is None:
        print(f"{'vLLM:':32}not run ({why})")
        return
    print(f"{'vLLM (all items at once):':32}{vllm['items_per_s']:8.2f} items/s  ({vllm['seconds']:.2f} s; "
          f"start-up {vllm['startup']:.1f} s, not counted)")
    print(f"{'ratio vLLM / batched:':32}{vllm['items_per_s'] / batched['items_per_s']:8.2f}x")
    print(f"{'ratio vLLM / one at a time:':32}{vllm['items_per_s'] / single['items_per_s']:8.2f}x")
    same = sum(a == b for a, b in zip(vllm["predictions"], batched["predictions"], strict=True))
    print(f"{'identical answers vLLM/batched:':32}{same} of {len(records)}")


def run_vllm(engine, model_dir: Path, args, records, tmp: Path):
    """The vLLM run (warm-up excluded), or ``(None, why not)``."""
    from doctorsun.model.vllm_engine import HOW, VLLMEngine, vllm_python

    if vllm_python() is None:
        return None, f"no vLLM environment: {HOW}"
    t = time.perf_counter()
    with VLLMEngine(engine.model, engine.processor, model_dir, dtype=args.dtype,
                    memory_fraction=None if args.device != "cpu" else 0.2) as v:
        startup = time.perf_counter() - t
        timed_run(v, records[: args.batch_size], tmp / "items", tmp / "vllm-warmup", args.batch_size,
                  args.max_new_tokens)
        run = timed_run(v, records, tmp / "items", tmp / "vllm", len(records), args.max_new_tokens)
    return {**run, "startup": startup}, None


if __name__ == "__main__":
    main()
