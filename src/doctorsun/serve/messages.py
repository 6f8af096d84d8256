"""OpenAI chat messages -> a Doctor Sun conversation and its images.

Images come as ``image_url`` parts holding ``data:`` URLs (PNG, JPEG, WebP or DICOM as
``application/dicom``); the server never fetches a URL. Every image is read by the one image reader
(``doctorsun.data.image.load_image``), so a DICOM is windowed exactly as in training and evaluation.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from doctorsun.data.image import load_image  # also silences pydicom's logger before any DICOM is read
from doctorsun.data.pixels import safe_reason
from doctorsun.errors import DoctorSunError

if TYPE_CHECKING:
    from doctorsun.model.generate import Engine

# MIME type -> file suffix the image reader recognises.
IMAGE_TYPES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/webp": ".webp",
    "application/dicom": ".dcm",
    "image/dicom": ".dcm",
}
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class RequestError(DoctorSunError):
    """A client mistake: answered with a 4xx and an OpenAI-style error body."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.param, self.code, self.status, self.headers = param, code, status, headers


DECODING = threading.BoundedSemaphore(2)
"""Images being decoded at once in the whole server: with at most two, decoded pixels in flight stay
under 2 x the per-image limit however many requests arrive together."""


def to_conversation(messages: list[dict[str, Any]], max_images: int, max_pixels: int,
                    max_request_pixels: int | None = None):
    """``(conversation, images)`` for ``Engine.generate``; raises ``RequestError`` naming the bad part.
    ``max_request_pixels`` bounds the decoded pixels of all the request's images together."""
    total = 0
    if not messages:
        raise RequestError("messages must not be empty", param="messages")
    conversation, images = [], []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        role = ROLES.get(msg.get("role"))
        if role is None:
            raise RequestError(
                f"{where}.role {msg.get('role')!r} is not system, user or assistant", param=f"{where}.role"
            )
        content = msg.get("content")
        if content is None:
            content = ""
        if isinstance(content, str):
            conversation.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise RequestError(
                f"{where}.content must be a string or a list of parts", param=f"{where}.content"
            )
        parts = []
        for j, part in enumerate(content):
            at = f"{where}.content[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": str(part.get("text", ""))})
            elif kind == "image_url":
                if role != "user":
                    raise RequestError(f"{at}: images are accepted in user messages only", param=at)
                if len(images) >= max_images:
                    raise RequestError(
                        f"{at}: more than {max_images} images in one request",
                        param=at,
                        code="too_many_images",
                    )
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                image = decode_image(url, at, max_pixels)
                total += image.width * image.height
                if max_request_pixels is not None and total > max_request_pixels:
                    raise RequestError(f"{at}: the request's images hold more than {max_request_pixels} pixels "
                                       "together", param=at, code="image_too_large")
                images.append(image)
                parts.append({"type": "image"})
            else:
                raise RequestError(
                    f"{at}: unsupported content part type {kind!r} (text, image_url)", param=at
                )
        conversation.append({"role": role, "content": parts})
    if not any(m["role"] == "user" for m in conversation):
        raise RequestError("messages need at least one user message", param="messages")
    return conversation, images


def decode_image(url: Any, where: str, max_pixels: int):
    """A ``data:`` URL -> RGB PIL image, refusing other URLs, unknown types and oversized images."""
    if not isinstance(url, str) or not url.startswith("data:"):
        raise RequestError(
            f"{where}: only data: URLs are accepted (base64 PNG, JPEG, WebP or DICOM)",
            param=where,
            code="invalid_image_url",
        )
    header, sep, payload = url.partition(",")
    mime = header[5:].split(";")[0].strip().lower()
    if not sep or ";base64" not in header.lower():
        raise RequestError(
            f"{where}: the data URL must be base64 encoded", param=where, code="invalid_image_url"
        )
    if mime not in IMAGE_TYPES:
        raise RequestError(
            f"{where}: image type {mime!r} is not supported; use one of {sorted(IMAGE_TYPES)}",
            param=where,
            code="unsupported_image_type",
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(
            f"{where}: bad base64 data ({exc})", param=where, code="invalid_image_url"
        ) from exc
    suffix = IMAGE_TYPES[mime]
    pixels = _pixel_count(data, suffix, where)
    if pixels > max_pixels:
        raise RequestError(
            f"{where}: image has {pixels} pixels, over the server's limit of {max_pixels}",
            param=where,
            code="image_too_large",
        )
    return _read(data, suffix, where, max_pixels)


def _pixel_count(data: bytes, suffix: str, where: str) -> int:
    """Pixels in the image, read from its header only (nothing is decoded yet)."""
    try:
        if suffix == ".dcm":
            import pydicom

            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
            return int(ds.Rows) * int(ds.Columns)  # one frame: the reader takes a single frame
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return im.width * im.height
    except Exception as exc:  # safe_reason: decoders can quote DICOM element values (patient data)
        raise RequestError(
            f"{where}: cannot read the image ({safe_reason(exc)})", param=where, code="invalid_image"
        ) from None


def _read(data: bytes, suffix: str, where: str, max_pixels: int):
    with DECODING, _as_file(data, suffix) as path:
        try:
            return load_image(path, max_pixels=max_pixels)
        except DoctorSunError as exc:  # name the request's part, not our private temp path
            message = str(exc).replace(path, "the image")
            raise RequestError(f"{where}: {message}", param=where, code="invalid_image") from None


@contextmanager
def _as_file(data: bytes, suffix: str):
    """A path holding ``data`` for the path-based image reader. On Linux the bytes stay in memory (a
    memfd behind a symlink that carries the suffix), so an uploaded DICOM never lands on disk."""
    tmp = tempfile.mkdtemp(prefix="doctorsun-upload-")
    path = os.path.join(tmp, f"image{suffix}")
    fd = -1
    try:
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("doctorsun-upload")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.symlink(f"/proc/self/fd/{fd}", path)
        else:
            with open(path, "wb") as f:
                f.write(data)
        yield path
    finally:
        if fd >= 0:
            os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)


def check_context(engine: Engine, tokenizer, conversation, n_images: int, max_new_tokens: int) -> None:
    """Refuse a prompt that, with ``max_tokens`` more, would not fit the LLM's context."""
    text_config = getattr(engine.model.config, "text_config", engine.model.config)
    context = getattr(text_config, "max_position_embeddings", None)
    if not context:
        return
    text = engine.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    n += n_images * (max(1, getattr(engine.model.config, "image_seq_length", 1)) - 1)
    if n + max_new_tokens > context:
        raise RequestError(
            f"the prompt ({n} tokens) plus max_tokens ({max_new_tokens}) is over the model's "
            f"context of {context} tokens",
            param="messages",
            code="context_length_exceeded",
        )
