"""``eval compare`` on folders of runs: the retention view (base vs trained, medical vs general)."""

from __future__ import annotations

import json

import pytest

from doctorsun.cli import main
from doctorsun.errors import DoctorSunError
from doctorsun.eval.benchmarks import load_benchmark
from doctorsun.eval.compare import retention
from doctorsun.eval.config import EvalConfig
from doctorsun.eval.runner import evaluate
from tests.eval.conftest import write_sunmed_set
from tests.fixtures import public_sets


def _runs(root, engine, data_dir, general_gold: bool, medical_gold: bool, monkeypatch, medical: str = "medical"):
    """A folder of two runs: ``medical`` (SunMed-VL file; ``"."`` puts it in the folder itself, as the
    quickstart does) and ``general/mmlu`` (likelihood), answered right or wrong on purpose."""
    from doctorsun.data.io import read_records

    records, _ = read_records(data_dir / "test.jsonl")
    gold = {r["conversations"][0]["value"].split("\n")[-1]: r["conversations"][-1]["value"] for r in records}

    def generate(convs, images, settings=None):
        out = []
        for c in convs:
            text = c[-1]["content"][-1]["text"]
            answer = next((g for q, g in gold.items() if q and q in text), "")
            out.append(answer if medical_gold else "nothing")
        return out

    mmlu = load_benchmark("mmlu", data_dir / "mmlu")
    right = {r["choices"][ord(r["meta"]["answer_letters"]) - 65] for r in mmlu.records}

    def loglikelihood(convs, images, replies):
        return [((0.0 if (r in right) == general_gold else -9.0), 1) for r in replies]

    monkeypatch.setattr(engine, "generate", generate)
    monkeypatch.setattr(engine, "loglikelihood", loglikelihood)
    evaluate(engine, records, EvalConfig(bench="sunmed-vl-mini", resume=False), image_root=data_dir,
             out_dir=root / medical, data_file=data_dir / "test.jsonl")
    evaluate(engine, mmlu.records, EvalConfig(bench="mmlu", scoring="likelihood", resume=False), image_root=None,
             out_dir=root / "general" / "mmlu", data_file=mmlu.data_path)
    return root


@pytest.fixture
def data_dir(tmp_path):
    """A SunMed-VL set and an MMLU set in one folder."""
    data = write_sunmed_set(tmp_path / "data")
    public_sets.write_mmlu(tmp_path / "data")
    return data.parent if data.is_file() else data


def test_retention_view_sides_and_shares(engine, data_dir, tmp_path, monkeypatch, capsys):
    """Base: general right, medical wrong; trained: medical right, general still right -> the medical
    side gains, the general side keeps 100%; a trained model that forgets keeps 0%."""
    base = _runs(tmp_path / "base", engine, data_dir, general_gold=True, medical_gold=False, monkeypatch=monkeypatch)
    kept = _runs(tmp_path / "kept", engine, data_dir, general_gold=True, medical_gold=True, monkeypatch=monkeypatch)
    lost = _runs(tmp_path / "lost", engine, data_dir, general_gold=False, medical_gold=True, monkeypatch=monkeypatch)
    good = retention(base, kept)
    assert {r["run"] for r in good["rows"]} == {"medical", "general/mmlu"}
    general = [r for r in good["rows"] if r["domain"] == "general"]
    assert [(r["metric"], r["base"], r["trained"], r["kept"]) for r in general] == [("mcq_accuracy", 1.0, 1.0, 1.0)]
    assert good["summary"]["general"]["mean_kept"] == 1.0 and good["summary"]["medical"]["mean_change"] > 0
    bad = retention(base, lost)
    assert bad["summary"]["general"]["mean_kept"] == 0.0
    assert next(r for r in bad["rows"] if r["domain"] == "general")["difference"]["value"] == -1.0
    out = tmp_path / "view"
    assert main(["eval", "compare", str(base), str(lost), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| general | general/mmlu | mmlu | mcq_accuracy | 1.000 | 0.000 | 0% |" in printed
    assert json.loads((out / "retention.json").read_text(encoding="utf-8"))["summary"]["general"]["mean_kept"] == 0
    with pytest.raises(DoctorSunError, match="share no benchmark runs"):
        retention(base / "medical", base / "general")


def test_paired_compares_the_runs_themselves_when_they_hold_runs_below(engine, data_dir, tmp_path, monkeypatch,
                                                                       capsys):
    """The quickstart's layout (a medical run with general runs below it): the retention view by default,
    ``--paired`` the question-by-question comparison of the two top runs alone."""
    base = _runs(tmp_path / "base", engine, data_dir, general_gold=True, medical_gold=False,
                 monkeypatch=monkeypatch, medical=".")
    kept = _runs(tmp_path / "kept", engine, data_dir, general_gold=True, medical_gold=True,
                 monkeypatch=monkeypatch, medical=".")
    assert main(["eval", "compare", str(base), str(kept), "--out", str(tmp_path / "view")]) == 0
    assert (tmp_path / "view" / "retention.md").is_file() and "# Retention" in capsys.readouterr().out
    assert main(["eval", "compare", str(base), str(kept), "--paired", "--out", str(tmp_path / "pair")]) == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "pair" / "compare.json").read_text(encoding="utf-8"))
    assert "# Retention" not in printed and not (tmp_path / "pair" / "retention.md").exists()
    assert result["bench"] == "sunmed-vl-mini" and result["shared"] > 0
    closed = result["metrics"]["closed_accuracy"]
    assert (closed["a"], closed["b"]) == (0.0, 1.0) and closed["difference"]["value"] == 1.0
    with pytest.raises(SystemExit):
        main(["eval", "compare", str(base), str(kept), "--paired", "--retention"])
