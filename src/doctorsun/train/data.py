"""Training data for the language-model stages: read, plan (select, mix, merge), tokenise, load lazily, collate.

The corpus is never held in Python: files stream into an Arrow table of records (``RecordTables``), the
plan works on its small columns, tokenised samples live in a memory-mapped cache entry
(``train.prepare``) and ``PreparedSet`` decodes each sample's images when a batch asks for it.
Bad records never stop a run: a reader problem, a refused sample or an image that cannot be read at
run time becomes an ``(id, reason)`` entry in the stage's report, and the good records train.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from doctorsun.data.tokenize import IGNORE, join_packed, pack_plan
from doctorsun.errors import DoctorSunError
from doctorsun.model.chat import IMAGE_TOKEN, PLACEHOLDER
from doctorsun.train.config import DataConfig

log = logging.getLogger(__name__)

Problem = tuple[str, str]
RECORD_COLUMNS = {"id": "string", "record": "string", "images": ["string"], "source": "string", "task": "string",
                  "lang": "string", "group": "string"}


def _field(record: dict, key: str) -> Any:
    for part in key.split("."):
        record = record.get(part) if isinstance(record, dict) else None
    return record


def wanted(record: dict, langs: list[str] | tuple[str, ...] | None, where: dict[str, list[str]] | None) -> bool:
    """Whether ``data.langs`` and ``data.where`` keep a record (``None`` or empty: no condition)."""
    return ((not langs or record.get("lang") in langs)
            and (not where or all(str(_field(record, k)) in vals for k, vals in where.items())))


def file_records(path: str, image_root: str | None) -> Iterator[tuple[str, dict | None, str | None, list[str]]]:
    """``data.io.iter_records`` of one data file, each valid record with its images as absolute paths
    (relative to ``image_root``, or to the file's folder; a folder, such as a built corpus, is its own root)."""
    from doctorsun.data.io import iter_records
    from doctorsun.data.records import image_paths, resolve_image

    root = Path(image_root) if image_root else Path(path) if Path(path).is_dir() else Path(path).parent
    for label, r, problem in iter_records(path, image_root=root):
        yield label, r, problem, [] if r is None else [str(resolve_image(p, root)) for p in image_paths(r)]


def arrow_features(spec: dict[str, str | list[str]]):
    """``datasets.Features`` from ``{column: type}``, a one-item list meaning a list of that type."""
    from datasets import Features, List, Value

    return Features({k: List(Value(v[0])) if isinstance(v, list) else Value(v) for k, v in spec.items()})


def _merge_key(record: dict, images: list[str]) -> str:
    """``image + lang`` for a record ``merge_turns`` may merge (one image, one human turn holding its
    placeholder, one answer), else empty."""
    turns = record.get("conversations") or []
    single = (len(images) == 1 and len(turns) == 2 and turns[0].get("from") == "human"
              and turns[1].get("from") == "gpt" and str(turns[0].get("value", "")).count(IMAGE_TOKEN) == 1)
    return f"{images[0]}\x00{record.get('lang', '')}" if single else ""


@dataclass
class RecordTables:
    """The records of a data section in one Arrow file: ``train`` rows first, then ``general`` rows."""

    path: Path
    n_medical: int
    n_general: int
    _table: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:  # workers memory-map the file themselves
        return {**self.__dict__, "_table": None}

    @property
    def table(self):
        if self._table is None:
            from datasets import Dataset

            self._table = Dataset.from_file(str(self.path)).data.table
        return self._table

    def column(self, name: str) -> list:
        return self.table.column(name).to_pylist()

    def records(self, rows: list[int]) -> list[tuple[dict, list[str]]]:
        """``(record, absolute image paths)`` for each of ``rows``, in that order."""
        import pyarrow as pa

        taken = self.table.take(pa.array(rows, type=pa.int64())).select(["record", "images"])
        return [(json.loads(r), i) for r, i in zip(taken.column("record").to_pylist(),
                                                    taken.column("images").to_pylist(), strict=True)]

    def joined(self, entries: list[tuple[list[int], str]]) -> Iterator[dict]:
        """The sample record of each ``(rows, id)`` entry, in order (their rows read in one ``take``)."""
        records = self.records([r for rows, _ in entries for r in rows])
        at = 0
        for rows, rid in entries:
            yield self.join(records[at:at + len(rows)], rid)
            at += len(rows)

    @staticmethod
    def join(chunk: list[tuple[dict, list[str]]], rid: str) -> dict:
        """One sample's record (several records about one image merged into one conversation: the
        ``<image>`` placeholder stays in the first question only) with its id and ``_images``."""
        first, images = chunk[0]
        turns = list(first["conversations"])
        for record, _ in chunk[1:]:
            human, answer = record["conversations"]
            question = PLACEHOLDER.sub("", str(human["value"]), count=1).strip()
            turns += [{**human, "value": question}, answer]
        return {**first, "id": rid, "conversations": turns, "_images": images}


def write_tables(data: DataConfig, path: Path) -> tuple[RecordTables, list[Problem], int]:
    """Stream every file of ``data`` into one record table (``langs`` and, for ``train``, ``where``
    applied); also the readers' problems and how many ``train`` records were read."""
    from datasets.arrow_writer import ArrowWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    problems: list[Problem] = []
    counts = {"train": 0, "general": 0}
    read_train = 0
    with ArrowWriter(features=arrow_features(RECORD_COLUMNS), path=str(path), writer_batch_size=10_000) as writer:
        for part, files in (("train", data.train), ("general", data.general)):
            for f in files:
                for label, r, problem, images in file_records(f, data.image_root):
                    if problem:
                        problems.append((str(label), f"{Path(f).name}: {problem}"))
                        continue
                    if not wanted(r, data.langs, None):
                        continue
                    read_train += part == "train"
                    if part == "train" and not wanted(r, None, data.where):
                        continue
                    writer.write({"id": str(r["id"]), "record": json.dumps(r, ensure_ascii=False),
                                  "images": images, "source": str(r.get("source")), "task": str(r.get("task")),
                                  "lang": str(r.get("lang")), "group": _merge_key(r, images)})
                    counts[part] += 1
        writer.finalize()
    return RecordTables(path, counts["train"], counts["general"]), problems, read_train


def select_positions(tasks: list[str], task_weights: dict[str, float], seed: int) -> list[int]:
    """Positions of the records each task keeps: ``task_weights[task]`` times (a fraction: a seeded sample
    of that share of the task's records), tasks in order of first appearance; tasks not named keep 1."""
    rng = random.Random(seed)
    by_task: dict[str, list[int]] = {}
    for i, task in enumerate(tasks):
        by_task.setdefault(task, []).append(i)
    out: list[int] = []
    for task, group in by_task.items():
        weight = task_weights.get(task, 1.0)
        whole = int(weight)
        share = round((weight - whole) * len(group))
        out += group * whole + [group[i] for i in sorted(rng.sample(range(len(group)), share))]
    return out


def merge_groups(keys: list[str], max_turns: int, seed: int) -> list[list[int]]:
    """Positions grouped into merged samples: positions with the same non-empty key (same image, same
    language) join, in a seeded order, in chunks of up to ``max_turns``; every other position stays alone.
    Output order follows each group's first position."""
    rng = random.Random(seed)
    groups: dict[str | int, list[int]] = {}
    for n, key in enumerate(keys):
        groups.setdefault(key or n, []).append(n)
    out: list[list[int]] = []
    for group in groups.values():
        rng.shuffle(group)
        out += [group[i:i + max_turns] for i in range(0, len(group), max_turns)]
    return out


def merge_turns(records: list[dict], max_turns: int, seed: int) -> list[dict]:
    """In-memory records (with ``_images``) merged as the plan merges table rows: records about the same
    image, in the same language, become conversations of up to ``max_turns`` question-answer pairs; the
    merged id joins the ids with ``+``; records of any other shape pass through unchanged."""
    chunks = merge_groups([_merge_key(r, r["_images"]) for r in records], max_turns, seed)
    return [records[c[0]] if len(c) == 1 else
            RecordTables.join([(records[n], records[n]["_images"]) for n in c],
                              "+".join(str(records[n].get("id")) for n in c)) for c in chunks]


@dataclass
class Plan:
    """Which records make each sample, in training order: ``entries`` are ``(table rows, sample id)``."""

    tables: RecordTables
    entries: list[tuple[list[int], str]]
    problems: list[Problem]
    report: dict[str, Any]


def plan_samples(data: DataConfig, seed: int, folder: Path) -> Plan:
    """Read ``data`` into a record table under ``folder`` and plan its samples: ``where`` (at read time),
    ``task_weights``, the medical:general mix (``data.mix.mix_plan``), ``merge_turns`` and ``limit``,
    with the seeded rules of the in-memory tools, so the same seed gives the same samples."""
    from doctorsun.data.check import composition
    from doctorsun.data.mix import mix_plan, unique_names

    tables, problems, read_n = write_tables(data, Path(folder) / "records.arrow")
    ids = tables.column("id")
    n_med = tables.n_medical
    positions = list(range(n_med))
    med_ids = ids[:n_med]
    if data.task_weights:
        tasks = tables.table.column("task").slice(0, n_med).to_pylist()
        positions = select_positions(tasks, data.task_weights, seed)
        med_ids = unique_names([ids[p] for p in positions])
    if not positions:
        chosen = f" ({read_n} read, none chosen by data.where / data.task_weights)" if read_n else ""
        raise DoctorSunError(f"no usable training records in {', '.join(data.train)}{chosen} "
                             f"({len(problems)} problems)")
    picked, order, counts = mix_plan(len(positions), tables.n_general, ratio=data.ratio, seed=seed,
                                     replace=data.replace)
    general = [n_med + g for g in picked]
    pool = [([p], i) for p, i in zip(positions, med_ids, strict=True)]
    pool += [([g], name) for g, name in zip(general, unique_names([ids[g] for g in general]), strict=True)]
    entries = [pool[i] for i in order]
    columns = {k: tables.column(k) for k in ("source", "lang", "task")}
    report = {**counts, **composition({k: col[s[0]] for k, col in columns.items()} for s, _ in entries)}
    if data.merge_turns > 1:
        group = tables.column("group")
        chunks = merge_groups([group[s[0]] for s, _ in entries], data.merge_turns, seed)
        merged = [([r for n in c for r in entries[n][0]], "+".join(entries[n][1] for n in c)) for c in chunks]
        report = {**report, "records_before_merge": len(entries), "merged_records": len(merged)}
        entries = merged
    if data.limit:
        entries = entries[: data.limit]
    return Plan(tables, entries, problems, report)


def iter_mixed(plan: Plan, batch: int = 1000) -> Iterator[dict]:
    """The planned samples' records (with ``_images``), read from the table a batch at a time."""
    for start in range(0, len(plan.entries), batch):
        yield from plan.tables.joined(plan.entries[start:start + batch])


def read_mixed(data: DataConfig, seed: int) -> tuple[list[dict], list[Problem], dict[str, Any]]:
    """The planned samples' records in memory (small sets and tests; training reads ``prepare``'s entry)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="doctorsun-plan-") as folder:
        plan = plan_samples(data, seed, Path(folder))
        return list(iter_mixed(plan)), plan.problems, plan.report


def load_pixels(path: str, image_processor) -> torch.Tensor:
    """One image decoded and preprocessed; ``DoctorSunError`` naming the file when it cannot be."""
    from doctorsun.data.image import load_image

    try:
        return image_processor(load_image(path), return_tensors="pt")["pixel_values"][0]
    except DoctorSunError:
        raise
    except Exception as exc:  # a decoder or processor failure makes this image unusable, not the run
        raise DoctorSunError(f"image {path} cannot be read: {exc}") from exc


def sample_pixels(rid: str, paths: list[str], image_processor) -> tuple[list[torch.Tensor] | None, list[Problem]]:
    """A sample's images as pixel tensors, or ``None`` and the ``(id, reason)`` that drops the sample
    from its batch (logged) when one cannot be read."""
    try:
        return [load_pixels(p, image_processor) for p in paths], []
    except DoctorSunError as exc:
        log.warning("record %s dropped from its batch: %s", rid, exc)
        return None, [(rid, str(exc))]


class PreparedSet(Dataset):
    """The rows a stage trains on, memory-mapped from a prepared entry: one sample each, or (packing)
    several samples per row of at most ``max_length`` tokens. Images are decoded when a row is read (in
    DataLoader workers when there are any); a sample whose image cannot be read is dropped from its row
    and reported under ``dropped``."""

    def __init__(self, prepared, image_processor, pack_to: int | None = None):
        self.samples = prepared.samples
        self.rows = prepared.rows
        self.image_processor = image_processor
        sample_lengths = prepared.lengths
        if pack_to:
            self.packs = pack_plan(sample_lengths.tolist(), pack_to)
            self._lengths = [int(sum(sample_lengths[k] for k in p)) for p in self.packs]
        else:
            self.packs = None
            self._lengths = sample_lengths.tolist()

    def __len__(self) -> int:
        return len(self._lengths)

    @property
    def lengths(self) -> list[int]:
        return self._lengths

    def tokens(self) -> int:
        return sum(self._lengths)

    def sample(self, k: int) -> dict[str, Any]:
        """Sample ``k`` (of the good ones) as stored: ``id``, ``input_ids``, ``labels``, ``images``."""
        return self.samples[int(self.rows[k])]

    def __getitem__(self, i: int) -> dict[str, Any]:
        parts, dropped = [], []
        for k in self.packs[i] if self.packs else [i]:
            row = self.sample(k)
            pixels, problem = sample_pixels(row["id"], row["images"], self.image_processor)
            dropped += problem
            if pixels is not None:
                parts.append((row, pixels))
        item: dict[str, Any] = {}
        if parts:
            if self.packs:
                item = {k: torch.tensor(v) for k, v in join_packed([r for r, _ in parts]).items()}
            else:
                item = {k: torch.tensor(parts[0][0][k]) for k in ("input_ids", "labels")}
            pixels = [p for _, ps in parts for p in ps]
            if pixels:
                item["pixel_values"] = torch.stack(pixels)
        if dropped:
            item["dropped"] = dropped
        return item


def loss_weights(labels: torch.Tensor, position_ids: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Per-token loss weights (float, the shape of ``labels``) for ``sample`` (1/n) or ``square``
    (1/sqrt(n)) reduction, n being the label tokens of the sample a token belongs to; 0 where there is
    no label. Samples are the rows, or within a row (packed or padding-free) the runs that start where
    ``position_ids`` return to 0. Column 0 is never a target (the loss predicts token t + 1 from t)."""
    counted = labels.ne(IGNORE)
    counted[:, 0] = False
    if position_ids is None:
        segment = torch.zeros_like(labels)
    else:
        starts = position_ids.eq(0)
        starts[:, 0] = True
        segment = starts.long().cumsum(1) - 1  # (B, T): which sample of its row each token is
    width = int(segment.max()) + 1
    flat = segment + torch.arange(len(labels), device=labels.device)[:, None] * width  # one id per sample
    n = torch.zeros(len(labels) * width, device=labels.device).index_add_(
        0, flat.flatten(), counted.flatten().float())[flat]
    power = 1.0 if reduction == "sample" else 0.5
    return torch.where(counted, n.clamp(min=1) ** -power, torch.zeros_like(n))


@dataclass
class Collator:
    """Pads a batch on the right; packed rows keep their ``position_ids`` and get no attention mask
    (transformers then builds the block-diagonal mask from the positions).

    With ``padding_free`` the batch's samples are joined into a single row instead (what TRL and
    transformers call padding-free batching): position ids restart at 0 for every sample, so attention
    stays within each sample, and no compute goes to padding. The samples, their labels and the loss are
    those of the padded batch; only the summation order of floating-point sums differs."""

    pad_token_id: int
    """Token used for padding (it never gets a label)."""
    padding_free: bool = False
    loss_reduction: str = "token"
    """``sample`` / ``square``: the batch also carries ``loss_weights`` (see ``loss_weights``)."""

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        dropped = [d for it in items for d in it.get("dropped", ())]
        items = [it for it in items if "input_ids" in it]
        if not items:  # every sample of the batch dropped: two padding tokens that learn nothing
            items = [{"input_ids": torch.tensor([self.pad_token_id] * 2), "labels": torch.tensor([IGNORE] * 2)}]
        batch: dict[str, Any] = self._flat(items) if self.padding_free else self._padded(items)
        if self.loss_reduction != "token":
            batch["loss_weights"] = loss_weights(batch["labels"], batch.get("position_ids"), self.loss_reduction)
        pixels = [it["pixel_values"] for it in items if "pixel_values" in it]
        if pixels:
            batch["pixel_values"] = torch.cat(pixels)  # (n_images, C, H, W) in placeholder order
        if dropped:
            batch["dropped"] = dropped
        return batch

    def _padded(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(it["input_ids"]) for it in items)
        n = len(items)
        batch = {"input_ids": torch.full((n, width), self.pad_token_id, dtype=torch.long),
                 "labels": torch.full((n, width), IGNORE, dtype=torch.long)}
        packed = "position_ids" in items[0]
        if packed:
            batch["position_ids"] = torch.arange(width).repeat(n, 1)
        else:
            batch["attention_mask"] = torch.zeros((n, width), dtype=torch.long)
        for i, it in enumerate(items):
            t = len(it["input_ids"])
            batch["input_ids"][i, :t] = it["input_ids"]
            batch["labels"][i, :t] = it["labels"]
            if packed:
                # Padding continues as one more block of its own, so real rows never attend to it.
                batch["position_ids"][i, :t] = it["position_ids"]
                batch["position_ids"][i, t:] = torch.arange(width - t)
            else:
                batch["attention_mask"][i, :t] = 1
        return batch

    def _flat(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids, labels, positions = [], [], []
        for it in items:
            ids.append(it["input_ids"])
            # A sample's first token is not predicted from the end of the sample before it.
            labels.append(torch.cat([torch.tensor([IGNORE]), it["labels"][1:]]))
            positions.append(it["position_ids"] if "position_ids" in it else torch.arange(len(it["input_ids"])))
        return {"input_ids": torch.cat(ids)[None], "labels": torch.cat(labels)[None],
                "position_ids": torch.cat(positions)[None]}
