"""Training data at scale: time to the first step and memory per process as the corpus grows.

For each N it writes a synthetic SunMed-VL file (N records over N/10 distinct PNG images, bilingual
questions, answers of 50-300 tokens) and runs a 3-step alignment stage of the mini model
(``doctorsun train``, SmolLM2-135M + the mini ViT) three times: with a cold cache (the prepared
dataset is built), with a warm cache (it is memory-mapped), and warm again under 2 processes
(``accelerate launch``, the shipped ``cpu2`` config). For each it measures the time from the command's
start to the end of the first optimizer step, and the peak RSS of every training process (VmHWM, read
from /proc while it runs); also the disk the cache entry takes. It prints the table and the ratios
peak RSS(largest N) / peak RSS(smallest N) and warm start(largest) / warm start(smallest).

    python benchmarks/data_scale.py                          # N = 10k, 100k, 1M (about 40 min here)
    python benchmarks/data_scale.py --sizes 2000 20000       # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS_EN = ("the lesion shows a well defined margin with mild surrounding oedema and no calcification "
            "in the left lower lobe there is consolidation consistent with pneumonia the heart size "
            "is normal and the mediastinum is not widened bone density appears preserved").split()
WORDS_ZH = list("左肺下叶可见片状高密度影边界清楚周围轻度水肿未见钙化心脏大小正常纵隔无增宽骨质密度未见异常")
QUESTIONS = [("What abnormality is seen?", "可见什么异常？"), ("Describe the image.", "请描述这张图像。"),
             ("Which organ is shown?", "显示的是哪个器官？"), ("Is this normal?", "这是正常的吗？")]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--workers", type=int, default=2, help="data.num_proc for the cold preparation")
    p.add_argument("--no-two-process", action="store_true", help="skip the 2-process warm run")
    p.add_argument("--work", help="folder for the synthetic data and runs (default: a temporary one)")
    p.add_argument("--json", help="also write the numbers to this file")
    return p.parse_args()


def write_corpus(folder: Path, n: int, seed: int = 0) -> Path:
    """``train.jsonl`` of ``n`` records over ``n // 10`` PNGs (grey patterns, 64x64) in ``folder``."""
    import numpy as np
    from PIL import Image

    rng = random.Random(seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    n_images = max(1, n // 10)
    base = np.linspace(0, 255, 64, dtype=np.float32)
    for i in range(n_images):
        path = images / f"{i:07d}.png"
        if not path.exists():
            pattern = (np.add.outer(base * (i % 7 + 1) / 7, base[::-1] * (i % 5 + 1) / 5) / 2) % 256
            Image.fromarray(pattern.astype(np.uint8)).save(path)
    out = folder / "train.jsonl"
    with open(out, "w", encoding="utf-8") as f:
        for k in range(n):
            zh = k % 2 == 1
            q_en, q_zh = QUESTIONS[k % len(QUESTIONS)]
            n_words = rng.randint(40, 240)
            if zh:
                answer = "".join(rng.choice(WORDS_ZH) for _ in range(n_words // 2)) + "。"
            else:
                answer = " ".join(rng.choice(WORDS_EN) for _ in range(n_words)) + "."
            f.write(json.dumps({"id": f"syn-{k}", "image": f"images/{rng.randrange(n_images):07d}.png",
                                "conversations": [{"from": "human", "value": f"<image>\n{q_zh if zh else q_en}"},
                                                  {"from": "gpt", "value": answer}],
                                "lang": "zh" if zh else "en", "source": "synthetic", "task": "caption"},
                               ensure_ascii=False) + "\n")
    return out


RECIPE = """stage: align
build:
  llm: smollm2-135m
  vision: {{image_size: 64, patch_size: 32, hidden_size: 192, num_hidden_layers: 4, num_attention_heads: 3,
           intermediate_size: 768}}
output_dir: {out}
parts:
  vision: {{mode: frozen}}
  projector: {{mode: full}}
  llm: {{mode: frozen}}
data:
  train: [{train}]
  max_length: 512
  num_proc: {workers}
  cache_dir: {cache}
optim: {{lr: 1.0e-4, warmup_ratio: 0.0, scheduler: constant}}
train: {{max_steps: 3, global_batch: 4, micro_batch: 2, logging_steps: 1}}
"""


def descendants(pid: int) -> list[int]:
    children, out = {}, []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    todo = [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def is_python_trainer(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"doctorsun" in c for c in cmd) and not any(b"accelerate" in c for c in cmd[:2])


def run_stage(recipe: Path, out: Path, processes: int) -> dict:
    """Run the stage; seconds to the end of step 1, peak RSS (MiB) of each training process."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if processes == 1:
        cmd = [sys.executable, "-m", "doctorsun", "train", str(recipe)]
    else:
        config = subprocess.run([sys.executable, "-m", "doctorsun", "train", "--config", "cpu2"], env=env,
                                capture_output=True, text=True, check=True).stdout.strip()
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config,
               "--num_processes", str(processes), "-m", "doctorsun", "train", str(recipe)]
    log_file = out / "log.jsonl"
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:  # a file, not a pipe: a full pipe would stall the run
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        first_step, peaks = None, {}
        while proc.poll() is None:
            for pid in descendants(proc.pid):
                if is_python_trainer(pid):
                    peaks[pid] = max(peaks.get(pid, 0), hwm_kib(pid))
            if first_step is None and log_file.is_file() and log_file.stat().st_size:
                first_step = time.perf_counter() - start
            time.sleep(0.1)
        if proc.returncode:
            err.seek(0)
            raise SystemExit(f"training failed ({proc.returncode}):\n{err.read()[-3000:]}")
    return {"first_step_s": first_step or time.perf_counter() - start,
            "peak_rss_mib": sorted((kib / 1024 for kib in peaks.values()), reverse=True)[:processes]}


def main() -> None:
    args = parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="doctorsun-data-scale-"))
    rows = []
    for n in args.sizes:
        folder = work / f"n{n}"
        t = time.perf_counter()
        train = write_corpus(folder, n)
        made = time.perf_counter() - t
        cache = folder / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        recipe = folder / "align.yaml"
        recipe.write_text(RECIPE.format(out=folder / "run", train=train, workers=args.workers, cache=cache))
        cold = run_stage(recipe, folder / "run", 1)
        warm = run_stage(recipe, folder / "run", 1)
        two = None if args.no_two_process else run_stage(recipe, folder / "run", 2)
        disk = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
        row = {"n": n, "corpus_mib": train.stat().st_size / 2**20, "corpus_write_s": made,
               "cold_first_step_s": cold["first_step_s"], "cold_peak_rss_mib": cold["peak_rss_mib"][0],
               "warm_first_step_s": warm["first_step_s"], "warm_peak_rss_mib": warm["peak_rss_mib"][0],
               "two_process_peak_rss_mib": two["peak_rss_mib"] if two else None,
               "two_process_first_step_s": two["first_step_s"] if two else None, "cache_mib": disk / 2**20}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'records':>9} {'corpus MiB':>10} {'cold start s':>12} {'cold RSS MiB':>12} {'warm start s':>12} "
          f"{'warm RSS MiB':>12} {'2-proc RSS MiB each':>20} {'cache MiB':>9}")
    for r in rows:
        two = "/".join(f"{x:.0f}" for x in r["two_process_peak_rss_mib"]) if r["two_process_peak_rss_mib"] else "-"
        print(f"{r['n']:>9} {r['corpus_mib']:>10.0f} {r['cold_first_step_s']:>12.1f} {r['cold_peak_rss_mib']:>12.0f} "
              f"{r['warm_first_step_s']:>12.1f} {r['warm_peak_rss_mib']:>12.0f} {two:>20} {r['cache_mib']:>9.0f}")
    small, big = rows[0], rows[-1]
    if len(rows) > 1:
        print(f"peak RSS, warm: {big['n']} / {small['n']} records = "
              f"{big['warm_peak_rss_mib'] / small['warm_peak_rss_mib']:.2f}x")
        print(f"peak RSS, cold (preparing in the training process): {big['n']} / {small['n']} = "
              f"{big['cold_peak_rss_mib'] / small['cold_peak_rss_mib']:.2f}x")
        print(f"warm start to the first step: {big['n']} / {small['n']} records = "
              f"{big['warm_first_step_s'] / small['warm_first_step_s']:.2f}x")
        print(f"cold start: {big['n']} / {small['n']} records = "
              f"{big['cold_first_step_s'] / small['cold_first_step_s']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
