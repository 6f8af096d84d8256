"""Atomic writes: the one way DoctorSun puts a file or a folder on disk.

Everything is first written to a uniquely named temporary path beside the target (same filesystem, so
the final ``os.replace`` is one atomic rename) and renamed into place only once complete. A crash or an
error leaves the old target as it was and removes the temporary path, so no reader ever sees half a
file, and a resumed run never picks up a torn checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a fresh temporary file path beside ``path``; on success it replaces ``path``.

    ``suffix`` lets writers that choose a format by extension (matplotlib, pydicom) see the right one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files: a shared output folder must stay readable
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON (non-ASCII kept as is) with a final newline, atomically."""
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@contextmanager
def atomic_dir(out: str | Path, prefix: str = "tmp") -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``out``; on success it replaces ``out`` (an existing ``out``
    is moved aside first and removed after), on failure it is removed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.{prefix}-"))
    tmp.chmod(0o755)
    try:
        yield tmp
        readable(tmp)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def readable(folder: Path) -> None:
    """Give every file under ``folder`` read permission for group and others: writers that stage through
    ``mkstemp`` (safetensors shards among them) leave 0600 files that other users of a shared model or
    data folder could not read."""
    for f in folder.rglob("*"):
        if f.is_file() and not f.is_symlink():
            mode = f.stat().st_mode & 0o7777
            if mode & 0o044 != 0o044:
                f.chmod(mode | 0o044)


def replace_dir(src: Path, out: Path) -> None:
    """Move the complete folder ``src`` to ``out``, replacing what is there."""
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.replace(out, old / "x")
        os.replace(src, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, out)


def cache_dir() -> Path:
    """Where DoctorSun keeps what it can rebuild (converted models, prepared data): ``$DOCTORSUN_CACHE``
    or ``~/.cache/doctorsun``."""
    return Path(os.environ.get("DOCTORSUN_CACHE", Path.home() / ".cache" / "doctorsun"))


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex of a file's bytes, read a MiB at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(path: str | Path, block: int = 1 << 20) -> str:
    """A cheap content fingerprint of a file: its size and a hash of its first and last MiB (a change in
    the middle that keeps the size is the one change it misses); for a folder, of every file in it."""
    path = Path(path)
    if path.is_dir():
        parts = [f"{p.relative_to(path).as_posix()}:{fingerprint(p)}" for p in sorted(path.rglob("*")) if p.is_file()]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(block))
        if size > block:
            f.seek(max(block, size - block))
            h.update(f.read(block))
    return h.hexdigest()


def remove_leftovers(folder: str | Path) -> list[Path]:
    """Delete what killed atomic writes left in ``folder`` (``.NAME.tmp-*``, ``.NAME.old-*``, ``.staging``);
    returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.name == ".staging"
             or (p.name.startswith(".") and (".tmp-" in p.name or ".old-" in p.name or p.name.endswith(".tmp")))]
    for p in found:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    return found


def save_figure(fig, path: str | Path, **savefig_kwargs) -> Path:
    """Write a matplotlib figure atomically (the format from ``path``'s suffix) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_path(path, suffix=path.suffix or ".png") as tmp:
            fig.savefig(tmp, **savefig_kwargs)
    finally:
        plt.close(fig)
    return path
