"""Serving soak: many concurrent clients plus hostile requests against a real ``doctorsun serve`` on
127.0.0.1, bounded in count and time. Prints throughput, latency percentiles, errors by who made them,
and the server's RSS and threads at rest, at peak and after the burst (as ratios to rest).

    python benchmarks/serve_load.py --model runs/quickstart/4-finetune/model --clients 64 --requests 3

Every request goes to 127.0.0.1 only. "Errors of the server's making" are 5xx answers and broken
connections; 4xx answers to the hostile requests are the expected refusals and are counted apart.
"Rest" is measured after a warm-up burst at the same concurrency, so that pools which grow once to
their bound (anyio's worker threads, the allocator's arenas) count as rest, and what the ratios show is
what the soak itself left behind.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model dir to serve")
    p.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    p.add_argument("--requests", type=int, default=3, help="requests per client (default 3)")
    p.add_argument("--max-tokens", type=int, default=16, help="max_tokens of each request (default 16)")
    p.add_argument("--max-pending", type=int, default=256, help="the server's --max-pending (default 256)")
    p.add_argument("--time-limit", type=float, default=900, help="seconds before the soak stops (default 900)")
    return p.parse_args()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_stats(pid: int) -> dict[str, int]:
    """RSS (KiB) and thread count of a process, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return {"rss_kib": int(fields["VmRSS"].split()[0]), "threads": int(fields["Threads"])}


def png_url(side: int = 64) -> str:
    arr = np.random.default_rng(side).integers(0, 255, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def hostile(model: str) -> list[tuple[str, bytes]]:
    """``(name, body)`` of requests a careless or hostile client sends."""
    ask = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    cases = {
        "long stop strings": {**ask, "stop": ["x" * 20_000] * 4},
        "typed <image>": {**ask, "messages": [{"role": "user", "content": "what is <image>?"}]},
        "seed 2^70": {**ask, "seed": 2**70, "temperature": 1.0},
        "stream_options text": {**ask, "stream_options": "yes"},
        "stream as text": {**ask, "stream": "false"},
        "tools": {**ask, "tools": [{"type": "function", "function": {"name": "f"}}]},
        "8 images at the pixel limit": {**ask, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": png_url(1024)}}] * 8 + [{"type": "text", "text": "?"}]}]},
    }
    bodies = [(name, json.dumps(body).encode()) for name, body in cases.items()]
    bodies.append(("nested JSON", b'{"model": "x", "messages": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"))
    return bodies


def main() -> None:
    args = parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = Path(args.model).resolve().name
    server = subprocess.Popen([sys.executable, "-m", "doctorsun", "serve", "--model", args.model, "--port",
                               str(port), "--max-pending", str(args.max_pending)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "DOCTORSUN_API_KEY": ""})
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("doctorsun serve did not start")
            time.sleep(0.5)
        question = {"model": name, "max_tokens": args.max_tokens,
                    "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": png_url()}},
                                                              {"type": "text", "text": "What modality is this?"}]}]}
        warm = {**question, "max_tokens": 2}
        with ThreadPoolExecutor(args.clients) as pool:  # warm-up burst
            list(pool.map(lambda _: httpx.post(f"{url}/v1/chat/completions", json=warm, timeout=300),
                          range(args.clients)))
        time.sleep(5)
        rest = proc_stats(server.pid)
        peak = dict(rest)
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                now = proc_stats(server.pid)
                peak.update({k: max(peak[k], now[k]) for k in now})
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        latencies: list[float] = []
        server_errors: list[str] = []
        refusals: dict[str, int] = {}
        soak_end = time.monotonic() + args.time_limit

        def client(i: int) -> None:
            with httpx.Client(timeout=300) as http:
                for _ in range(args.requests):
                    if time.monotonic() > soak_end:
                        return
                    t0 = time.perf_counter()
                    try:
                        res = http.post(f"{url}/v1/chat/completions", json=question)
                    except httpx.HTTPError as exc:
                        server_errors.append(f"client {i}: {type(exc).__name__}")
                        continue
                    if res.status_code >= 500:
                        server_errors.append(f"client {i}: {res.status_code}")
                    elif res.status_code == 200:
                        latencies.append(time.perf_counter() - t0)

        def attacker(case: tuple[str, bytes]) -> None:
            label, body = case
            try:
                res = httpx.post(f"{url}/v1/chat/completions", content=body, timeout=120,
                                 headers={"Content-Type": "application/json"})
                if res.status_code >= 500:
                    server_errors.append(f"{label}: {res.status_code}")
                refusals[label] = res.status_code
            except httpx.HTTPError as exc:
                server_errors.append(f"{label}: {type(exc).__name__}")

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients + 8) as pool:
            futures = [pool.submit(client, i) for i in range(args.clients)]
            futures += [pool.submit(attacker, case) for case in hostile(name)]
            for f in futures:
                f.result()
        wall = time.perf_counter() - t0
        stop.set()
        watcher.join()
        time.sleep(5)  # let the batcher and the thread pools settle
        after = proc_stats(server.pid)
        healthy = httpx.get(f"{url}/health", timeout=10).status_code == 200
    finally:
        server.terminate()
        server.wait(30)

    lat = sorted(latencies)
    pct = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else (lambda q: float("nan"))
    print(f"clients {args.clients} x {args.requests} requests of {args.max_tokens} tokens, plus "
          f"{len(refusals)} hostile requests; {wall:.1f} s")
    print(f"answered {len(lat)}: {len(lat) / wall:.2f} req/s, latency p50 {pct(0.5):.2f} s, p95 {pct(0.95):.2f} s, "
          f"mean {statistics.fmean(lat) if lat else float('nan'):.2f} s")
    print(f"errors of the server's making: {len(server_errors)}" + (f" ({server_errors[:5]})" if server_errors else ""))
    print("hostile requests answered: " + ", ".join(f"{k} {v}" for k, v in refusals.items()))
    print(f"server RSS MiB: rest {rest['rss_kib'] / 1024:.0f}, peak {peak['rss_kib'] / 1024:.0f} "
          f"({peak['rss_kib'] / rest['rss_kib']:.2f}x rest), after {after['rss_kib'] / 1024:.0f} "
          f"({after['rss_kib'] / rest['rss_kib']:.2f}x rest)")
    print(f"server threads: rest {rest['threads']}, peak {peak['threads']}, after {after['threads']} "
          f"({after['threads'] / rest['threads']:.2f}x rest); healthy after: {healthy}")


if __name__ == "__main__":
    main()
