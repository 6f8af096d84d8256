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
    return sub


def run(args: argparse.Namespace) -> int:
    return {"check": _check, "convert": _convert, "mix": _mix, "sets": _sets}[args.data_command](args)


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
