"""The protocol card: every run names what its scores depend on, and ``--protocol`` runs it again exactly."""

from __future__ import annotations

import json

import pytest

from doctorsun.cli import main
from doctorsun.eval import protocol


def run_eval(tiny_model_dir, data, out, *extra) -> dict:
    assert main(["eval", "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
                 "--max-new-tokens", "4", *extra]) == 0
    return json.loads((out / "scores.json").read_text(encoding="utf-8"))


def test_a_saved_protocol_runs_again_exactly_and_refuses_other_data(tiny_model_dir, sunmed_file, tmp_path, capsys):
    first = run_eval(tiny_model_dir, sunmed_file, tmp_path / "a", "--bench", "sunmed-vl-mini", "--limit", "5",
                     "--seed", "3")
    card = json.loads((tmp_path / "a" / "protocol.json").read_text(encoding="utf-8"))
    assert card == first["protocol"]
    assert card["bench"] == "sunmed-vl-mini" and card["eval"]["limit"] == 5 and card["eval"]["seed"] == 3
    assert card["data_sha256"] == first["provenance"]["data"]["sha256"]
    assert card["metrics"] == protocol.metric_record() and card["metrics"]["version"] == protocol.METRICS_VERSION
    assert card["prompt"]["builder_sha256"] == first["provenance"]["prompt"]["builder_sha256"]
    report = (tmp_path / "a" / "report.md").read_text(encoding="utf-8")
    assert "## Protocol" in report and card["metrics"]["sha256"][:16] in report and "95% CI" in report
    assert "[" in capsys.readouterr().out  # the terminal summary carries the intervals too

    # Everything comes from the card: no --bench, no --limit, no --seed, and --max-new-tokens 4 is the card's.
    again = run_eval(tiny_model_dir, sunmed_file, tmp_path / "b", "--protocol", str(tmp_path / "a" / "protocol.json"))
    assert again["protocol"] == card
    assert {k: again[k] for k in ("n", "closed_accuracy", "open_recall", "token_f1")} == {
        k: first[k] for k in ("n", "closed_accuracy", "open_recall", "token_f1")}

    sunmed_file.write_text(sunmed_file.read_text(encoding="utf-8") + "\n", encoding="utf-8")  # other bytes
    assert main(["eval", "--model", str(tiny_model_dir), "--data", str(sunmed_file), "--out", str(tmp_path / "c"),
                 "--protocol", str(tmp_path / "a" / "protocol.json")]) == 2
    assert "cannot run this protocol exactly: it differs in data" in capsys.readouterr().err


def test_protocol_refusals(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text('{"protocol_version": 99}')
    with pytest.raises(Exception, match="not a DoctorSun protocol card"):
        protocol.load(bad)
    card = {"eval": {"bench": "vqa-rad", "judge": {"model": "judge-7b", "prompt_version": "doctorsun-judge-v1"}}}
    with pytest.raises(Exception, match="judged by judge-7b: give --judge URL"):
        protocol.config_from(card)
    config = protocol.config_from(card, judge_url="http://127.0.0.1:9/v1")
    assert config.judge.model == "judge-7b" and config.bench == "vqa-rad"
    with pytest.raises(Exception, match="differs in the metric code"):
        protocol.check({"prompt": {"builder_sha256": "b"}, "metrics": {"version": "1", "sha256": "x"}, "eval": {}},
                       None, "b")
