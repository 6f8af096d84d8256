"""The SunMed-VL record: one conversation about zero or more images, as a plain dict.

```
{"id": str, "image": str | [str] | absent, "conversations": [{"from": "human"|"gpt", "value": str}],
 "lang": "en"|"zh", "source": str, "task": TASK, "answer_type"?: "OPEN"|"CLOSED", "choices"?: [str],
 "meta"?: {...}}
```
A human turn holds ``<image>`` where an image goes (one placeholder per image); image paths are
relative to an image root. ``validate`` returns every reason a record is unusable, so a checker can
report them all at once instead of stopping at the first.
"""

from __future__ import annotations

import re
from pathlib import Path

from doctorsun.errors import DoctorSunError
from doctorsun.model.chat import IMAGE_TOKEN

TASKS = ("caption", "vqa-closed", "vqa-open", "mcq", "report", "dialogue", "text")
LANGS = ("en", "zh")
ANSWER_TYPES = ("OPEN", "CLOSED")
ROLES = ("human", "gpt")
REQUIRED = ("id", "conversations", "lang", "source", "task")

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def detect_lang(text: str) -> str:
    """``zh`` when the text holds any CJK ideograph, else ``en`` (the only two languages we carry)."""
    return "zh" if _CJK.search(text or "") else "en"


def image_paths(record: dict) -> list[str]:
    """The record's images as a list (``image`` may be absent, one path, or a list)."""
    image = record.get("image")
    if image is None:
        return []
    return [image] if isinstance(image, str) else list(image)


def resolve_image(path: str, image_root: str | Path | None) -> Path:
    return Path(path) if image_root is None else Path(image_root) / path


def answer(record: dict) -> str:
    """The gold answer: the last ``gpt`` turn."""
    for turn in reversed(record["conversations"]):
        if turn.get("from") == "gpt":
            return turn["value"]
    raise DoctorSunError(f"record {record.get('id')!r} has no gpt turn")


def validate(record, image_root: str | Path | None = None, check_images: bool = False) -> list[str]:
    """Every reason ``record`` is unusable (empty when it is fine).

    Image files are looked up when ``image_root`` is given or ``check_images`` is set; with
    ``check_images`` they are also decoded with ``load_image`` (slower: every file is read).
    """
    if not isinstance(record, dict):
        return [f"not a JSON object but {type(record).__name__}"]
    reasons = [f"missing field {name!r}" for name in REQUIRED if name not in record]
    if "id" in record and (not isinstance(record["id"], str) or not record["id"].strip()):
        reasons.append("id must be a non-empty string")
    if "lang" in record and record["lang"] not in LANGS:
        reasons.append(f"unknown lang {record['lang']!r} (known: {', '.join(LANGS)})")
    if "task" in record and record["task"] not in TASKS:
        reasons.append(f"unknown task {record['task']!r} (known: {', '.join(TASKS)})")
    if "source" in record and (not isinstance(record["source"], str) or not record["source"].strip()):
        reasons.append("source must be a non-empty string")
    if "answer_type" in record and record["answer_type"] not in ANSWER_TYPES:
        reasons.append(f"answer_type must be OPEN or CLOSED, not {record['answer_type']!r}")
    if "meta" in record and not isinstance(record["meta"], dict):
        reasons.append("meta must be an object")
    reasons += _check_choices(record)
    turn_reasons = _check_turns(record["conversations"]) if "conversations" in record else ["no turns"]
    turns_ok = not turn_reasons
    if "conversations" in record:
        reasons += turn_reasons
    image_reasons = _check_image_field(record)
    reasons += image_reasons
    if turns_ok and not image_reasons:
        reasons += _check_placeholders(record)
        if image_root is not None or check_images:
            reasons += _check_image_files(record, image_root, check_images)
    return reasons


def _check_choices(record: dict) -> list[str]:
    if "choices" not in record:
        return ["mcq record has no choices"] if record.get("task") == "mcq" else []
    choices = record["choices"]
    if not isinstance(choices, list) or not all(isinstance(c, str) and c.strip() for c in choices):
        return ["choices must be a list of non-empty strings"]
    if len(choices) < 2:
        return [f"choices has {len(choices)} option(s), at least 2 needed"]
    return []


def _check_turns(turns) -> list[str]:
    if not isinstance(turns, list) or not turns:
        return ["conversations must be a non-empty list"]
    reasons = []
    for i, turn in enumerate(turns, 1):
        if not isinstance(turn, dict) or turn.get("from") not in ROLES:
            reasons.append(f"turn {i} needs 'from' = human or gpt")
        elif not isinstance(turn.get("value"), str) or not turn["value"].strip():
            reasons.append(f"turn {i} ({turn['from']}) is empty")
        elif "\ufffd" in turn["value"]:
            reasons.append(f"turn {i} ({turn['from']}) holds bytes that were not UTF-8 text")
    if reasons:
        return reasons
    if turns[0]["from"] != "human":
        reasons.append("first turn is not from human")
    for i in range(1, len(turns)):
        if turns[i]["from"] == turns[i - 1]["from"]:
            reasons.append(f"turns do not alternate: turns {i} and {i + 1} are both {turns[i]['from']}")
            break
    if turns[-1]["from"] != "gpt":
        reasons.append("last turn is not from gpt (no answer)")
    return reasons


def _check_image_field(record: dict) -> list[str]:
    image = record.get("image")
    if image is None:
        return []
    paths = [image] if isinstance(image, str) else image
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p.strip() for p in paths):
        return ["image must be a non-empty path or a non-empty list of paths"]
    return [f"image path {p} leaves the image root (paths are relative to it, without ..)"
            for p in paths if leaves_root(p)]


def leaves_root(path: str) -> bool:
    """Whether a record's image path points outside its image root: absolute, or climbing out with ``..``.
    (A link the operator placed inside the root is followed: that is where they put the images.)"""
    p = Path(path)
    if p.is_absolute() or p.drive:
        return True
    depth = 0
    for part in p.parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return True
    return False


def _check_placeholders(record: dict) -> list[str]:
    n_images = len(image_paths(record))
    n_tokens = sum(t["value"].count(IMAGE_TOKEN) for t in record["conversations"])
    in_gpt = sum(t["value"].count(IMAGE_TOKEN) for t in record["conversations"] if t["from"] == "gpt")
    reasons = []
    if n_tokens != n_images:
        reasons.append(f"{n_tokens} {IMAGE_TOKEN} placeholder(s) for {n_images} image(s)")
    if in_gpt:
        reasons.append(f"{IMAGE_TOKEN} placeholder in a gpt turn")
    return reasons


def _check_image_files(record: dict, image_root, decode: bool) -> list[str]:
    reasons = []
    for rel in image_paths(record):
        path = resolve_image(rel, image_root)
        if not path.is_file():
            reasons.append(f"missing image {rel} (looked for {path})")
        elif decode and (why := unreadable_image(rel, path)):
            reasons.append(why)
    return reasons


def unreadable_image(rel: str, path: Path) -> str | None:
    """Why the image at ``path`` (``rel`` in the record) cannot be decoded, or ``None`` when it can."""
    from doctorsun.data.image import load_image

    try:
        load_image(path)
    except Exception as exc:  # any decoder failure makes the image unusable, not the run
        return f"unreadable image {rel}: {exc}"
    return None
