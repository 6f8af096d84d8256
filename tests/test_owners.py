"""One owner per idea, checked on the source: the image placeholder, the visual-token count and atomic
writes each have one definition, and everything else uses it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "doctorsun"


def _code_strings(tree: ast.AST) -> list[ast.Constant]:
    """String constants that are code, not documentation (module, class, function and field docstrings)."""
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value,
                                                                                          ast.Constant)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value,
                                                                                    str) and id(n) not in docs]


def where(predicate) -> list[str]:
    """``file:line`` of every AST node of the package for which ``predicate(node, tree)`` holds."""
    found = []
    for f in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        found += [f"{f.relative_to(PACKAGE)}:{n.lineno}" for n in predicate(tree)]
    return found


def files(lines: list[str]) -> list[str]:
    return [line.split(":")[0] for line in lines]


def test_the_image_placeholder_is_spelled_once():
    assert files(where(lambda t: [n for n in _code_strings(t) if "<image>" in n.value])) == ["model/chat.py"]


def _module_calls(module: str, name: str):
    """Calls of ``module.name(...)`` (e.g. ``os.replace``)."""
    def find(tree):
        return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                and n.func.attr == name and isinstance(n.func.value, ast.Name) and n.func.value.id == module]
    return find


def test_only_the_files_module_writes_atomically():
    assert set(files(where(_module_calls("os", "replace")))) == {"files.py"}
    assert set(files(where(_module_calls("tempfile", "mkstemp")))) == {"files.py"}


def test_the_visual_token_count_is_computed_once():
    def grid(tree):
        return [n for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.FloorDiv)
                and "patch_size" in ast.unparse(n.right)]

    def seq_length(tree):
        return [n for n in ast.walk(tree) if isinstance(n, ast.keyword) and n.arg == "image_seq_length"]

    assert files(where(grid)) == ["model/checkpoint.py"]
    assert files(where(seq_length)) == ["model/checkpoint.py"]
