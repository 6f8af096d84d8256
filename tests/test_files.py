"""Atomic writes: a failed write leaves the old file or folder as it was and no temporary behind."""

from __future__ import annotations

import json
import stat

import pytest

from doctorsun.files import atomic_dir, atomic_path, write_json, write_text


def test_write_text_and_json_replace_whole_files_readable_by_others(tmp_path):
    target = tmp_path / "sub" / "scores.json"
    write_json(target, {"名": 1})
    write_text(tmp_path / "sub" / "a.txt", "first")
    write_text(tmp_path / "sub" / "a.txt", "second")
    assert json.loads(target.read_text(encoding="utf-8")) == {"名": 1}
    assert "名" in target.read_text(encoding="utf-8")  # non-ASCII kept as is
    assert (tmp_path / "sub" / "a.txt").read_text() == "second"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.txt", "scores.json"]


def test_a_failed_file_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "log.png"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target, suffix=".png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["log.png"]


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as tmp:
        (tmp / "weights").write_text("v1")
        assert not out.exists()  # nothing is visible before the write completes
    with pytest.raises(KeyboardInterrupt), atomic_dir(out) as tmp:
        (tmp / "weights").write_text("v2, half")
        raise KeyboardInterrupt
    assert (out / "weights").read_text() == "v1"
    with atomic_dir(out) as tmp:
        (tmp / "weights").write_text("v2")
    assert (out / "weights").read_text() == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging or old copies left


def test_a_folder_written_through_mkstemp_is_readable_by_others(tmp_path):
    """safetensors and other writers stage through mkstemp (0600); the finished folder is shared."""
    import os
    import tempfile

    out = tmp_path / "model"
    with atomic_dir(out) as tmp:
        fd, name = tempfile.mkstemp(dir=tmp)
        os.close(fd)
        os.rename(name, tmp / "model.safetensors")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x.json").write_text("{}")
        (tmp / "sub" / "x.json").chmod(0o600)
    for f in (out / "model.safetensors", out / "sub" / "x.json"):
        assert stat.S_IMODE(f.stat().st_mode) & 0o044 == 0o044, f


def test_a_saved_model_is_readable_by_others(tmp_path, tiny_model):
    from doctorsun.model import save_model

    out = save_model(*tiny_model, tmp_path / "m")
    weights = list(out.glob("*.safetensors"))
    assert weights and all(stat.S_IMODE(w.stat().st_mode) & 0o044 == 0o044 for w in weights)
