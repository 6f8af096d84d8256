"""Content hashes of images and texts, and the near-duplicate index that de-duplication and
decontamination share.

- **Pixel hash**: SHA-256 of the decoded 8-bit RGB pixels and the size (``load_image``, so a DICOM, a PNG
  and a lossless re-encoding of the same picture hash alike; the file's bytes do not matter).
- **Perceptual hash**: the 64-bit DCT hash of ``imagehash.phash``; two images within ``threshold`` bits
  (Hamming distance) are near duplicates (a JPEG re-encoding, a 1-pixel resize, a small crop).
- **Text key**: the turns after normalisation (NFKC, case folded, punctuation and whitespace removed, the
  image placeholder and the prompt builder's fixed instructions taken out), so the same question and answer
  written by two sets with different punctuation or prompt wording match.

``near_pairs`` finds every pair of hashes within ``threshold`` bits without comparing all against all
(multi-index hashing): the 64 bits are cut into ``m`` bands, two hashes within ``threshold`` bits are within
``threshold // m`` bits on at least one band (pigeonhole), so only hashes that meet on a probed band value
are compared, all of it vectorised in numpy. ``benchmarks/corpus_scale.py`` measures its growth.

Hashes are cached in SQLite by file path, size and modification time, so a re-build decodes nothing twice.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from doctorsun.data.prompts import CAPTION_REQUEST, CLOSED_SUFFIX, MCQ_SUFFIX, OPTIONS_HEADER
from doctorsun.model.chat import IMAGE_TOKEN

BITS = 64
DEFAULT_THRESHOLD = 6
"""Hamming distance (of 64 bits) up to which two images are near duplicates. Measured on the real images
installed here (pydicom's and scikit-image's, 200 px and up): a 1-pixel resize moves the hash 0-2 bits, a
JPEG re-encoding at quality 75 0-6 bits, while two different pictures were 18 or more bits apart. Images
under ~100 px of flat colour have unstable hashes (a resize can move them 24 bits): raise the threshold
only with care, since medical images of one kind look alike."""


@dataclass(frozen=True)
class ImageHash:
    """One decoded image's hashes."""

    pixels: str
    """SHA-256 hex of the decoded RGB pixels and the size."""
    phash: int
    """64-bit perceptual hash."""


def hash_image(path: str | Path) -> ImageHash:
    """Decode ``path`` with ``load_image`` and hash it; raises ``DoctorSunError`` naming the file."""
    import imagehash
    import numpy as np

    from doctorsun.data.image import load_image

    image = load_image(path)
    data = np.asarray(image, dtype=np.uint8)
    digest = hashlib.sha256(f"{image.width}x{image.height}:".encode() + data.tobytes()).hexdigest()
    bits = imagehash.phash(image).hash.flatten()
    return ImageHash(digest, int("".join("1" if b else "0" for b in bits), 2))


class HashCache:
    """``ImageHash`` by (resolved path, size, mtime) in a SQLite file; thread safe. ``None``: no cache."""

    def __init__(self, path: str | Path | None):
        self._db = None
        self._lock = threading.Lock()
        self._pending = 0
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INTEGER, "
                             "mtime INTEGER, pixels TEXT, phash TEXT)")

    @staticmethod
    def _stamp(path: Path) -> tuple[str, int, int]:
        st = path.stat()
        return str(path.resolve()), st.st_size, st.st_mtime_ns

    def get(self, path: Path) -> ImageHash | None:
        if self._db is None:
            return None
        key, size, mtime = self._stamp(path)
        with self._lock:
            row = self._db.execute("SELECT size, mtime, pixels, phash FROM hashes WHERE path = ?",
                                   (key,)).fetchone()
        if row is None or row[0] != size or row[1] != mtime:
            return None
        return ImageHash(row[2], int(row[3], 16))

    def put(self, path: Path, value: ImageHash) -> None:
        if self._db is None:
            return
        key, size, mtime = self._stamp(path)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?, ?)",
                             (key, size, mtime, value.pixels, f"{value.phash:016x}"))
            self._pending += 1
            if self._pending >= 1000:  # a killed run keeps what it hashed, a thousand images at a time
                self._db.commit()
                self._pending = 0

    def close(self) -> None:
        if self._db is not None:
            with self._lock:
                self._db.commit()
                self._db.close()
            self._db = None


def hash_images(paths: Iterable[str | Path], *, workers: int | None = None, cache: HashCache | None = None,
                progress: str | None = None) -> tuple[dict[str, ImageHash], dict[str, str]]:
    """Hash each distinct path once, ``workers`` threads in parallel (decoders release the GIL).

    Returns ``(hashes, unreadable)``: path -> ``ImageHash``, and path -> why it could not be decoded."""
    from tqdm.auto import tqdm

    distinct = sorted({str(p) for p in paths})
    cache = cache or HashCache(None)

    def one(path: str):
        p = Path(path)
        try:
            cached = cache.get(p)
            if cached is not None:
                return cached, None
            value = hash_image(p)
            cache.put(p, value)
            return value, None
        except Exception as exc:  # an unreadable image drops its records, never the run
            return None, str(exc)

    hashes: dict[str, ImageHash] = {}
    unreadable: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = pool.map(one, distinct)
        for path, (value, why) in tqdm(zip(distinct, results, strict=True), total=len(distinct),
                                       desc=progress or "hashing images", disable=progress is None,
                                       unit="img"):
            if value is None:
                unreadable[path] = why
            else:
                hashes[path] = value
    return hashes, unreadable


def _plan(threshold: int, n_queries: int, n_stored: int) -> tuple[int, int]:
    """``(bands, radius)`` of the cheapest exact multi-index search: with ``m`` bands, two hashes within
    ``threshold`` bits are within ``threshold // m`` bits on at least one band, so each band is probed at
    every value within that radius. Each probe costs two binary searches per query, and each hash met on a
    probed value about eight array operations to check (measured by ``benchmarks/corpus_scale.py``)."""
    best = None
    for m in range(1, min(threshold + 1, 16) + 1):
        width, radius = BITS // m, threshold // m
        probes = sum(math.comb(width, i) for i in range(radius + 1))
        if probes > 50_000:
            continue
        cost = m * probes * n_queries * (2 * math.log2(n_stored + 1) + 8 * n_stored / 2 ** width)
        if best is None or cost < best[0]:
            best = (cost, m, radius)
    return best[1], best[2]


def _flips(width: int, radius: int) -> Iterator[int]:
    for r in range(radius + 1):
        for bits in itertools.combinations(range(width), r):
            yield sum(1 << b for b in bits)


def near_pairs(queries, stored, threshold: int = DEFAULT_THRESHOLD, *, earlier_only: bool = False):
    """Every ``(query index, stored index, distance)`` with the two 64-bit hashes within ``threshold`` bits,
    as three numpy arrays, found by multi-index hashing (exact: the same pairs as comparing all against all).

    ``earlier_only`` (for ``stored`` = ``queries``): only pairs whose stored index is below the query's.
    Vectorised: each band costs a sort, and each probed value a ``searchsorted`` over all queries, so the
    time grows with N log N and with the pairs found, not with N squared."""
    import numpy as np

    if not 0 <= threshold < BITS:
        raise ValueError(f"threshold must be in 0..{BITS - 1}, not {threshold}")
    q = np.asarray([int(h) for h in queries], dtype=np.uint64)
    s = np.asarray([int(h) for h in stored], dtype=np.uint64)
    empty = np.zeros(0, dtype=np.int64)
    if not len(q) or not len(s):
        return empty, empty, empty
    m, radius = _plan(threshold, len(q), len(s))
    edges = [round(i * BITS / m) for i in range(m + 1)]
    found_q, found_s = [], []
    for lo, hi in itertools.pairwise(edges):
        mask = np.uint64((1 << (hi - lo)) - 1)
        sb = (s >> np.uint64(lo)) & mask
        order = np.argsort(sb, kind="stable")
        sorted_sb = sb[order]
        qb = (q >> np.uint64(lo)) & mask
        for flip in _flips(hi - lo, radius):
            keys = qb ^ np.uint64(flip)
            left = np.searchsorted(sorted_sb, keys, "left")
            count = np.searchsorted(sorted_sb, keys, "right") - left
            hit = np.nonzero(count)[0]
            if not hit.size:
                continue
            n = count[hit]
            qi = np.repeat(hit, n)
            si = order[np.repeat(left[hit], n) + np.arange(qi.size) - np.repeat(np.cumsum(n) - n, n)]
            keep = np.bitwise_count(q[qi] ^ s[si]) <= threshold  # checked per probe: few survive
            if earlier_only:
                keep &= si < qi
            found_q.append(qi[keep])
            found_s.append(si[keep])
    if not found_q:
        return empty, empty, empty
    pair = np.unique(np.concatenate(found_q).astype(np.int64) * len(s) + np.concatenate(found_s))
    qi, si = pair // len(s), pair % len(s)
    return qi, si, np.bitwise_count(q[qi] ^ s[si]).astype(np.int64)


def nearest(queries, stored, threshold: int = DEFAULT_THRESHOLD) -> dict[int, tuple[int, int]]:
    """query index -> ``(distance, stored index)`` of its nearest stored hash within ``threshold`` (ties:
    the lowest stored index)."""
    qi, si, d = near_pairs(queries, stored, threshold)
    best: dict[int, tuple[int, int]] = {}
    for a, b, dist in zip(qi.tolist(), si.tolist(), d.tolist(), strict=True):
        if a not in best or (dist, b) < best[a]:
            best[a] = (dist, b)
    return best


_FIXED = sorted({*CLOSED_SUFFIX.values(), *MCQ_SUFFIX.values(), *OPTIONS_HEADER.values()}, key=len, reverse=True)
_DROP = re.compile(r"[\s\W_]+", re.UNICODE)


def normalise_text(text: str) -> str:
    """Text reduced to what carries meaning: NFKC, case folded, the image placeholder and the prompt builder's
    fixed instructions removed, punctuation, symbols and whitespace dropped (CJK and digits kept)."""
    text = unicodedata.normalize("NFKC", text or "").replace(IMAGE_TOKEN, " ")
    for fixed in _FIXED:
        text = text.replace(unicodedata.normalize("NFKC", fixed), " ")
    return _DROP.sub("", text.casefold())


def text_key(record: dict) -> bytes:
    """A 128-bit hash of the record's normalised question(s) and answer(s), role by role; the caption
    request counts as no question (two captions of one image differ only in their answers)."""
    requests = {normalise_text(t) for t in CAPTION_REQUEST.values()}
    parts = []
    for turn in record.get("conversations") or []:
        value = normalise_text(str(turn.get("value", "")))
        parts.append(f"{turn.get('from')}:{'' if value in requests else value}")
    return hashlib.sha256("\x1f".join(parts).encode()).digest()[:16]
