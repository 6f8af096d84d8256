"""The import contract (``tests/import_contract.py``) holds for the package, and catches what it forbids."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.import_contract import violations

SRC = Path(__file__).resolve().parents[1] / "src"


def test_the_package_keeps_its_import_contract():
    assert violations(SRC) == []


@pytest.fixture()
def tree(tmp_path):
    """A copy of the package to plant imports in."""
    shutil.copytree(SRC / "doctorsun", tmp_path / "doctorsun", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def plant(tree: Path, module: str, code: str) -> None:
    path = tree / "doctorsun" / module
    path.write_text(path.read_text(encoding="utf-8") + "\n\n" + code + "\n", encoding="utf-8")


@pytest.mark.parametrize("module, code, expected", [
    # hidden inside a function, as wrong-way imports used to be
    ("model/assemble.py", "def _planted():\n    from doctorsun.serve.api import create_app\n",
     "wrong-way import doctorsun.model.assemble -> doctorsun.serve.api"),
    ("model/generate.py", "def _planted():\n    from doctorsun.data.image import load_image\n",
     "wrong-way import doctorsun.model.generate -> doctorsun.data.image"),
    ("data/tokenize.py", "from doctorsun.model.generate import Engine\n",
     "wrong-way import doctorsun.data.tokenize -> doctorsun.model.generate"),
    ("eval/runner.py", "import doctorsun.serve.batching\n",
     "wrong-way import doctorsun.eval.runner -> doctorsun.serve.batching"),
    ("data/io.py", "def _planted():\n    from doctorsun.mini import build_mini\n",
     "wrong-way import doctorsun.data.io -> doctorsun.mini"),
    ("files.py", "from doctorsun.model import checkpoint\n",
     "wrong-way import doctorsun.files -> doctorsun.model.checkpoint"),
])
def test_a_planted_wrong_way_import_is_reported(tree, module, code, expected):
    plant(tree, module, code)
    found = violations(tree)
    assert [line for line in found if "wrong-way" in line and expected in line], found
    # anything else it reports is a cycle the planted import closes (files -> model -> files)
    assert all(expected in line or line.startswith("import cycle:") for line in found), found


def test_a_planted_cycle_is_reported(tree):
    plant(tree, "data/pixels.py", "def _planted():\n    from doctorsun.data.image import load_image\n")
    assert violations(tree) == [
        "import cycle: doctorsun.data.dicom <-> doctorsun.data.image <-> doctorsun.data.nifti <-> "
        "doctorsun.data.pixels"
    ]


def test_relative_imports_are_resolved(tree):
    plant(tree, "model/io.py", "def _planted():\n    from ..serve import api\n")
    last = len((tree / "doctorsun/model/io.py").read_text(encoding="utf-8").splitlines())
    expected = f"doctorsun/model/io.py:{last - 1}: wrong-way import doctorsun.model.io -> doctorsun.serve.api"
    assert expected in violations(tree)
