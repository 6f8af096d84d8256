"""Recipe YAML as people write it: YAML-1.2 numbers (``1:0.5`` stays a ratio, ``1e-3`` is a float) and
dotted ``--set key=value`` overrides applied over the file."""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from doctorsun.errors import DoctorSunError


def apply_overrides(data: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """``["train.max_steps=5", ...]`` (values read as YAML) or ``{"train.max_steps": 5}`` applied to a dict."""
    data = copy.deepcopy(data)
    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides]
    for key, value in items:
        node = data
        *parents, last = key.split(".")
        for p in parents:
            if not isinstance(node.get(p, {}), dict):
                raise DoctorSunError(f"--set {key}: {p} is not a section")
            node = node.setdefault(p, {})
        node[last] = value
    return data


class _Loader(yaml.SafeLoader):
    """YAML 1.2-style numbers: no base-60 (a ratio ``1:0.5`` stays text instead of becoming 60.5), and
    ``1e-3`` is a float (YAML 1.1 wants ``1.0e-3``)."""


_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$|^0x[0-9a-fA-F_]+$"),
                              list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$|^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"
               r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


def _split(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise DoctorSunError(f"--set {item!r} must look like key=value (e.g. train.max_steps=10)")
    key, raw = item.split("=", 1)
    return key.strip(), read_yaml(raw) if raw.strip() else None
