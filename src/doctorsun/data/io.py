"""Reading and writing SunMed-VL records: LLaVA JSON lists, JSONL, ShareGPT, Hugging Face datasets.

Readers never stop at a bad item: a JSONL line that is not JSON, or a record that fails validation,
becomes a ``(where, reason)`` problem and every good record still loads. Writers are atomic (a
temporary file renamed into place), so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from doctorsun.data.records import detect_lang, image_paths, validate
from doctorsun.errors import DoctorSunError
from doctorsun.files import atomic_dir, write_text

log = logging.getLogger(__name__)

Problem = tuple[str, str]
"""(record id, or ``line N`` / ``item N`` when there is no id; the reason)."""

ROLE_TO_FROM = {"user": "human", "human": "human", "assistant": "gpt", "gpt": "gpt"}
FROM_TO_ROLE = {"human": "user", "gpt": "assistant"}
# SunMed-VL fields carried beside ShareGPT's messages/images, so a round trip loses nothing
EXTRA_FIELDS = ("id", "lang", "source", "task", "answer_type", "choices", "meta")
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
CARD = "card.json"
"""The data card ``doctorsun data build`` writes beside its shards; a folder holding one reads as its shards."""


def read_raw(path: str | Path) -> tuple[list[tuple[str, object]], list[Problem]]:
    """Items of a .json / .jsonl file or a saved HF dataset, each with where it was found, unvalidated.

    ShareGPT items (``messages``) are turned into SunMed-VL records on the way in.
    """
    items, problems = [], []
    for where, item, problem in iter_raw(path):
        if problem:
            problems.append((where, problem))
        else:
            items.append((where, item))
    return items, problems


def iter_raw(path: str | Path) -> Iterator[tuple[str, object, str | None]]:
    """``(where, item, problem)`` for each item of a file, streamed: JSONL line by line, a JSON list
    item by item (``ijson``, so the file is never held whole), a saved HF dataset row by row. A
    problem (an item that cannot be read) comes with the item's label; every other item still loads."""
    path = Path(path)
    if path.is_dir() and (path / CARD).is_file():
        for shard in corpus_shards(path):
            for where, item, problem in iter_raw(shard):
                yield f"{shard.name} {where}", item, problem
        return
    if path.is_dir():
        yield from _iter_hf_dir(path)
        return
    if not path.is_file():
        raise DoctorSunError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        items = json_lines(path)
    elif suffix == ".json":
        items = _iter_json_list(path)
    else:
        raise DoctorSunError(f"unknown data file type {path} (expected .json, .jsonl or a saved dataset dir)")
    for where, item, problem in items:
        if problem is None and isinstance(item, dict) and "messages" in item:
            try:
                item = from_sharegpt(item, default_source=path.stem, index=where)
            except DoctorSunError as exc:
                yield _label(item, where), None, str(exc)
                continue
        yield where, item, problem


def corpus_shards(folder: str | Path) -> list[Path]:
    """The record shards of a corpus folder written by ``doctorsun data build``, in order (from its card)."""
    folder = Path(folder)
    try:
        card = json.loads((folder / CARD).read_text(encoding="utf-8"))
        names = [s["file"] for s in card["shards"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DoctorSunError(f"{folder / CARD} is not a data card with a shards list: {exc}") from None
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DoctorSunError(f"{folder}: shard(s) named by its card are missing: {', '.join(missing)}")
    return [folder / n for n in names]


def expand_corpora(paths: Iterable[str | Path]) -> list[str]:
    """``paths`` with each built corpus folder replaced by its shards (so a stream can hand them to
    different processes and workers); other paths as they are."""
    out = []
    for p in paths:
        is_corpus = Path(p).is_dir() and (Path(p) / CARD).is_file()
        out += [str(s) for s in corpus_shards(p)] if is_corpus else [str(p)]
    return out


def split_path(data: str | Path, split: str | None = None) -> tuple[Path, Path]:
    """What ``read_split`` reads for ``data`` and ``split``, and the image root: ``(path, image root)``."""
    data = Path(data)
    if data.is_dir() and (data / f"{split or 'test'}.jsonl").is_file():
        data = data / f"{split or 'test'}.jsonl"
    return data, data if data.is_dir() else data.parent


def read_split(data: str | Path, split: str | None = None) -> tuple[list[dict], list[Problem], Path, Path]:
    """A SunMed-VL file (images relative to its folder), a folder holding ``{split}.jsonl`` (default
    ``test``), a built corpus folder, or a saved Hugging Face dataset folder (images relative to it).

    Returns ``(records, problems, image_root, the path read)``."""
    path, root = split_path(data, split)
    records, problems = read_records(path)
    return records, problems, root, path


def iter_records(path: str | Path, *, image_root: str | Path | None = None,
                 check_images: bool = False) -> Iterator[tuple[str, dict | None, str | None]]:
    """``(label, record, None)`` for each valid record of a file, ``(label, None, reason)`` for each
    item that is not, streamed (see ``iter_raw``)."""
    for where, item, problem in iter_raw(path):
        if problem:
            yield where, None, problem
            continue
        reasons = validate(item, image_root=image_root, check_images=check_images)
        if reasons:
            yield _label(item, where), None, "; ".join(reasons)
        else:
            yield where, item, None


def read_records(path: str | Path, *, image_root: str | Path | None = None,
                 check_images: bool = False) -> tuple[list[dict], list[Problem]]:
    """The valid records of a file and a problem for each item that is not (nothing good is dropped)."""
    records, problems = [], []
    for label, record, problem in iter_records(path, image_root=image_root, check_images=check_images):
        if problem:
            problems.append((label, problem))
        else:
            records.append(record)
    return records, problems


def _label(item, where: str) -> str:
    if isinstance(item, dict) and isinstance(item.get("id"), str | int) and str(item["id"]).strip():
        return str(item["id"])
    return where


def json_lines(path: Path) -> Iterator[tuple[str, object, str | None]]:
    """``(line label, item, problem)`` for each non-empty line of a JSONL file, read as bytes so that one
    bad line (not UTF-8, not JSON, nested too deeply) is one problem and every other line still loads.
    A UTF-8 byte-order mark at the start is skipped."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            label = f"line {n}"
            if n == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield label, None, f"not UTF-8 text (byte {exc.start} of the line)"
                continue
            if not line.strip():
                continue
            try:
                yield label, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield label, None, f"not valid JSON: {exc.msg} at column {exc.colno}"
            except RecursionError:
                yield label, None, "JSON nested too deeply"


def read_text(path: Path) -> str:
    """A whole text file as UTF-8 (a byte-order mark skipped). Bytes that are not UTF-8 become U+FFFD,
    so the file's other items still load; records holding them are refused by ``validate``."""
    raw = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        log.warning("%s: bytes that are not UTF-8 (first at byte %d); the items holding them are skipped",
                    path, exc.start)
        return raw.decode("utf-8", errors="replace")


def load_json(path: Path):
    """A whole JSON file; a clear error (never a traceback) when it cannot be parsed."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DoctorSunError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                             " (a JSON list cannot be read past a syntax error; JSONL can)") from None
    except RecursionError:
        raise DoctorSunError(f"{path} is JSON nested too deeply to read") from None


class _Utf8Bytes:
    """A binary file read as clean UTF-8: a byte-order mark dropped, bytes that are not UTF-8 turned into
    U+FFFD, so only the items holding them are refused (by ``validate``) and the rest of the file loads."""

    def __init__(self, raw):
        self.raw = raw
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")

    def read(self, n: int = -1) -> bytes:
        chunk = self.raw.read(n)
        return self.decoder.decode(chunk, final=not chunk).encode("utf-8")


def _iter_json_list(path: Path) -> Iterator[tuple[str, object, str | None]]:
    """Items of a JSON list (or of ``{"data": [...]}``) one at a time. A syntax error ends the file
    there: the items before it load and the rest is one problem (a JSON list cannot be read past it)."""
    import ijson

    with open(path, "rb") as raw:
        f = _Utf8Bytes(raw)
        head = raw.read(4096).removeprefix(codecs.BOM_UTF8).lstrip()
        raw.seek(0)
        if not head:
            raise DoctorSunError(f"{path} is empty, not a JSON list of records")
        if head[:1] not in (b"[", b"{"):
            raise DoctorSunError(f"{path} must hold a JSON list of records")
        prefix = "item" if head[:1] == b"[" else "data.item"
        n = 0
        try:
            for item in ijson.items(f, prefix, use_float=True):
                yield f"item {n}", item, None
                n += 1
        except ijson.JSONError as exc:
            why = exc.args[0] if exc.args else exc
            exc = (why.decode("utf-8", "replace") if isinstance(why, bytes) else str(why)).splitlines()[0]
            if n == 0:
                raise DoctorSunError(f"{path} is not valid JSON: {exc} (a JSON list cannot be read past "
                                     "a syntax error; JSONL can)") from None
            yield f"item {n}", None, f"not valid JSON from here on ({exc}); the {n} item(s) before it load"
            return
        if n == 0 and prefix == "data.item":
            raise DoctorSunError(f"{path} must hold a JSON list of records (or {{\"data\": [...]}})")


def write_records(records: Iterable[dict], path: str | Path, fmt: str = "llava") -> Path:
    """Write atomically: ``.jsonl`` one record a line, ``.json`` one list; ``fmt="sharegpt"`` writes
    ShareGPT items (with the SunMed-VL fields kept beside them). Chinese is written as is."""
    path = Path(path)
    if fmt not in ("llava", "sharegpt"):
        raise DoctorSunError(f"unknown record format {fmt!r} (llava or sharegpt)")
    rows = [to_sharegpt(r) if fmt == "sharegpt" else r for r in records]
    if path.suffix.lower() == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    elif path.suffix.lower() == ".json":
        text = json.dumps(rows, ensure_ascii=False, indent=1) + "\n"
    else:
        raise DoctorSunError(f"cannot tell the format of {path}: use a .json or .jsonl suffix")
    write_text(path, text)
    return path


# ------------------------------------------------------------------------------------------ ShareGPT
def from_sharegpt(item: dict, default_source: str = "sharegpt", index: str = "item") -> dict:
    """``{"messages": [{"role", "content"}], "images": [...]}`` -> a SunMed-VL record.

    A system message goes to ``meta["system"]``; missing SunMed-VL fields are inferred (language from
    the text, ``dialogue`` for several exchanges).
    """
    messages = item.get("messages")
    if not isinstance(messages, list):
        raise DoctorSunError("ShareGPT item: messages must be a list")
    turns, system = [], None
    for m in messages:
        if not isinstance(m, dict):
            raise DoctorSunError("ShareGPT item: every message must be an object")
        role, content = m.get("role"), m.get("content")
        if role == "system":
            system = content
            continue
        if role not in ROLE_TO_FROM:
            raise DoctorSunError(f"ShareGPT item: unknown role {role!r}")
        turns.append({"from": ROLE_TO_FROM[role], "value": content})
    record = {k: item[k] for k in EXTRA_FIELDS if k in item}
    record.setdefault("id", f"{default_source}-{index.replace(' ', '-')}")
    images = item.get("images") or []
    if images:
        record["image"] = images[0] if len(images) == 1 else list(images)
    record["conversations"] = turns
    text = " ".join(str(t["value"]) for t in turns)
    record.setdefault("lang", detect_lang(text))
    record.setdefault("source", default_source)
    record.setdefault("task", _guess_task(turns, bool(images)))
    if system:
        record.setdefault("meta", {})["system"] = system
    return {k: record[k] for k in ordered_fields(record)}


def to_sharegpt(record: dict) -> dict:
    out = {"messages": [{"role": FROM_TO_ROLE[t["from"]], "content": t["value"]}
                        for t in record["conversations"]]}
    if record.get("image") is not None:
        out["images"] = image_paths(record)
    out.update({k: record[k] for k in EXTRA_FIELDS if k in record})
    return out


def _guess_task(turns: list[dict], has_image: bool) -> str:
    if sum(t["from"] == "gpt" for t in turns) > 1:
        return "dialogue"
    return "vqa-open" if has_image else "text"


def ordered_fields(record: dict) -> list[str]:
    order = ("id", "image", "conversations", "lang", "source", "task", "answer_type", "choices", "meta")
    return [k for k in order if k in record] + [k for k in record if k not in order]


# --------------------------------------------------------------------------- Hugging Face datasets
def to_hf_dataset(records: Iterable[dict]):
    """A ``datasets.Dataset`` with one column type per field: ``images`` is always a list, ``meta`` a
    JSON string (its keys differ between sources, which Arrow cannot hold in one struct)."""
    from datasets import Dataset

    rows = [{"id": r["id"], "images": image_paths(r), "conversations": r["conversations"],
             "lang": r["lang"], "source": r["source"], "task": r["task"],
             "answer_type": r.get("answer_type"), "choices": r.get("choices") or [],
             "meta": json.dumps(r.get("meta") or {}, ensure_ascii=False)} for r in records]
    if not rows:
        raise DoctorSunError("no records to export")
    return Dataset.from_list(rows)


def _from_hf_row(row: dict, where: str) -> dict:
    if "messages" in row:
        return from_sharegpt(row, index=where)
    record = {k: row[k] for k in ("id", "conversations", "lang", "source", "task") if k in row}
    images = row.get("images") if "images" in row else row.get("image")
    if isinstance(images, list) and images:
        record["image"] = images[0] if len(images) == 1 else images
    elif isinstance(images, str) and images:
        record["image"] = images
    if row.get("answer_type"):
        record["answer_type"] = row["answer_type"]
    if row.get("choices"):
        record["choices"] = list(row["choices"])
    meta = row.get("meta")
    if isinstance(meta, str) and meta not in ("", "{}"):
        record["meta"] = json.loads(meta)
    elif isinstance(meta, dict) and meta:
        record["meta"] = meta
    return {k: record[k] for k in ordered_fields(record)}


def save_hf_dataset(records: Iterable[dict], out_dir: str | Path) -> Path:
    """``save_to_disk`` into a fresh folder, renamed into place when complete."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise DoctorSunError(f"output folder already exists: {out_dir}")
    dataset = to_hf_dataset(records)
    with atomic_dir(out_dir) as tmp:
        dataset.save_to_disk(str(tmp))
    return out_dir


def _iter_hf_dir(path: Path) -> Iterator[tuple[str, object, str | None]]:
    if not any((path / m).is_file() for m in HF_MARKERS):
        raise DoctorSunError(f"{path} is a folder but not a saved Hugging Face dataset")
    from datasets import load_from_disk

    dataset = load_from_disk(str(path))
    splits = [(f"{split} row", dataset[split]) for split in dataset] if hasattr(dataset, "keys") else \
        [("row", dataset)]
    for label, rows in splits:
        for i, row in enumerate(rows):
            where = f"{label} {i}"
            try:
                yield where, _from_hf_row(dict(row), where), None
            except (DoctorSunError, json.JSONDecodeError) as exc:
                yield str(row.get("id") or where), None, str(exc)


# --------------------------------------------------------------------------------- image re-rooting
def rebase_images(records: Iterable[dict], from_root: str | Path, to_root: str | Path) -> list[dict]:
    """Copies of ``records`` whose relative image paths, valid under ``from_root``, are valid under
    ``to_root`` (used when records are written into another folder); see ``rebaser``."""
    move = rebaser(from_root, to_root)
    return [move(r) for r in records]


def rebaser(from_root: str | Path, to_root: str | Path) -> Callable[[dict], dict]:
    """A function from a record to its copy whose relative image paths, valid under ``from_root``, are
    valid under ``to_root``.

    Image paths never leave the image root of the file they are written to, so when ``from_root`` is not
    inside ``to_root`` a link ``to_root/NAME.images`` to ``from_root`` is made (once, at the first record with
    an image; reused) and the paths go through it, instead of ``../`` paths that readers would refuse."""
    src, dst = Path(from_root).resolve(), Path(to_root).resolve()
    base = src.relative_to(dst) if src.is_relative_to(dst) else None

    def move(r: dict) -> dict:
        nonlocal base
        r = dict(r)
        if src != dst and r.get("image") is not None:
            if base is None:
                base = image_link(src, dst)
            moved = [p if Path(p).is_absolute() else str(base / p) for p in image_paths(r)]
            r["image"] = moved[0] if isinstance(r["image"], str) else moved
        return r

    return move


def image_link(src: Path, dst: Path) -> Path:
    """A link in ``dst`` to the image folder ``src`` (``src-name.images``, numbered if that name is taken
    by another folder); its name, relative to ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        name = f"{src.name or 'images'}.images" + (f"-{n}" if n > 1 else "")
        link = dst / name
        if link.is_symlink() and Path(os.readlink(link)) == src:
            return Path(name)
        if not link.exists() and not link.is_symlink():
            link.symlink_to(src, target_is_directory=True)
            log.info("image paths go through %s -> %s", link, src)
            return Path(name)
    raise DoctorSunError(f"no free name for a link to {src} in {dst}")
