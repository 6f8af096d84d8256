"""Streaming training data (``data.streaming: true``), for corpora larger than one disk.

The data files are the shards of a ``datasets.IterableDataset``: records are read, filtered and tokenised
as the stream reaches them and never stored. The shard order and a shuffle buffer are seeded
(``data.shuffle_buffer``); ``split_dataset_by_node`` gives each process its own shards (or every n-th
sample when there are fewer shards than processes), and each DataLoader worker takes its own shards of
those. A resumed run replays the same stream to the position it stopped at. General data is interleaved
at ``data.ratio`` (seeded draws: the ratio holds on average, not exactly as in the prepared path).

What needs the whole corpus at once is refused with the reason: ``task_weights``, ``merge_turns`` and
packing. Batches come in stream order (``train.group_by_length`` does not apply), and the run needs
``train.max_steps`` (a stream has no length).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from doctorsun.data.tokenize import ChatTokenizer, SampleError
from doctorsun.errors import DoctorSunError
from doctorsun.train.config import DataConfig

log = logging.getLogger(__name__)


def check_streaming(data: DataConfig, max_steps: int | None) -> None:
    reasons = []
    if data.task_weights:
        reasons.append("data.task_weights (it samples each task from all its records)")
    if data.merge_turns > 1:
        reasons.append("data.merge_turns (it groups records about one image from the whole corpus)")
    if data.packing:
        reasons.append("data.packing")
    if not max_steps:
        reasons.append("a run without train.max_steps (a stream has no length)")
    if reasons:
        raise DoctorSunError("data.streaming cannot be used with " + "; ".join(reasons))


def _samples(files: list[str], image_root: str | None, langs: tuple[str, ...], where: dict | None,
             tok: ChatTokenizer):
    """The generator behind one stream: each file's records, filtered and tokenised. ``datasets`` hands
    each shard (a sub-list of ``files``) to the process or worker that owns it."""
    from doctorsun.train.data import file_records, wanted

    for f in files:
        for label, r, problem, images in file_records(f, image_root):
            if problem:
                log.warning("%s: %s skipped: %s", Path(f).name, label, problem)
                continue
            if not wanted(r, langs, where):
                continue
            try:
                sample = tok({**r, "_images": images})
            except SampleError as exc:
                log.warning("record %s skipped: %s", exc.record_id, exc.reason)
                continue
            yield {"id": str(r["id"]), "input_ids": sample["input_ids"], "labels": sample["labels"],
                   "images": images}


def stream(data: DataConfig, tok: ChatTokenizer, seed: int, rank: int = 0, world_size: int = 1):
    """The samples of ``data`` as a seeded ``datasets.IterableDataset``, this process's part of it."""
    from datasets import IterableDataset, interleave_datasets
    from datasets.distributed import split_dataset_by_node

    from doctorsun.data.io import expand_corpora
    from doctorsun.data.mix import parse_ratio
    from doctorsun.train.data import arrow_features

    features = arrow_features({"id": "string", "input_ids": ["int32"], "labels": ["int32"], "images": ["string"]})

    def part(files: list[str], where: dict | None):
        ds = IterableDataset.from_generator(_samples, features=features, gen_kwargs={
            # Only ``files`` is a list: datasets makes one shard per item of every list argument.
            "files": expand_corpora(files), "image_root": data.image_root, "langs": tuple(data.langs or ()),
            "where": where, "tok": tok})
        return ds.shuffle(seed=seed, buffer_size=data.shuffle_buffer)

    ds = part(data.train, data.where)
    _, per_medical = parse_ratio(data.ratio)
    if data.general and per_medical > 0:
        ds = interleave_datasets([ds, part(data.general, None)], seed=seed,
                                 probabilities=[1 / (1 + per_medical), per_medical / (1 + per_medical)],
                                 stopping_strategy="first_exhausted")
    if data.limit:
        ds = ds.take(data.limit)
    if world_size > 1:
        ds = split_dataset_by_node(ds, rank=rank, world_size=world_size)
    return ds


class StreamSet(torch.utils.data.IterableDataset):
    """The stream as training items: token tensors, images decoded as they come (in DataLoader workers
    when there are any); a sample whose image cannot be read is dropped and reported under ``dropped``."""

    def __init__(self, samples, image_processor):
        self.samples, self.image_processor = samples, image_processor

    def set_epoch(self, epoch: int) -> None:  # a new shard order and shuffle each epoch, still seeded
        self.samples.set_epoch(epoch)

    def __iter__(self):
        from doctorsun.train.data import sample_pixels

        for row in self.samples:
            pixels, dropped = sample_pixels(row["id"], row["images"], self.image_processor)
            if pixels is None:
                yield {"dropped": dropped}
                continue
            item: dict[str, Any] = {"input_ids": torch.tensor(row["input_ids"]), "labels": torch.tensor(row["labels"])}
            if pixels:
                item["pixel_values"] = torch.stack(pixels)
            yield item


def stream_set(data: DataConfig, processor, image_seq_length: int, seed: int, max_steps: int | None) -> StreamSet:
    """The streaming counterpart of ``prepare.build_sample_set`` for this process (accelerate's rank)."""
    from accelerate import PartialState

    check_streaming(data, max_steps)
    tok = ChatTokenizer(processor, image_seq_length, max_length=data.max_length, label_scope=data.label_scope)
    state = PartialState()
    return StreamSet(stream(data, tok, seed, state.process_index, state.num_processes), processor.image_processor)
