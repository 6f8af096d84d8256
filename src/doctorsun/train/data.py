"""Training data for the language-model stages: read, mix, tokenise (with refusals), pack, collate.

Bad records never stop a run: a reader problem or a refused sample becomes an ``(id, reason)`` entry
in the stage's report, and the good records train.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from doctorsun.data.tokenize import IGNORE, ChatTokenizer, pack
from doctorsun.errors import DoctorSunError
from doctorsun.model.chat import IMAGE_TOKEN, PLACEHOLDER
from doctorsun.train.config import DataConfig

log = logging.getLogger(__name__)

Problem = tuple[str, str]


def read_mixed(data: DataConfig, seed: int) -> tuple[list[dict], list[Problem], dict[str, Any]]:
    """Records of ``data.train`` mixed with ``data.general`` at ``data.ratio``, each with its image
    paths made absolute (``_images``); also the readers' problems and the mix report."""
    from doctorsun.data.io import read_records
    from doctorsun.data.mix import mix

    def read(files: list[str]) -> tuple[list[dict], list[Problem]]:
        records, problems = [], []
        for f in files:
            root = Path(data.image_root) if data.image_root else Path(f).parent
            got, bad = read_records(f, image_root=root)
            problems += [(str(where), f"{Path(f).name}: {why}") for where, why in bad]
            for r in got:
                if data.langs and r.get("lang") not in data.langs:
                    continue
                images = r.get("image")
                paths = [] if images is None else [images] if isinstance(images, str) else list(images)
                records.append({**r, "_images": [str(root / p) for p in paths]})
        return records, problems

    medical, problems = read(data.train)
    general, general_problems = read(data.general)
    problems += general_problems
    read_n = len(medical)
    medical = select(medical, data.where, data.task_weights, seed)
    if not medical:
        chosen = f" ({read_n} read, none chosen by data.where / data.task_weights)" if read_n else ""
        raise DoctorSunError(f"no usable training records in {', '.join(data.train)}{chosen} "
                             f"({len(problems)} problems)")
    records, report = mix(medical, general, ratio=data.ratio, seed=seed, replace=data.replace)
    if data.merge_turns > 1:
        merged = merge_turns(records, data.merge_turns, seed)
        report = {**report, "records_before_merge": len(records), "merged_records": len(merged)}
        records = merged
    if data.limit:
        records = records[: data.limit]
    return records, problems, report


def _field(record: dict, key: str) -> Any:
    for part in key.split("."):
        record = record.get(part) if isinstance(record, dict) else None
    return record


def select(records: list[dict], where: dict[str, list[str]] | None, task_weights: dict[str, float] | None,
           seed: int) -> list[dict]:
    """The records ``where`` keeps, each task then taken ``task_weights[task]`` times (a fraction: a
    seeded sample of that share of the task's records; repeats get ids of their own)."""
    from doctorsun.data.mix import unique_ids

    if where:
        records = [r for r in records if all(str(_field(r, k)) in vals for k, vals in where.items())]
    if not task_weights:
        return records
    rng = random.Random(seed)
    by_task: dict[Any, list[dict]] = {}
    for r in records:
        by_task.setdefault(r.get("task"), []).append(r)
    out: list[dict] = []
    for task, group in by_task.items():
        weight = task_weights.get(str(task), 1.0)
        whole = int(weight)
        share = round((weight - whole) * len(group))
        out += group * whole + [group[i] for i in sorted(rng.sample(range(len(group)), share))]
    return unique_ids(out)


def _single_turn_image(record: dict) -> bool:
    """One image, one human turn that holds its placeholder, one answer: a record ``merge_turns`` may merge."""
    turns = record.get("conversations") or []
    return (len(record["_images"]) == 1 and len(turns) == 2 and turns[0].get("from") == "human"
            and turns[1].get("from") == "gpt" and str(turns[0].get("value", "")).count(IMAGE_TOKEN) == 1)


def merge_turns(records: list[dict], max_turns: int, seed: int) -> list[dict]:
    """Records about the same image and in the same language, merged (in a seeded order) into
    conversations of up to ``max_turns`` question-answer pairs; the ``<image>`` placeholder stays in the
    first question only. The merged record's id joins the ids with ``+``, so a refusal names them all.
    Records of any other shape pass through unchanged; output order follows each group's first record."""
    rng = random.Random(seed)
    # One group per (image, language); any other record is a group of its own, keyed by its position.
    groups: dict[tuple[str, str] | int, list[dict]] = {}
    for n, r in enumerate(records):
        key = (r["_images"][0], str(r.get("lang", ""))) if _single_turn_image(r) else n
        groups.setdefault(key, []).append(r)
    merged: list[dict] = []
    for group in groups.values():
        rng.shuffle(group)
        for i in range(0, len(group), max_turns):
            chunk = group[i:i + max_turns]
            if len(chunk) == 1:
                merged.append(chunk[0])
                continue
            turns = list(chunk[0]["conversations"])
            for r in chunk[1:]:
                human, answer = r["conversations"]
                question = PLACEHOLDER.sub("", str(human["value"]), count=1).strip()
                turns += [{**human, "value": question}, answer]
            merged.append({**chunk[0], "id": "+".join(str(r.get("id")) for r in chunk),
                           "conversations": turns})
    return merged


def check_images(records: list[dict], image_processor
                 ) -> tuple[list[dict], list[Problem], dict[str, torch.Tensor]]:
    """Decode every distinct image once: unreadable ones drop their records (reported), readable ones
    are kept as preprocessed pixel tensors so no epoch reads a file twice."""
    from tqdm.auto import tqdm

    from doctorsun.data.image import load_image

    pixels: dict[str, torch.Tensor] = {}
    broken: dict[str, str] = {}
    paths = sorted({p for r in records for p in r["_images"]})
    for path in tqdm(paths, desc="images", unit="img", disable=len(paths) < 50):
        try:
            image = load_image(path)
            pixels[path] = image_processor(image, return_tensors="pt")["pixel_values"][0]
        except DoctorSunError as exc:
            broken[path] = str(exc)
    good, problems = [], []
    for r in records:
        bad = [p for p in r["_images"] if p in broken]
        if bad:
            problems.append((str(r.get("id")), broken[bad[0]]))
        else:
            good.append(r)
    return good, problems, pixels


@dataclass
class SampleSet(Dataset):
    """Tokenised samples (or packed rows of them) with their images, ready for ``collate``."""

    rows: list[dict[str, Any]]
    """Each: ``input_ids``, ``labels``, optional ``position_ids`` (packed), ``images`` (paths in order)."""
    pixels: dict[str, torch.Tensor] = field(default_factory=dict)
    """Preprocessed image tensors by path."""

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        item = {k: torch.tensor(row[k]) for k in ("input_ids", "labels", "position_ids") if k in row}
        if row["images"]:
            item["pixel_values"] = torch.stack([self.pixels[p] for p in row["images"]])
        return item

    @property
    def lengths(self) -> list[int]:
        return [len(r["input_ids"]) for r in self.rows]

    def tokens(self) -> int:
        return sum(self.lengths)


def build_sample_set(data: DataConfig, processor, image_seq_length: int, seed: int
                     ) -> tuple[SampleSet, list[Problem], dict[str, Any]]:
    """Everything between the recipe's data section and a dataset the trainer can iterate."""
    records, problems, report = read_mixed(data, seed)
    records, image_problems, pixels = check_images(records, processor.image_processor)
    problems += image_problems
    tok = ChatTokenizer(processor, image_seq_length, max_length=data.max_length, label_scope=data.label_scope)
    samples, refused = tok.tokenize_all(records)
    problems += refused
    if not samples:
        raise DoctorSunError(f"every training record was refused ({len(problems)} problems; first: "
                             f"{problems[0] if problems else '-'})")
    if data.packing:
        rows = pack(samples, data.max_length)
        for row in rows:
            row["images"] = [p for i in row.pop("sources") for p in samples[i]["record"]["_images"]]
    else:
        rows = [{"input_ids": s["input_ids"], "labels": s["labels"], "images": s["record"]["_images"]}
                for s in samples]
    report = {**report, "samples": len(samples), "rows": len(rows), "refused": len(problems)}
    if problems:
        log.warning("%d record(s) skipped; first: %s: %s", len(problems), *problems[0])
    return SampleSet(rows, pixels), problems, report


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

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self._flat(items) if self.padding_free else self._padded(items)
        pixels = [it["pixel_values"] for it in items if "pixel_values" in it]
        if pixels:
            batch["pixel_values"] = torch.cat(pixels)  # (n_images, C, H, W) in placeholder order
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
