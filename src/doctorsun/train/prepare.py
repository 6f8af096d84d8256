"""The prepared training set: a stage's data section tokenised once into memory-mapped Arrow files.

``prepare`` turns the data section (files, ratio, ``where``, ``task_weights``, ``merge_turns``, ``langs``,
``limit``...) and the model's tokenizer, chat template and visual-token count into a cache entry:

1. **read**: each file is streamed (``data.io.iter_records``) into an Arrow table of records (the record
   as JSON beside the few columns planning needs), so no process holds the corpus as Python objects;
2. **plan**: selection, mixing, merging and the limit run on those small columns (the same seeded rules
   as ``data.mix``), giving each sample its source rows and its id;
3. **tokenise**: ``datasets.Dataset.map`` with ``data.num_proc`` workers writes ``input_ids``, ``labels``,
   ``length``, ``images`` (absolute paths) and ``id`` per sample, or the reason it was refused.

The entry's name is a hash of everything it depends on (``inputs``: a fingerprint of every data file's
content, the data section, the tokenizer, the template, the visual tokens, the seed), so a change to any of
them makes a new entry and never reuses a stale one. Entries are written into a staging folder and renamed
into place; the next run memory-maps them (``datasets.Dataset.from_file``) in well under a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from doctorsun.data.tokenize import ChatTokenizer, SampleError
from doctorsun.errors import DoctorSunError
from doctorsun.files import atomic_dir, cache_dir, fingerprint, write_json
from doctorsun.train.config import DataConfig
from doctorsun.train.data import arrow_features, plan_samples

log = logging.getLogger(__name__)

PREPARE_VERSION = 1
"""Bumped whenever what an entry holds changes, so older entries are never read as newer ones."""
ENTRY_FILE = "entry.json"
PROBLEMS_FILE = "problems.jsonl"
# Fields of the data section that change the samples (packing, padding-free and the workers do not).
SAMPLE_FIELDS = ("train", "general", "ratio", "replace", "image_root", "max_length", "label_scope", "limit",
                 "langs", "merge_turns", "where", "task_weights")
# Plans with fewer samples are tokenised in-process: starting workers costs more than it saves.
PARALLEL_FROM = 20_000

Problem = tuple[str, str]


def cache_root(data: DataConfig) -> Path:
    """Where prepared entries live: ``data.cache_dir``, else ``$DOCTORSUN_DATA_CACHE``, else
    ``$DOCTORSUN_CACHE/prepared`` (default ``~/.cache/doctorsun/prepared``). Each entry is a folder of its
    own: moving the cache elsewhere (and pointing there) or deleting an entry is safe."""
    if data.cache_dir:
        return Path(data.cache_dir)
    return Path(os.environ.get("DOCTORSUN_DATA_CACHE") or cache_dir() / "prepared")


def tokenizer_fingerprint(tok: ChatTokenizer) -> str:
    """A hash of what tokenisation depends on: vocabulary and merges, special tokens, chat template."""
    tokenizer = tok.processor.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    parts = [backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True),
             json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str),
             str(getattr(tok.processor, "chat_template", None) or tokenizer.chat_template),
             tok.format.name]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def entry_inputs(data: DataConfig, tok: ChatTokenizer, seed: int) -> dict[str, Any]:
    """Everything a prepared entry depends on (its name is the hash of this)."""
    files = [*data.train, *data.general]
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        raise DoctorSunError(f"data file not found: {missing[0]}")
    section = asdict(data)
    return {"version": PREPARE_VERSION, "data": {k: section[k] for k in SAMPLE_FIELDS},
            "files": {str(Path(f).resolve()): fingerprint(f) for f in files},
            "tokenizer": tokenizer_fingerprint(tok), "image_seq_length": tok.image_seq_length, "seed": seed}


def entry_name(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class Prepared:
    """A prepared entry, memory-mapped: ``samples`` holds one row per planned sample (refused ones with
    their ``error``), ``rows`` the row numbers of the good ones."""

    path: Path
    samples: Any
    """``datasets.Dataset``: ``id``, ``input_ids``, ``labels``, ``images``, ``length``, ``error``."""
    rows: np.ndarray
    problems: list[Problem]
    report: dict[str, Any]
    reused: bool = False
    seconds: float = 0.0

    @property
    def lengths(self) -> np.ndarray:
        return np.asarray(self.samples.data.column("length").to_numpy(), dtype=np.int64)[self.rows]


def load_entry(path: Path) -> Prepared:
    from datasets import Dataset, concatenate_datasets

    meta = json.loads((path / ENTRY_FILE).read_text(encoding="utf-8"))
    parts = [Dataset.from_file(str(path / name)) for name in meta["files"]]
    samples = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    rows = np.flatnonzero(samples.data.column("error").is_null().to_numpy(zero_copy_only=False))
    problems = []
    problems_file = path / PROBLEMS_FILE
    if problems_file.is_file():
        with open(problems_file, encoding="utf-8") as f:
            problems = [(p["id"], p["reason"]) for p in map(json.loads, f)]
    return Prepared(path, samples, rows, problems, meta["report"])


def prepare(data: DataConfig, tok: ChatTokenizer, seed: int, *, rebuild: bool = False) -> Prepared:
    """The prepared entry for this data section and tokenizer: reused when it exists, else built.

    Under several processes (accelerate) the main one builds while the others wait, then all memory-map
    the same files.
    """
    from accelerate import PartialState

    inputs = entry_inputs(data, tok, seed)
    path = cache_root(data) / entry_name(inputs)
    state = PartialState()
    start = time.perf_counter()
    with state.main_process_first():
        reused = (path / ENTRY_FILE).is_file() and not (rebuild and state.is_main_process)
        if not reused:
            build_entry(data, tok, seed, inputs, path)
    prepared = load_entry(path)
    prepared.reused, prepared.seconds = reused, time.perf_counter() - start
    log.info("prepared data %s: %s %d samples (%d refused) in %.1f s", path, "reused" if reused else "built",
             len(prepared.rows), len(prepared.samples) - len(prepared.rows), prepared.seconds)
    return prepared


def build_entry(data: DataConfig, tok: ChatTokenizer, seed: int, inputs: dict[str, Any], path: Path) -> None:
    with atomic_dir(path, prefix="building") as staging:
        plan = plan_samples(data, seed, staging / "records")
        samples = tokenize_plan(plan, tok, staging, data.num_proc)
        shutil.rmtree(staging / "records", ignore_errors=True)
        files = [Path(f["filename"]).name for f in samples.cache_files]
        table = samples.data.table.select(["id", "error"])
        errors = table.filter(table.column("error").is_valid())
        refused = list(zip(errors.column("id").to_pylist(), errors.column("error").to_pylist(), strict=True))
        problems = plan.problems + refused
        if len(refused) == len(plan.entries):
            first = problems[0] if problems else "-"
            raise DoctorSunError(f"every training record was refused ({len(problems)} problems; first: {first})")
        with open(staging / PROBLEMS_FILE, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"id": r, "reason": why}, ensure_ascii=False) + "\n" for r, why in problems)
        report = {**plan.report, "samples": len(plan.entries) - len(refused), "refused": len(problems)}
        write_json(staging / ENTRY_FILE, {"inputs": inputs, "files": files, "report": report})


def build_sample_set(data: DataConfig, processor, image_seq_length: int, seed: int
                     ) -> tuple[Any, list[Problem], dict[str, Any]]:
    """Everything between the recipe's data section and a dataset the trainer can iterate: the prepared
    entry (built when missing), memory-mapped, with images decoded lazily (``train.data.PreparedSet``)."""
    from doctorsun.train.data import PreparedSet

    tok = ChatTokenizer(processor, image_seq_length, max_length=data.max_length, label_scope=data.label_scope)
    prepared = prepare(data, tok, seed)
    dataset = PreparedSet(prepared, processor.image_processor, data.max_length if data.packing else None)
    report = {**prepared.report, "rows": len(dataset), "prepared": str(prepared.path),
              "prepared_reused": prepared.reused}
    if prepared.problems:
        log.warning("%d record(s) skipped; first: %s: %s", len(prepared.problems), *prepared.problems[0])
    return dataset, list(prepared.problems), report


SAMPLE_FEATURES = {"id": "string", "input_ids": ["int32"], "labels": ["int32"], "images": ["string"],
                   "length": "int32", "error": "string"}


@dataclass
class _Tokenize:
    """The map function: each planned sample's records, read from the record tables, tokenised."""

    tables: Any
    """``train.data.RecordTables``."""
    tok: ChatTokenizer

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {k: [] for k in SAMPLE_FEATURES}
        for record in self.tables.joined(list(zip(batch["sources"], batch["id"], strict=True))):
            out["id"].append(record["id"])
            out["images"].append(record["_images"])
            try:
                sample = self.tok(record)
            except SampleError as exc:
                out["input_ids"].append([])
                out["labels"].append([])
                out["length"].append(0)
                out["error"].append(exc.reason)
                continue
            out["input_ids"].append(sample["input_ids"])
            out["labels"].append(sample["labels"])
            out["length"].append(len(sample["input_ids"]))
            out["error"].append(None)
        return out


def tokenize_plan(plan, tok: ChatTokenizer, folder: Path, num_proc: int | None):
    """Tokenise every planned sample into Arrow files under ``folder``: the ``datasets.Dataset`` on them."""
    from datasets import Dataset

    entries = Dataset.from_dict({"sources": [s for s, _ in plan.entries], "id": [i for _, i in plan.entries]})
    workers = num_proc if num_proc is not None else (min(os.cpu_count() or 1, 8)
                                                     if len(entries) >= PARALLEL_FROM else 1)
    workers = max(1, min(workers, len(entries)))
    done = entries.map(_Tokenize(plan.tables, tok), batched=True, batch_size=500, num_proc=workers if workers > 1
                       else None, remove_columns=["sources", "id"], features=arrow_features(SAMPLE_FEATURES),
                       cache_file_name=str(folder / "samples.arrow"), new_fingerprint=folder.name,
                       desc="tokenising", writer_batch_size=2000)
    return done
