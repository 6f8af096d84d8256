"""Building SunMed-VL at scale: how ``doctorsun data build`` and its near-duplicate search grow with the corpus.

Part 1, the near-duplicate search (``data.hashing.near_pairs``, multi-index hashing): for N random 64-bit
perceptual hashes (1% planted near copies), the time to find every pair within the threshold (what
de-duplication does), against the all-pairs comparison (numpy XOR + popcount, one row at a time) that it
replaces, measured where that fits in time; both must find the same near copies.

Part 2, the whole build: for each N a synthetic corpus of N single-turn records over N/10 distinct PNG
images (64x64 random blocks; 1% of the images re-encoded copies and 1% resized copies of others, so
de-duplication has work), a general file of N/2 text records, and a benchmark "test split" of 200 records
of which 50 reuse training images. ``doctorsun data build`` runs in a fresh process with a cold hash
cache and again with a warm one; the benchmark prints wall time, peak RSS (VmHWM of the build
process) and the ratios largest N / smallest N.

    python benchmarks/corpus_scale.py                         # N = 10k, 100k, 1M records (about 25 min here)
    python benchmarks/corpus_scale.py --sizes 2000 20000      # a quick look
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Peak RSS from VmHWM (reset by exec; ru_maxrss would carry the parent's peak into the child).
RUNNER = r"""
import re, sys, time
from doctorsun.cli import main
t = time.perf_counter()
rc = main(sys.argv[1:])
hwm = re.search(r"VmHWM:\s+(\d+)", open("/proc/self/status").read()).group(1)
print("BENCH", rc, time.perf_counter() - t, hwm, flush=True)
"""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--index-sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--brute-max", type=int, default=30_000, help="largest N the all-pairs comparison is run at")
    p.add_argument("--threshold", type=int, default=6)
    p.add_argument("--work", help="folder for the synthetic data (default: a temporary one)")
    p.add_argument("--json", help="also write the numbers to this file")
    return p.parse_args()


def bench_index(sizes: list[int], threshold: int, brute_max: int) -> list[dict]:
    import numpy as np

    from doctorsun.data.hashing import near_pairs

    rows = []
    for n in sizes:
        rng = random.Random(n)
        hashes = [rng.getrandbits(64) for _ in range(n - n // 100)]
        hashes += [h ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)) for h in hashes[: n // 100]]
        t = time.perf_counter()
        qi, _, _ = near_pairs(hashes, hashes, threshold, earlier_only=True)
        found = len(set(qi.tolist()))
        index_s = time.perf_counter() - t
        brute_s = None
        if n <= brute_max:
            arr = np.array(hashes, dtype=np.uint64)
            t = time.perf_counter()
            brute_found = 0
            for i in range(1, n):
                x = np.bitwise_xor(arr[:i], arr[i])
                brute_found += bool((np.bitwise_count(x) <= threshold).any())
            brute_s = time.perf_counter() - t
            assert brute_found == found, (brute_found, found)
        rows.append({"n": n, "index_s": index_s, "brute_s": brute_s, "near_found": found})
        print(f"index  N={n:>9,}  index {index_s:8.2f} s   all-pairs "
              + (f"{brute_s:8.2f} s" if brute_s is not None else "     (not run)") + f"   near copies found {found}",
              flush=True)
    return rows


def write_corpus(folder: Path, n: int, seed: int = 0) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    n_images = max(10, n // 10)
    for i in range(n_images):
        path = images / f"{i:07d}.png"
        if path.exists():
            continue
        if i % 100 == 1:  # a re-encoded copy of the previous image
            Image.open(images / f"{i - 1:07d}.png").save(path, compress_level=1)
        elif i % 100 == 2:  # a 1-pixel resize of image i - 2
            Image.open(images / f"{i - 2:07d}.png").resize((65, 64)).save(path)
        else:
            blocks = rng.integers(0, 256, size=(8, 8, 1), dtype=np.uint8).repeat(3, axis=2)
            Image.fromarray(np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8))).save(path)
    with open(folder / "train.jsonl", "w", encoding="utf-8") as f:
        for k in range(n):  # the j-th question of every image is the same, so copies' records are duplicates
            img, j = k % n_images, k // n_images
            q = ["Is there a lesion?", "What organ is shown?", "Describe the finding."][j % 3]
            a = ["yes", "no", "liver", "a round opacity in the left lobe"][j % 4]
            f.write(json.dumps({"id": f"r{k}", "image": f"images/{img:07d}.png", "conversations": [
                {"from": "human", "value": f"<image>\n{q} ({j})"}, {"from": "gpt", "value": a}],
                "lang": "en", "source": "synthetic", "task": "vqa-open"}) + "\n")
    with open(folder / "general.jsonl", "w", encoding="utf-8") as f:
        for k in range(n // 2):
            f.write(json.dumps({"id": f"g{k}", "conversations": [{"from": "human", "value": f"Count to {k}."},
                                                                  {"from": "gpt", "value": f"1 ... {k}"}],
                                "lang": "en", "source": "general", "task": "text"}) + "\n")
    with open(folder / "test.jsonl", "w", encoding="utf-8") as f:
        for k in range(200):
            img = f"images/{(k * 7) % n_images:07d}.png" if k < 50 else f"test/{k}.png"
            if k >= 50:
                (folder / "test").mkdir(exist_ok=True)
                blocks = np.random.default_rng(10_000 + k).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
                Image.fromarray(np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8))).save(folder / img)
            f.write(json.dumps({"id": f"t{k}", "image": img, "conversations": [
                {"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": "x"}],
                "lang": "en", "source": "test", "task": "vqa-open"}) + "\n")
    (folder / "manifest.yaml").write_text(
        "name: scale\nseed: 0\nratio: '1:0.5'\nsources:\n"
        f"  - {{name: synthetic, path: {folder / 'train.jsonl'}}}\n"
        f"  - {{name: general, path: {folder / 'general.jsonl'}, general: true}}\n"
        f"decontaminate:\n  against: [{{bench: file, path: {folder / 'test.jsonl'}}}]\n", encoding="utf-8")
    return folder / "manifest.yaml"


def run_build(manifest: Path, out: Path, cache: Path) -> dict:
    import os

    env = {**os.environ, "DOCTORSUN_CACHE": str(cache)}
    proc = subprocess.run([sys.executable, "-c", RUNNER, "data", "build", str(manifest), "--out", str(out)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"build failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}")
    _, rc, seconds, rss_kb = line.split()
    card = json.loads((out / "card.json").read_text())
    return {"seconds": float(seconds), "rss_mb": int(rss_kb) / 1024, "records": card["records"],
            "dedup": card["steps"]["dedup"]["dropped"], "contaminated": card["steps"]["decontaminate"]["dropped"]}


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    results = {"index": bench_index(args.index_sizes, args.threshold, args.brute_max), "build": []}
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="doctorsun-corpus-"))
    try:
        for n in args.sizes:
            folder = work / f"n{n}"
            t = time.perf_counter()
            manifest = write_corpus(folder, n)
            made = time.perf_counter() - t
            cache = folder / "cache"
            shutil.rmtree(cache, ignore_errors=True)
            cold = run_build(manifest, folder / "out-cold", cache)
            warm = run_build(manifest, folder / "out-warm", cache)
            row = {"n": n, "images": max(10, n // 10), "cold": cold, "warm": warm, "write_s": made}
            results["build"].append(row)
            print(f"build  N={n:>9,}  cold {cold['seconds']:8.1f} s {cold['rss_mb']:7.0f} MiB   warm "
                  f"{warm['seconds']:8.1f} s {warm['rss_mb']:7.0f} MiB   out {cold['records']:,} records, "
                  f"{cold['dedup']:,} duplicates, {cold['contaminated']:,} contaminated", flush=True)
            shutil.rmtree(folder / "out-cold", ignore_errors=True)
            shutil.rmtree(folder / "out-warm", ignore_errors=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    idx = results["index"]
    if len(idx) > 1:
        a, b = idx[0], idx[-1]
        print(f"\nindex: N x{b['n'] / a['n']:.0f} -> time x{b['index_s'] / a['index_s']:.1f}")
        brute = [r for r in idx if r["brute_s"]]
        if brute:
            r = brute[-1]
            print(f"index vs all-pairs at N={r['n']:,}: {r['brute_s'] / r['index_s']:.1f}x faster")
    bld = results["build"]
    if len(bld) > 1:
        a, b = bld[0], bld[-1]
        print(f"build: N x{b['n'] / a['n']:.0f} -> cold time x{b['cold']['seconds'] / a['cold']['seconds']:.1f}, "
              f"warm time x{b['warm']['seconds'] / a['warm']['seconds']:.1f}, "
              f"peak RSS x{b['cold']['rss_mb'] / a['cold']['rss_mb']:.2f} "
              f"({(b['cold']['rss_mb'] - a['cold']['rss_mb']) / (b['n'] - a['n']) * 1024:.2f} KiB per added record)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
