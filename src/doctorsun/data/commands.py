"""``doctorsun data``: check, convert and mix SunMed-VL files (``data mini`` lives in ``doctorsun.mini``).

Records written by ``convert`` and ``mix`` have image paths relative to the output file's folder, so
every SunMed-VL file can be read with its own folder as the image root.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from doctorsun.errors import DoctorSunError


def add_arguments(parser: argparse.ArgumentParser):
    """The ``data`` subcommands; returns the subparsers so that the CLI can add the ones of other rooms."""
    sub = parser.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    p = sub.add_parser("check", help="report every bad record of a data file, then a summary")
    p.add_argument("file", type=Path, help="LLaVA JSON, JSONL, ShareGPT JSON, or a saved HF dataset folder")
    p.add_argument("--image-root", type=Path, help="folder image paths are relative to (default: the file's)")
    p.add_argument("--no-decode", action="store_true", help="only check that image files exist (faster)")
    p.add_argument("--max-bad", type=int, default=None, help="print at most this many bad records")

    p = sub.add_parser("convert", help="convert a public set from its published layout")
    p.add_argument("--from", dest="name", required=True, help="set name (see `doctorsun data sets`)")
    p.add_argument("src", type=Path, help="the set's file or folder, as downloaded")
    p.add_argument("--out", type=Path, required=True,
                   help="output .json / .jsonl (or a folder for --format hf)")
    p.add_argument("--split", help="split to convert (default: the set's test split for benchmarks)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a converter option, e.g. lang=zh or answers=FILE (repeatable)")
    p.add_argument("--format", choices=("llava", "sharegpt", "hf"), default="llava", help="output format")

    p = sub.add_parser("mix", help="mix medical and general records at an exact ratio")
    p.add_argument("--medical", type=Path, nargs="+", required=True, help="medical record file(s)")
    p.add_argument("--general", type=Path, nargs="+", required=True, help="general record file(s)")
    p.add_argument("--ratio", default="1:0.5", help="medical:general (default 1:0.5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output .json / .jsonl")
    p.add_argument("--replace", action="store_true", help="sample general records with replacement")

    sub.add_parser("sets", help="list the public sets `convert` knows, with their options")

    p = sub.add_parser("build", help="build a SunMed-VL corpus from a manifest (dedup, decontaminate, "
                                     "translate, mix, shards + data card)")
    p.add_argument("manifest", type=Path, help="the manifest YAML (see recipes/doctor-sun-8b/sunmed-vl.yaml)")
    p.add_argument("--out", type=Path, required=True, help="output folder (replaced when the build completes)")
    p.add_argument("--workers", type=int, default=None, help="threads that decode images (default: one per core)")
    p.add_argument("--no-hash-cache", action="store_true", help="do not read or keep the image hash cache")

    p = sub.add_parser("decontaminate", help="drop training records that share an image or a text item "
                                             "with a benchmark's test split")
    p.add_argument("train", type=Path, nargs="+", help="training record file(s)")
    p.add_argument("--against", action="append", required=True, metavar="BENCH[:SPLIT]=PATH",
                   help="a `doctorsun eval` benchmark in its published layout, or file=PATH (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="output folder: cleaned files, dropped.jsonl, report.json")
    p.add_argument("--images", choices=("near", "exact", "path"), default="near",
                   help="near: same pixels or perceptual hash within --threshold (default); exact: same pixels")
    p.add_argument("--threshold", type=int, default=None, help="Hamming distance of 64-bit pHash (default 6)")
    p.add_argument("--workers", type=int, default=None, help="threads that decode images (default: one per core)")
    p.add_argument("--no-hash-cache", action="store_true", help="do not read or keep the image hash cache")

    p = sub.add_parser("translate", help="translate records through an OpenAI-compatible chat endpoint")
    p.add_argument("file", type=Path, help="record file to translate")
    p.add_argument("--to", required=True, choices=("zh", "en"))
    p.add_argument("--endpoint", required=True, help="base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", required=True, help="model name the endpoint serves")
    p.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API key")
    p.add_argument("--out", type=Path, required=True, help="output .json / .jsonl of the translated copies")
    p.add_argument("--cache", type=Path, help="translation cache (default: OUT.cache.jsonl; a re-run asks "
                                              "nothing twice)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    p.add_argument("--retries", type=int, default=5, help="retries of a failed request (default 5)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    p.add_argument("--max-tokens", type=int, default=1024, help="longest translation asked for (default 1024)")
    return sub


def run(args: argparse.Namespace) -> int:
    return {"check": _check, "convert": _convert, "mix": _mix, "sets": _sets, "build": _build,
            "decontaminate": _decontaminate, "translate": _translate}[args.data_command](args)


def _check(args) -> int:
    from doctorsun.data.check import check_file

    report = check_file(args.file, image_root=args.image_root, check_images=not args.no_decode)
    print(report.format(max_bad=args.max_bad))
    return 0 if report.ok else 1


def _parse_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise DoctorSunError(f"--option {pair!r} must look like KEY=VALUE")
        options[key.strip().replace("-", "_")] = int(value) if value.isdigit() else value
    return options


def _convert(args) -> int:
    from doctorsun.data.converters import convert
    from doctorsun.data.io import rebase_images, save_hf_dataset, write_records

    result = convert(args.name, args.src, split=args.split, **_parse_options(args.option))
    for where, reason in result.problems:
        print(f"skipped {where}: {reason}")
    if not result.records:
        raise DoctorSunError(f"{args.name}: no records converted from {args.src} (split {result.split})")
    out_dir = args.out if args.format == "hf" else args.out.parent
    records = result.records
    if result.image_root is not None:
        records = rebase_images(records, result.image_root, out_dir.resolve())
    if args.format == "hf":
        save_hf_dataset(records, args.out)
    else:
        write_records(records, args.out, fmt=args.format)
    print(f"wrote {len(records)} {args.name} records (split {result.split}) to {args.out}; "
          f"{len(result.problems)} item(s) skipped")
    return 0


def _read_all(paths: list[Path], out_dir: Path) -> list[dict]:
    from doctorsun.data.io import read_records, rebase_images

    records = []
    for path in paths:
        good, problems = read_records(path)
        for where, reason in problems:
            print(f"skipped {path.name} {where}: {reason}")
        records += rebase_images(good, path.parent if path.is_file() else path, out_dir)
    return records


def _mix(args) -> int:
    from doctorsun.data.io import write_records
    from doctorsun.data.mix import format_report, mix
    from doctorsun.files import write_json

    out_dir = args.out.parent.resolve()
    medical, general = _read_all(args.medical, out_dir), _read_all(args.general, out_dir)
    records, report = mix(medical, general, ratio=args.ratio, seed=args.seed, replace=args.replace)
    report["inputs"] = {"medical": [str(p) for p in args.medical], "general": [str(p) for p in args.general]}
    write_records(records, args.out)
    report_path = args.out.with_name(args.out.stem + ".report.json")
    write_json(report_path, report)
    print(format_report(report))
    print(f"wrote {args.out} and {report_path}")
    return 0


def _sets(args) -> int:
    from doctorsun.data.converters import CONVERTERS, describe

    for name in CONVERTERS:
        print(describe(name) + "\n")
    return 0


def _build(args) -> int:
    from doctorsun.data.build import build
    from doctorsun.data.manifest import load_manifest

    result = build(load_manifest(args.manifest), args.out, workers=args.workers,
                   hash_cache=None if args.no_hash_cache else "default")
    card, steps = result.card, result.card["steps"]
    print(f"built {args.out}: {card['records']} records in {len(card['shards'])} shard(s)")
    print(f"read {steps['read']['records']}, refused {steps['read']['refused']}"
          + (f", duplicates dropped {steps['dedup']['dropped']}" if "dedup" in steps else "")
          + (f", contaminated dropped {steps['decontaminate']['dropped']}" if "decontaminate" in steps else "")
          + (f", translated {steps['translate']['translated']}" if "translate" in steps else ""))
    print(f"data card: {args.out / 'README.md'} and {args.out / 'card.json'}")
    return 0


def parse_against(values: list[str]):
    """``BENCH[:SPLIT]=PATH`` -> ``manifest.Against`` entries."""
    from doctorsun.data.manifest import Against

    out = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise DoctorSunError(f"--against {value!r} must look like BENCH=PATH or BENCH:SPLIT=PATH")
        bench, _, split = name.partition(":")
        out.append(Against(bench.strip(), path, split or None))
    return out


def _decontaminate(args) -> int:
    from collections import Counter

    from doctorsun.data.build import benchmark_index
    from doctorsun.data.dedup import item_of, per_benchmark
    from doctorsun.data.hashing import DEFAULT_THRESHOLD, HashCache
    from doctorsun.data.io import read_records, rebase_images, write_records
    from doctorsun.files import cache_dir, write_json

    cache = HashCache(None if args.no_hash_cache else cache_dir() / "image-hashes.sqlite")
    try:
        index, counts = benchmark_index(parse_against(args.against), None, args.images,
                                        args.threshold if args.threshold is not None else DEFAULT_THRESHOLD,
                                        args.workers, cache, progress=True)
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
        names: Counter = Counter()
        report = {"benchmarks": counts, "images": args.images, "files": {}}
        all_drops = []
        for path in args.train:
            records, problems = read_records(path)
            for where, reason in problems:
                print(f"skipped {path.name} {where}: {reason}")
            root = path if path.is_dir() else path.parent
            drops = index.match([item_of(r, root, path.name) for r in records], workers=args.workers,
                                cache=cache, progress=True)
            gone = {d.id for d in drops}
            kept = rebase_images([r for r in records if r["id"] not in gone], root, out.resolve())
            stem = path.stem if path.is_file() else path.name
            names[stem] += 1
            target = out / (f"{stem}.jsonl" if names[stem] == 1 else f"{stem}-{names[stem]}.jsonl")
            write_records(kept, target)
            report["files"][str(path)] = {"out": target.name, "records": len(records), "kept": len(kept),
                                          "dropped": len(drops), "by_benchmark": per_benchmark(drops),
                                          "refused": len(problems)}
            all_drops += drops
            print(f"{path}: kept {len(kept)} of {len(records)}; dropped "
                  + (", ".join(f"{k} {v}" for k, v in per_benchmark(drops).items()) or "none") + f" -> {target}")
    finally:
        cache.close()
    report["by_benchmark"] = per_benchmark(all_drops)
    write_records([d.as_dict() for d in all_drops], out / "dropped.jsonl")
    write_json(out / "report.json", report)
    print(f"wrote {out / 'dropped.jsonl'} ({len(all_drops)} ids) and {out / 'report.json'}")
    return 0


def _translate(args) -> int:
    import os

    from doctorsun.data.io import read_records, rebase_images, write_records
    from doctorsun.data.translate import Cache, ChatClient, translate_records
    from doctorsun.files import write_json

    key = None
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise DoctorSunError(f"--api-key-env {args.api_key_env}: that environment variable is not set")
    records, problems = read_records(args.file)
    for where, reason in problems:
        print(f"skipped {where}: {reason}")
    root = args.file if args.file.is_dir() else args.file.parent
    client = ChatClient(args.endpoint, args.model, key, timeout=args.timeout, retries=args.retries,
                        max_tokens=args.max_tokens)
    cache = Cache(args.cache or args.out.with_name(args.out.name + ".cache.jsonl"))
    try:
        done, report = translate_records(records, args.to, client, cache, concurrency=args.concurrency,
                                         progress=True)
    finally:
        client.close()
        cache.close()
    write_records(rebase_images(done, root, args.out.parent.resolve()), args.out)
    summary = report.as_dict()
    summary.update({"file": str(args.file), "to": args.to, "model": args.model, "endpoint": args.endpoint,
                    "refused": [{"id": w, "reason": r} for w, r in problems]})
    report_path = args.out.with_name(args.out.stem + ".report.json")
    write_json(report_path, summary)
    for rid, reason in report.failed:
        print(f"failed {rid}: {reason}")
    print(f"translated {report.translated} of {len(records)} record(s) to {args.to} "
          f"({report.asked} request(s), {report.cached} from the cache, {len(report.failed)} failed, "
          f"{len(report.skipped)} skipped) -> {args.out}; report {report_path}")
    return 0
