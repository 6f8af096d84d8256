"""Hugging Face parquet copies of the image sets (``data/{split}-*.parquet``, images stored inside).

The images are written out once as files, because SunMed-VL records point at image paths.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from doctorsun.errors import DoctorSunError


def parquet_shards(root: Path, split: str) -> list[Path]:
    """``data/{split}-*.parquet`` (the Hub's layout) or ``{split}-*.parquet`` directly under root."""
    shards = sorted(root.glob(f"data/{split}-*.parquet")) or sorted(root.glob(f"{split}-*.parquet"))
    if not shards:
        raise DoctorSunError(f"no {split} parquet shards under {root} (looked for data/{split}-*.parquet)")
    return shards


def has_parquet(root: Path) -> bool:
    return root.is_dir() and bool(list(root.glob("data/*.parquet")) or list(root.glob("*.parquet")))


def read_rows(shards: list[Path]) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for shard in shards:
        rows += pq.read_table(shard).to_pylist()
    return rows


def extract_image(cell, out_dir: Path, stem: str) -> str:
    """Write an HF ``Image`` cell (``{"bytes", "path"}``) to ``out_dir`` and return its file name.

    The suffix comes from the decoded format, not the stored name, and an existing file of the same
    size is reused so that converting twice does not rewrite every image.
    """
    data = cell.get("bytes") if isinstance(cell, dict) else None
    if not data:
        raise ValueError("image cell has no bytes")
    with Image.open(io.BytesIO(data)) as im:
        suffix = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "BMP": ".bmp"}.get(im.format or "", ".png")
    name = f"{stem}{suffix}"
    path = out_dir / name
    if not (path.is_file() and path.stat().st_size == len(data)):
        out_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return name
