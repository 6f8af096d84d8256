"""The protocol card: everything a score depends on besides the model, so that two reports can be told
apart at a glance and a saved protocol can be run again exactly (``doctorsun eval --protocol FILE``).

A card names the benchmark and split, the data's hash, the evaluation settings (decoding included), the
prompt builder's and chat template's hashes, the metric code's version and hash, the judge (model,
prompt version and hash), and the DoctorSun version.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

from doctorsun.errors import DoctorSunError
from doctorsun.eval.config import EvalConfig

PROTOCOL = "protocol.json"
VERSION = 1
METRICS_VERSION = "2"
"""Raised whenever a change makes any score of the same predictions differ (2: LLaVA-Med's double
normalisation, MultiMedEval's stripped gold, OmniMedVQA's option-text comparison, peer-exact values)."""


def metric_record() -> dict[str, str]:
    """The metric code's version and a hash of its source (normaliser, metrics, extractors, scoring)."""
    from doctorsun.eval import mcq, metrics, scoring, stats

    h = hashlib.sha256()
    for module in (metrics, mcq, scoring, stats):
        h.update(inspect.getsource(module).encode())
    return {"version": METRICS_VERSION, "sha256": h.hexdigest()}


def card(config: EvalConfig, data: dict | None, records_sha256: str, prompt: dict, decoding: dict) -> dict:
    """The protocol of one run (the resume flag is how it ran, not what it measured: left out)."""
    from doctorsun import __version__

    settings = {k: v for k, v in config.to_dict().items() if k != "resume"}
    if config.judge is not None:
        # the judge's endpoint is where it ran, not what it measured
        settings["judge"] = {k: v for k, v in config.judge.record().items() if k != "url"}
    return {
        "protocol_version": VERSION, "bench": config.bench, "split": config.split,
        "data_sha256": (data or {}).get("sha256"), "records_sha256": records_sha256, "eval": settings,
        "decoding": decoding, "prompt": {k: prompt.get(k) for k in ("chat_template", "chat_template_sha256",
                                                                     "builder", "builder_sha256")},
        "metrics": metric_record(), "doctorsun_version": __version__,
    }


def load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DoctorSunError(f"protocol not found: {path}")
    try:
        protocol = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DoctorSunError(f"protocol {path} is not valid JSON: {exc}") from None
    if not isinstance(protocol, dict) or protocol.get("protocol_version") != VERSION:
        raise DoctorSunError(f"{path} is not a DoctorSun protocol card (version {VERSION})")
    return protocol


def config_from(protocol: dict[str, Any], judge_url: str | None = None, api_key_env: str | None = None,
                batch_size: int | None = None) -> EvalConfig:
    """The ``EvalConfig`` a protocol prescribes. The judge's endpoint (and key) are where it runs now;
    its model and prompt come from the protocol. The batch size may differ: greedy answers do not
    depend on it."""
    settings = dict(protocol["eval"])
    judge = settings.pop("judge", None)
    if judge is not None:
        if not judge_url:
            raise DoctorSunError(f"this protocol is judged by {judge['model']}: give --judge URL of an endpoint "
                                 "that serves it")
        settings["judge"] = {"url": judge_url, "model": judge["model"], "api_key_env": api_key_env}
    if batch_size is not None:
        settings["batch_size"] = batch_size
    return EvalConfig.from_dict(settings)


def check(protocol: dict[str, Any], data: dict | None, prompt_builder_sha256: str) -> None:
    """Refuse to run a protocol on other data, another prompt builder or other metric code."""
    differ = []
    if protocol.get("data_sha256") and (data or {}).get("sha256") != protocol["data_sha256"]:
        differ.append(f"data (sha256 {str((data or {}).get('sha256'))[:12]}, the protocol's "
                      f"{protocol['data_sha256'][:12]})")
    if protocol["prompt"].get("builder_sha256") != prompt_builder_sha256:
        differ.append("the prompt builder")
    if protocol["metrics"] != metric_record():
        differ.append(f"the metric code (version {protocol['metrics'].get('version')}, "
                      f"now {METRICS_VERSION})")
    judge = protocol["eval"].get("judge")
    if judge:
        from doctorsun.eval.judge import PROMPT_SHA256

        if judge.get("prompt_sha256") != PROMPT_SHA256:
            differ.append("the judge prompt")
    if differ:
        raise DoctorSunError("cannot run this protocol exactly: it differs in " + "; ".join(differ))
