"""``doctorsun data build MANIFEST --out DIR``: the SunMed-VL corpus from its public sources.

Steps, always in this order:

1. **read**: each source through its converter (or as a record file); items a converter or the record
   checks refuse are reported by id; the source's ``langs`` and ``tasks`` filters apply.
2. **dedup**: duplicates across and within sources (``doctorsun.data.dedup``), the first in manifest order
   kept; records whose image cannot be decoded go here too.
3. **decontaminate**: records sharing an image or a text-only item with a benchmark's test split.
4. **sample**: each source's ``count`` or ``weight`` (seeded).
5. **translate**: translated copies of the named sources' sampled records (``doctorsun.data.translate``).
6. **mix**: the general sources drawn to the medical:general ``ratio`` (``data.mix.mix_plan``), all shuffled.
7. **write**: JSONL shards, image paths through links to the sources' image folders, and the data card.

Records wait on disk between the steps (one JSONL file per source and the offset of each record), and the
steps handle ``Item``s of a few hundred bytes, so memory grows with the corpus only by those. The same
manifest and seed give byte-identical shards and card: nothing in them depends on the time or the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from doctorsun.data.dedup import BenchmarkIndex, Drop, deduplicate, item_of, per_benchmark
from doctorsun.data.hashing import HashCache, hash_images
from doctorsun.data.io import CARD, iter_records, rebaser, split_path
from doctorsun.data.manifest import FILE, Manifest, manifest_text
from doctorsun.data.mix import mix_plan
from doctorsun.errors import DoctorSunError
from doctorsun.files import atomic_dir, cache_dir, sha256_file, write_json, write_text

log = logging.getLogger(__name__)

STEPS = ("read", "dedup", "decontaminate", "sample", "translate", "mix", "write")


@dataclass
class _Source:
    """One source's records on disk: ``work/NAME.jsonl`` and where each record starts."""

    name: str
    path: Path
    offsets: array = field(default_factory=lambda: array("q"))
    digest: str = ""
    read: int = 0

    def get(self, i: int, fh) -> dict:
        fh.seek(self.offsets[i])
        return json.loads(fh.readline())


@dataclass
class BuildResult:
    out: Path
    card: dict


def build(manifest: Manifest, out: str | Path, *, workers: int | None = None, hash_cache: str | Path | None = "default",
          progress: bool = True) -> BuildResult:
    """Build the corpus of ``manifest`` into ``out`` (written whole, then renamed into place)."""
    out = Path(out)
    cache = HashCache(cache_dir() / "image-hashes.sqlite" if hash_cache == "default" else hash_cache)
    try:
        with atomic_dir(out, prefix="build") as tmp:
            card = _build(manifest, tmp, out, workers, cache, progress)
    finally:
        cache.close()
    return BuildResult(out, card)


def _build(m: Manifest, tmp: Path, out: Path, workers, cache: HashCache, progress: bool) -> dict:
    from tqdm.auto import tqdm

    work = tmp / ".work"
    work.mkdir()
    bad: list[dict] = []
    filtered: Counter = Counter()
    sources: list[_Source] = []
    items = []  # (source index, position, Item) for every record read
    licences = {s.name: s.licence for s in m.sources}
    # ---- 1. read
    for si, s in enumerate(m.sources):
        rows, problems, root = _read_source(s, m.resolve(s.path))
        src = _Source(s.name, work / f"{si:03d}.jsonl")
        h = hashlib.sha256()
        move = rebaser(root, tmp) if root is not None else None
        with open(src.path, "w", encoding="utf-8") as f:
            for r in rows:
                if move is not None:
                    r = move(r)
                line = json.dumps(r, ensure_ascii=False)
                h.update(line.encode() + b"\n")
                src.read += 1
                if s.langs and r.get("lang") not in s.langs:
                    filtered[(s.name, "lang")] += 1
                    continue
                if s.tasks and r.get("task") not in s.tasks:
                    filtered[(s.name, "task")] += 1
                    continue
                src.offsets.append(f.tell())
                f.write(line + "\n")
                items.append((si, len(src.offsets) - 1, item_of(r, tmp, s.name)))
        bad += [{"source": s.name, "id": where, "reason": why} for where, why in problems]
        src.digest = h.hexdigest()
        sources.append(src)
        log.info("%s: %d record(s) read, %d refused", s.name, src.read, len(problems))
    steps: dict[str, dict] = {"read": {"records": sum(s.read for s in sources), "refused": len(bad),
                                       "filtered": {f"{n}/{why}": c for (n, why), c in sorted(filtered.items())}}}
    # ---- image hashes, once, for every step that compares images
    needs_hashes = (m.dedup and m.dedup.images != "path") or (m.decontaminate and m.decontaminate.images != "path")
    hashes = hash_images([p for _, _, it in items for p in it.images], workers=workers, cache=cache,
                         progress="hashing images" if progress else None) if needs_hashes else ({}, {})
    dropped: list[Drop] = []
    alive = items
    # ---- 2. dedup
    if m.dedup is not None:
        drops = deduplicate([it for _, _, it in alive], images=m.dedup.images, threshold=m.dedup.threshold,
                            one_per_image=m.dedup.one_per_image, hashes=hashes)
        alive = _without(alive, drops)
        dropped += drops
        steps["dedup"] = {"dropped": len(drops), "by_reason": dict(sorted(Counter(d.reason for d in drops).items())),
                          "images": m.dedup.images, "threshold": m.dedup.threshold}
    # ---- 3. decontaminate
    if m.decontaminate is not None:
        index, bench_counts = benchmark_index(m.decontaminate.against, m, m.decontaminate.images,
                                              m.decontaminate.threshold, workers, cache, progress)
        drops = index.match([it for _, _, it in alive], hashes=hashes)
        alive = _without(alive, drops)
        dropped += drops
        steps["decontaminate"] = {"dropped": len(drops), "by_benchmark": per_benchmark(drops),
                                  "benchmarks": bench_counts, "images": m.decontaminate.images}
    # ---- 4. sample
    picked: list[tuple[int, int]] = []
    sample_counts = {}
    for si, s in enumerate(m.sources):
        mine = [pos for i, pos, _ in alive if i == si]
        chosen = _sample(mine, s.count, s.weight, random.Random(f"{m.seed}:{s.name}"))
        sample_counts[s.name] = {"available": len(mine), "taken": len(chosen),
                                 "repeats": len(chosen) - len(set(chosen))}
        picked += [(si, pos) for pos in chosen]
    steps["sample"] = sample_counts
    # ---- 5. translate
    translated: list[tuple[int, int]] = []
    if m.translate is not None:
        translated, steps["translate"] = _translate(m, sources, picked, work, progress)
    # ---- 6. mix
    general_idx = {si for si, s in enumerate(m.sources) if s.general}
    medical = [p for p in picked if p[0] not in general_idx] + translated
    general = [p for p in picked if p[0] in general_idx]
    if m.ratio is not None and general:
        chosen, order, counts = mix_plan(len(medical), len(general), m.ratio, m.seed, m.replace)
        pool = medical + [general[i] for i in chosen]
        final = [pool[i] for i in order]
        steps["mix"] = counts
    else:
        final = medical + general
        random.Random(m.seed).shuffle(final)
        steps["mix"] = {"ratio": None, "medical": len(medical), "general": len(general), "total": len(final)}
    # ---- 7. write
    shards, counts = _write(final, sources, tmp, m.shard_size, progress, tqdm)
    write_text(tmp / "manifest.yaml", manifest_text(m))
    drops_rows = [d.as_dict() for d in dropped]
    with open(tmp / "dropped.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in drops_rows)
    with open(tmp / "bad.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in bad)
    card = {
        "name": m.name, "seed": m.seed, "records": len(final), "steps": steps, "counts": counts,
        "licences": licences,
        "inputs": {s.name: {"converter": ms.converter, "path": ms.path, "split": ms.split, "records": s.read,
                            "records_sha256": s.digest, "images_sha256": _images_digest(s, items, hashes)}
                   for s, ms in zip(sources, m.sources, strict=False)},
        "shards": shards,
        "files": {name: sha256_file(tmp / name) for name in ("manifest.yaml", "dropped.jsonl", "bad.jsonl")},
        "manifest": m.as_dict(),
    }
    shutil.rmtree(work, ignore_errors=True)
    write_json(tmp / CARD, card)
    write_text(tmp / "README.md", card_markdown(card))
    log.info("built %s: %d record(s) in %d shard(s)", out, len(final), len(shards))
    return card


def _read_source(s, path: Path):
    """``(records, problems, image root)`` of one source: a converter's list, or a record file streamed
    (``problems`` fills as the records are read)."""
    if s.converter != FILE:
        from doctorsun.data.converters import read_set

        result = read_set(s.converter, path, s.split, **s.options)
        return result.records, result.problems, result.image_root
    if not path.exists():
        raise DoctorSunError(f"source {s.name}: not found: {path}")
    if s.options:
        raise DoctorSunError(f"source {s.name}: a record file takes no converter options")
    path, root = split_path(path, s.split)
    problems: list = []

    def rows():
        for label, record, problem in iter_records(path):
            if problem:
                problems.append((label, problem))
            else:
                yield record

    return rows(), problems, root


def _without(alive: list, drops: list[Drop]) -> list:
    gone = {(d.source, d.id) for d in drops}
    return [x for x in alive if (x[2].source, x[2].id) not in gone]


def _sample(positions: list[int], count: int | None, weight: float | None, rng: random.Random) -> list[int]:
    """``count`` positions (every one once, then a seeded draw; a shortfall repeats records), or ``weight``
    copies of each (the fraction by a seeded draw); neither: all of them."""
    n = len(positions)
    if count is None and weight is None:
        return list(positions)
    if weight is not None:
        count = round(weight * n)
    if not n:
        return []
    whole, rest = divmod(count, n)
    return sorted(positions * whole + rng.sample(positions, rest))


def _images_digest(src: _Source, items: list, hashes) -> str | None:
    """A hash of the source's images by content (their decoded pixels), when they were hashed."""
    pixels = hashes[0]
    paths = sorted({p for _, _, it in items if it.source == src.name for p in it.images})
    if not pixels or not paths:
        return None
    h = hashlib.sha256()
    for p in paths:
        h.update((pixels[p].pixels if p in pixels else "unreadable").encode())
    return h.hexdigest()


def benchmark_index(against, m: Manifest | None, images: str, threshold: int, workers, cache, progress):
    """A ``BenchmarkIndex`` of every ``Against`` entry's test items, and its counts."""
    from doctorsun.data.converters import read_set

    index = BenchmarkIndex(threshold=threshold, near_images=images == "near")
    for a in against:
        path = m.resolve(a.path) if m is not None else Path(a.path)
        result = read_set(a.bench, path, a.split)
        items = [item_of(r, result.image_root) for r in result.records]
        index.add(a.bench, items, workers=workers, cache=cache, progress=progress)
        index.counts[a.bench]["split"] = result.split
        index.counts[a.bench]["refused"] = len(result.problems)
    return index, index.counts


def _translate(m: Manifest, sources: list[_Source], picked, work: Path, progress: bool):
    from doctorsun.data.translate import Cache, ChatClient, translate_records

    t = m.translate
    names = set(t.sources) or {s.name for s in m.medical()}
    want = [(si, pos) for si, pos in dict.fromkeys(picked) if sources[si].name in names]
    records = []
    for si, pos in want:
        with open(sources[si].path, encoding="utf-8") as fh:
            records.append(sources[si].get(pos, fh))
    key = os.environ.get(t.api_key_env) if t.api_key_env else None
    if t.api_key_env and not key:
        raise DoctorSunError(f"translate: environment variable {t.api_key_env} is not set")
    client = ChatClient(t.endpoint, t.model, key)
    cache = Cache(cache_dir() / "translations" / f"{hashlib.sha256(t.model.encode()).hexdigest()[:16]}.jsonl")
    try:
        done, report = translate_records(records, t.to, client, cache, concurrency=t.concurrency, progress=progress)
    finally:
        client.close()
        cache.close()
    src = _Source(f"translated-{t.to}", work / "translated.jsonl")
    with open(src.path, "w", encoding="utf-8") as f:
        for r in done:
            src.offsets.append(f.tell())
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    sources.append(src)
    si = len(sources) - 1
    info = {"to": t.to, "model": t.model, "endpoint": t.endpoint, "asked": len(records),
            "translated": report.translated, "failed": [{"id": i, "reason": r} for i, r in report.failed]}
    return [(si, i) for i in range(len(done))], info


def _write(final, sources: list[_Source], tmp: Path, shard_size: int, progress: bool, tqdm):
    n_shards = max(1, -(-len(final) // shard_size))
    handles = {}
    shards = []
    counts: Counter = Counter()
    seen: Counter = Counter()
    try:
        for k in range(n_shards):
            name = f"train-{k:05d}-of-{n_shards:05d}.jsonl"
            chunk = final[k * shard_size:(k + 1) * shard_size]
            with open(tmp / name, "w", encoding="utf-8") as f:
                for si, pos in tqdm(chunk, desc=f"writing {name}", disable=not progress, unit="rec"):
                    if si not in handles:
                        handles[si] = open(sources[si].path, encoding="utf-8")  # noqa: SIM115
                    r = sources[si].get(pos, handles[si])
                    seen[r["id"]] += 1
                    if seen[r["id"]] > 1:  # a record taken twice (weight > 1) stays distinguishable
                        r["id"] = f"{r['id']}#{seen[r['id']]}"
                    counts[(r["source"], r["lang"], r["task"])] += 1
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
            shards.append({"file": name, "records": len(chunk), "sha256": sha256_file(tmp / name)})
    finally:
        for fh in handles.values():
            fh.close()
    rows = [{"source": s, "lang": lang, "task": t, "records": n} for (s, lang, t), n in sorted(counts.items())]
    return shards, rows


def card_markdown(card: dict) -> str:
    """The card as a README: what the corpus holds, what each step dropped, licences, hashes."""
    lines = [f"# {card['name']}", "",
             f"{card['records']} records in {len(card['shards'])} shard(s), built by `doctorsun data build` "
             f"with seed {card['seed']} from the manifest `manifest.yaml` beside this file.", "",
             "## Contents (source x language x task)", "", "| source | lang | task | records |", "|---|---|---|---:|"]
    lines += [f"| {r['source']} | {r['lang']} | {r['task']} | {r['records']} |" for r in card["counts"]]
    steps = card["steps"]
    lines += ["", "## Steps", "", f"- read: {steps['read']['records']} records, {steps['read']['refused']} refused "
              "(listed in `bad.jsonl`)" + "".join(f"; {k} filtered {v}" for k, v in steps["read"]["filtered"].items())]
    if "dedup" in steps:
        d = steps["dedup"]
        lines.append(f"- dedup ({d['images']} images, threshold {d['threshold']} bits): {d['dropped']} dropped"
                     + "".join(f"; {k} {v}" for k, v in d["by_reason"].items())
                     + " (each with its kept twin in `dropped.jsonl`)")
    if "decontaminate" in steps:
        d = steps["decontaminate"]
        per = ", ".join(f"{k} {v}" for k, v in d["by_benchmark"].items()) or "none"
        checked = ", ".join(f"{b} ({c['split']}, {c['items']} items)" for b, c in d["benchmarks"].items())
        lines.append(f"- decontaminate against {checked}: {d['dropped']} dropped ({per})")
    lines.append("- sample: " + ", ".join(f"{k} {v['taken']} of {v['available']}" for k, v in steps["sample"].items()))
    if "translate" in steps:
        t = steps["translate"]
        lines.append(f"- translate to {t['to']} with {t['model']}: {t['translated']} of {t['asked']} records, "
                     f"{len(t['failed'])} failed a request or a quality gate")
    mix = steps["mix"]
    lines.append(f"- mix: {mix['medical']} medical + {mix['general']} general (ratio {mix['ratio']})")
    lines += ["", "## Licences (as the manifest states them)", "", "| source | licence |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in card["licences"].items()]
    lines += ["", "## Inputs", "", "| source | converter | records | records sha256 | images sha256 |",
              "|---|---|---:|---|---|"]
    lines += [f"| {k} | {v['converter']} | {v['records']} | `{v['records_sha256'][:16]}` | "
              f"`{(v['images_sha256'] or '-')[:16]}` |" for k, v in card["inputs"].items()]
    lines += ["", "## Shards", "", "| file | records | sha256 |", "|---|---:|---|"]
    lines += [f"| {s['file']} | {s['records']} | `{s['sha256']}` |" for s in card["shards"]]
    return "\n".join(lines) + "\n"
