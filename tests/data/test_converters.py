"""Every converter on a fixture in its set's published layout: counts, reported problems, valid records
whose images load, and the fields evaluation breaks scores down by."""

from __future__ import annotations

import json
import pickle

import pytest

from doctorsun.cli import main
from doctorsun.data.converters import CONVERTERS, convert
from doctorsun.data.io import read_records
from doctorsun.data.prompts import CLOSED_SUFFIX, MCQ_SUFFIX
from doctorsun.data.records import answer, validate
from doctorsun.errors import DoctorSunError
from tests.fixtures import public_sets as ps

# fixture writer -> converter name
WRITER_TO_NAME = {"vqa_rad": "vqa-rad", "vqa_rad_hf": "vqa-rad", "slake": "slake", "pathvqa": "pathvqa",
                  "pathvqa_hf": "pathvqa", "pmc_vqa": "pmc-vqa", "pmc_vqa_v2": "pmc-vqa",
                  "omnimedvqa": "omnimedvqa", "pmc_oa": "pmc-oa", "roco": "roco", "llava_med": "llava-med",
                  "llava_med_vqa": "llava-med", "medqa": "medqa", "pubmedqa": "pubmedqa", "cmb": "cmb",
                  "cmexam": "cmexam", "mmlu": "mmlu", "mmlu_hf": "mmlu", "cmmlu": "cmmlu", "ceval": "ceval",
                  "mmbench": "mmbench", "mmmu": "mmmu", "medxpertqa": "medxpertqa", "iu_xray": "iu-xray",
                  "mimic_cxr": "mimic-cxr"}


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Every fixture written once; writer name -> the path convert takes."""
    root = tmp_path_factory.mktemp("public")
    return {w: getattr(ps, f"write_{w}")(root / w) for w in WRITER_TO_NAME}


def by_id(result) -> dict:
    return {r["id"]: r for r in result.records}


def test_every_converter_has_a_fixture():
    assert set(WRITER_TO_NAME.values()) == set(CONVERTERS) == set(ps.WRITERS)
    assert set(WRITER_TO_NAME) == set(ps.EXPECTED)


@pytest.mark.parametrize("writer", list(WRITER_TO_NAME))
def test_counts_problems_and_valid_records(sets, writer):
    result = convert(WRITER_TO_NAME[writer], sets[writer])
    good, bad = ps.EXPECTED[writer]
    assert (len(result.records), len(result.problems)) == (good, bad), result.problems
    for record in result.records:
        assert validate(record, image_root=result.image_root, check_images=True) == [], record["id"]
    assert len({r["id"] for r in result.records}) == good
    assert all(r["source"] == WRITER_TO_NAME[writer] for r in result.records)


def test_vqa_rad(sets):
    result = convert("vqa-rad", sets["vqa_rad"])
    records = by_id(result)
    assert result.split == "test" and set(records) == {f"vqa-rad-{i}" for i in range(2, 9)}
    closed = records["vqa-rad-2"]  # answer_type "CLOSED " in the file
    assert closed["answer_type"] == "CLOSED" and closed["task"] == "vqa-closed"
    assert closed["conversations"][0]["value"] == f"<image>\n{CLOSED_SUFFIX['en']}\nIs there a pneumothorax?"
    assert answer(closed) == "no" and closed["meta"]["answer"] == "No"
    assert closed["meta"]["image_organ"] == "CHEST" and closed["meta"]["phrase_type"] == "test_freeform"
    left_right = records["vqa-rad-5"]  # CLOSED but not yes/no: open prompt, closed task
    assert left_right["task"] == "vqa-closed" and CLOSED_SUFFIX["en"] not in left_right["conversations"][0]["value"]
    assert answer(records["vqa-rad-4"]) == "2"  # an int answer in the file
    assert records["vqa-rad-3"]["meta"]["qid"] == "3"  # the string qid
    assert records["vqa-rad-6"]["meta"]["question_type"] == "POS, PRES"
    assert "question_rephrase" not in records["vqa-rad-2"]["meta"]  # "NULL" fields dropped
    assert result.problems == [("9", "empty question")]
    train = convert("vqa-rad", sets["vqa_rad"], split="train")
    assert sorted(by_id(train)) == ["vqa-rad-0", "vqa-rad-1"]


def test_vqa_rad_parquet(sets):
    result = convert("vqa-rad", sets["vqa_rad_hf"])
    assert [r["answer_type"] for r in result.records] == ["CLOSED", "OPEN", "CLOSED"]
    assert (result.image_root / result.records[0]["image"]).suffix == ".jpg"
    assert len(convert("vqa-rad", sets["vqa_rad_hf"], split="all").records) == 5


def test_slake_keeps_both_languages(sets):
    result = convert("slake", sets["slake"])
    records = by_id(result)
    zh = records["slake-test-11938"]
    assert zh["lang"] == "zh" and answer(zh) == "是"
    assert zh["conversations"][0]["value"].startswith(f"<image>\n{CLOSED_SUFFIX['zh']}")
    assert answer(records["slake-test-11935"]) == "yes"  # "Yes" in the file
    meta = records["slake-test-11936"]["meta"]
    fields = (meta["modality"], meta["location"], meta["content_type"], meta["q_lang"])
    assert fields == ("MRI", "Brain", "Modality", "en")
    assert records["slake-test-11934"]["image"] == "xmlab102/source.jpg"
    assert {r["lang"] for r in convert("slake", sets["slake"], lang="zh").records} == {"zh"}
    assert len(convert("slake", sets["slake"], split="validate").records) == 1


def test_pathvqa_pickle_and_parquet(sets):
    result = convert("pathvqa", sets["pathvqa"])
    assert result.records[0]["image"] == "test/test_0001.jpg"
    assert [r["task"] for r in result.records] == ["vqa-closed", "vqa-open", "vqa-closed", "vqa-open"]
    assert result.problems == [("item 4", "expected text, found list")]
    hf = convert("pathvqa", sets["pathvqa_hf"])
    assert [answer(r) for r in hf.records] == ["yes", "hemosiderin", "no"]


class _Boom:
    def __reduce__(self):
        return (print, ("this pickle runs code",))


def test_pathvqa_refuses_pickles_that_run_code(tmp_path):
    qas = tmp_path / "pvqa" / "qas" / "test"
    qas.mkdir(parents=True)
    (qas / "test_qa.pkl").write_bytes(pickle.dumps([{"image": "x", "question": "q", "answer": _Boom()}]))
    with pytest.raises(DoctorSunError, match="refusing to load builtins.print"):
        convert("pathvqa", tmp_path / "pvqa")


def test_pmc_vqa_versions_and_headers(sets):
    result = convert("pmc-vqa", sets["pmc_vqa"])
    first = result.records[0]
    assert first["choices"] == ["Diffuse uptake pattern", "Focal uptake pattern", "No uptake pattern",
                                "Cannot determine from the information given"]
    assert answer(first) == "B. Focal uptake pattern" and first["meta"]["answer_letters"] == "B"
    assert first["conversations"][0]["value"].endswith(MCQ_SUFFIX["en"])
    assert result.records[1]["choices"] == ["CT", "MRI", "Ultrasound", "PET"]  # "A:CT " cleaned
    assert result.problems[0][0] == "row 5"
    clean = convert("pmc-vqa", sets["pmc_vqa"], split="test_clean")  # the "Anwser" header
    assert [r["meta"]["answer"] for r in clean.records] == ["Focal uptake pattern", "MRI", "Left kidney"]
    v2 = convert("pmc-vqa", sets["pmc_vqa_v2"])
    assert result.image_root.name == "images" and v2.image_root.name == "images_2"
    assert [r["meta"]["answer_letters"] for r in v2.records] == ["A", "B"]
    assert v2.records[1]["meta"]["caption"] == "H&E stain, 40x."


def test_omnimedvqa(sets):
    result = convert("omnimedvqa", sets["omnimedvqa"])
    records = by_id(result)
    two = records["omnimedvqa-ACRIMA_0001"]
    assert two["choices"] == ["Yes", "No"] and answer(two) == "B. No"
    assert records["omnimedvqa-ACRIMA_0000"]["meta"]["modality_type"] == "Fundus Photography"
    assert records["omnimedvqa-Chest CT Scan_0000"]["meta"]["modality_type"] == "CT"  # the file's odd key
    assert records["omnimedvqa-AIDA_0000"]["meta"]["access"] == "Restricted-access"
    assert records["omnimedvqa-ACRIMA_0002"]["meta"]["question_type"] == "Modality Recognition"
    assert len(convert("omnimedvqa", sets["omnimedvqa"], access="open").records) == 4
    assert len(convert("omnimedvqa", sets["omnimedvqa"], dataset="Chest CT Scan").records) == 1


def test_caption_sets(sets):
    oa = convert("pmc-oa", sets["pmc_oa"])
    assert oa.split == "train" and oa.records[0]["task"] == "caption"
    assert oa.records[0]["meta"]["pmcid"] == "PMC212319" and oa.records[0]["image"] == "PMC212319_Fig3_4.jpg"
    roco = convert("roco", sets["roco"])
    first = by_id(roco)["roco-ROCO_00002"]
    assert first["image"] == "images/PMC4083729_AMJCR-15-294-g002.jpg"
    assert answer(first) == "Computed tomography scan in axial view showing a mass."  # tab + space stripped
    assert len(convert("roco", sets["roco"], part="all").records) == 4
    assert len(convert("roco", sets["roco"], split="test").records) == 1


def test_llava_med(sets):
    result = convert("llava-med", sets["llava_med"])
    dialogue = by_id(result)["llava-med-34630403_F1"]
    assert dialogue["task"] == "dialogue" and len(dialogue["conversations"]) == 4
    assert dialogue["conversations"][0]["value"] == "<image>\nWhat is shown in the image?"  # placeholder moved first
    vqa = convert("llava-med", sets["llava_med_vqa"])
    assert [r["answer_type"] for r in vqa.records] == ["CLOSED", "OPEN", "CLOSED"]
    assert answer(vqa.records[0]) == "yes" and vqa.image_root.name == "images"


def test_llava_med_questions_with_answers(tmp_path):
    questions = tmp_path / "qa50.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in [
        {"question_id": 1, "image": "a.jpg", "text": "What is seen?\n<image>", "type": "conversation",
         "domain": {}},
        {"question_id": 2, "image": "a.jpg", "text": "Any mass?", "type": "conversation"}]), encoding="utf-8")
    answers = tmp_path / "answers.jsonl"
    answers.write_text(json.dumps({"question_id": 1, "prompt": "q", "text": "A nodule.", "answer_id": "x",
                                   "model_id": "gpt-4"}) + "\n", encoding="utf-8")
    result = convert("llava-med", questions, answers=answers)
    assert [answer(r) for r in result.records] == ["A nodule."]
    assert result.problems == [("2", "no answer in the answers file")]
    with pytest.raises(DoctorSunError, match="answers="):
        convert("llava-med", questions)


def test_medqa(sets):
    result = convert("medqa", sets["medqa"])
    first = result.records[0]
    assert len(first["choices"]) == 5 and answer(first) == "B. Urinalysis"
    assert first["meta"]["answer_idx"] == "B" and first["meta"]["meta_info"] == "step2&3" and "image" not in first
    four = convert("medqa", sets["medqa"], options=4)
    assert {len(r["choices"]) for r in four.records} == {4}


def test_pubmedqa(sets):
    result = convert("pubmedqa", sets["pubmedqa"])
    assert sorted(r["meta"]["pmid"] for r in result.records) == ["16418930", "21645374"]
    first = by_id(result)["pubmedqa-21645374"]
    assert first["conversations"][0]["value"].startswith("Context: Programmed cell death")
    assert first["choices"] == ["yes", "no", "maybe"] and answer(first) == "A. yes"
    assert [r["meta"]["pmid"] for r in convert("pubmedqa", sets["pubmedqa"],
                                               split="train").records] == ["9488747"]
    alone = sets["pubmedqa"].parent.parent / "alone"
    alone.mkdir()
    (alone / "ori_pqal.json").write_bytes(sets["pubmedqa"].read_bytes())
    with pytest.raises(DoctorSunError, match="test_ground_truth.json"):
        convert("pubmedqa", alone / "ori_pqal.json")
    assert len(convert("pubmedqa", alone, split="all").records) == 3


def test_cmb_answers_from_the_separate_file(sets):
    result = convert("cmb", sets["cmb"])
    records = by_id(result)
    multi = records["cmb-test-2"]
    assert multi["meta"]["answer_letters"] == "ABC" and multi["choices"] == ["低热", "盗汗", "乏力", "咯血"]
    assert answer(multi) == "A. 低热\nB. 盗汗\nC. 乏力"
    assert records["cmb-test-1"]["meta"]["exam_type"] == "医师考试" and records["cmb-test-1"]["lang"] == "zh"
    assert records["cmb-test-1"]["meta"]["question_type"] == "单项选择题"
    assert result.problems[0][0] == "4"
    val = convert("cmb", sets["cmb"], split="val")
    assert val.records[0]["meta"]["explanation"].startswith("结核分枝杆菌")


def test_cmb_without_answers_reports_every_test_item(sets, tmp_path):
    test_file = next(sets["cmb"].glob("CMB-Exam/CMB-test/*.json"))
    lone = tmp_path / "CMB-test-choice-question-merge.json"
    lone.write_bytes(test_file.read_bytes())
    result = convert("cmb", lone)
    assert result.records == [] and len(result.problems) == 4


def test_cmexam(sets):
    result = convert("cmexam", sets["cmexam"])
    first, multi = result.records[0], result.records[1]
    assert first["choices"][:2] == ["胃溃疡", "十二指肠溃疡"] and answer(first) == "B. 十二指肠溃疡"
    assert first["meta"]["clinical_department"] == "消化内科" and first["meta"]["difficulty"] == "3"
    assert multi["meta"]["answer_letters"] == "ABC"
    assert result.problems == [("row 5", "no answer letter")]


def test_unknown_names_options_and_splits(sets, tmp_path):
    with pytest.raises(DoctorSunError, match="known: vqa-rad, slake"):
        convert("mimic", tmp_path)
    with pytest.raises(DoctorSunError, match="unknown option"):
        convert("slake", sets["slake"], colour="red")
    with pytest.raises(DoctorSunError, match="has no split 'dev'"):
        convert("slake", sets["slake"], split="dev")
    with pytest.raises(DoctorSunError, match="source not found"):
        convert("slake", tmp_path / "nowhere")


def test_cli_convert_output_checks_clean(sets, tmp_path, capsys):
    out = tmp_path / "out" / "slake_zh.jsonl"
    assert main(["data", "convert", "--from", "slake", str(sets["slake"]), "--out", str(out),
                 "--option", "lang=zh"]) == 0
    assert "wrote 3 slake records (split test)" in capsys.readouterr().out
    assert main(["data", "check", str(out)]) == 0  # images re-rooted to the output's folder
    share = tmp_path / "out" / "pmc.json"
    assert main(["data", "convert", "--from", "pmc-vqa", str(sets["pmc_vqa"]), "--out", str(share),
                 "--format", "sharegpt"]) == 0
    assert "skipped row 5" in capsys.readouterr().out
    assert "messages" in json.loads(share.read_text())[0]
    records, problems = read_records(share, image_root=share.parent)
    assert len(records) == 3 and problems == []


def test_cli_mini_calls_the_builder(tmp_path, monkeypatch, capsys):
    import sys
    import types

    calls = []
    fake = types.ModuleType("doctorsun.mini")
    fake.build_mini = lambda out, seed=0, reasoned=True: calls.append((out, seed, reasoned)) or {"train": 1}
    monkeypatch.setitem(sys.modules, "doctorsun.mini", fake)
    assert main(["data", "mini", "--out", str(tmp_path / "mini"), "--seed", "4"]) == 0
    assert calls == [(tmp_path / "mini", 4, True)]
    assert '"train": 1' in capsys.readouterr().out
    assert main(["data", "mini", "--out", str(tmp_path / "bare"), "--bare-answers"]) == 0
    assert calls[-1] == (tmp_path / "bare", 0, False)


def test_general_exams_read_subjects_and_layouts(sets):
    """MMLU's release and Hub layouts give the same record shape; ``subjects`` filters; C-Eval's test
    split (answers withheld) reports every row instead of inventing answers."""
    release = convert("mmlu", sets["mmlu"], subjects=["anatomy"])
    assert [r["meta"]["subject"] for r in release.records] == ["anatomy", "anatomy"]
    femur = release.records[0]
    assert femur["choices"] == ["Femur", "Tibia", "Humerus", "Radius"] and femur["meta"]["answer_letters"] == "A"
    assert femur["conversations"][1]["value"] == "A. Femur" and "image" not in femur
    hub = convert("mmlu", sets["mmlu_hf"])
    assert [r["meta"]["answer_letters"] for r in hub.records] == ["B", "B"]
    assert {r["meta"]["subject"] for r in hub.records} == {"high_school_biology", "elementary_mathematics"}
    assert len(convert("mmlu", sets["mmlu"], split="val").records) == 2
    assert convert("cmmlu", sets["cmmlu"]).records[0]["lang"] == "zh"
    withheld = convert("ceval", sets["ceval"], split="test")
    assert withheld.records == [] and len(withheld.problems) == 2
    assert all("withheld" in reason for _, reason in withheld.problems)


def test_report_sets_take_their_sections_and_views(tmp_path):
    """IU-Xray's Open-i XML (no split: read as ``all``, asked by name), its sections; MIMIC-CXR's
    findings from the free text, the frontal view first."""
    openi = ps.write_iu_xray_openi(tmp_path / "openi")
    with pytest.raises(DoctorSunError, match="use split all"):
        convert("iu-xray", openi)
    result = convert("iu-xray", openi, split="all")
    assert len(result.records) == 2 and [p[0] for p in result.problems] == ["3.xml", "9.xml"]
    first = result.records[0]
    assert first["task"] == "report" and first["conversations"][0]["value"].count("<image>") == 2
    assert first["conversations"][1]["value"].startswith("The heart size is normal.")
    both = convert("iu-xray", openi, split="all", section="both")
    assert len(both.records) == 3 and both.records[2]["conversations"][1]["value"] == "Normal chest."
    assert validate(first, image_root=result.image_root, check_images=True) == []
    mimic = convert("mimic-cxr", ps.write_mimic_cxr(tmp_path / "mimic"))
    study = next(r for r in mimic.records if r["meta"]["study"] == "50414267")
    assert study["image"] == ["files/p10/p10000032/s50414267/d1-pa.jpg"] and study["meta"]["views"] == ["PA"]
    assert study["conversations"][1]["value"] == "There is no focal consolidation. Heart size is normal."
    assert mimic.problems[0][0] == "s50414269" and "section" in mimic.problems[0][1]
    assert len(convert("mimic-cxr", tmp_path / "mimic" / "mimic-cxr", split="train").records) == 1


@pytest.mark.parametrize("report, expected", [
    # headings named as the dataset's parser names them; a view heading introduces the findings
    (" INDICATION: cough\n\n CHEST, PA AND LATERAL: Lungs clear.\n\n CONCLUSION: Normal.\n",
     {"indication": "cough", "findings": "Lungs clear.", "impression": "Normal."}),
    (" FINDINGS AND IMPRESSION: No change.\n", {"impression": "No change."}),
    (" IMPRESSON: Typo mended.\n FINIDNGS: Also.\n", {"impression": "Typo mended.", "findings": "Also."}),
    # an empty findings section is dropped; the last one of a name wins; a heading on the very next line
    # starts its own section (the dataset's parser would fold it into the one before)
    ("FINDINGS:\nIMPRESSION: Clear lungs.\n FINDINGS: Small effusion.",
     {"impression": "Clear lungs.", "findings": "Small effusion."}),
    # capitals and a colon inside a line are no heading
    (" EXAMINATION: CHEST (PA AND LAT) NOTE: AP\n FINDINGS: Fine.\n",
     {"examination": "CHEST (PA AND LAT) NOTE: AP", "findings": "Fine."}),
    # neither findings nor impression: the last paragraph stands in
    (" INDICATION: cough\n\n COMPARISON: None.\n \n Lungs are clear.\n",
     {"indication": "cough", "comparison": "None.", "last_paragraph": "Lungs are clear."}),
    ("Lungs are clear.", {"full report": "Lungs are clear."}),
])
def test_mimic_cxr_sections_follow_the_datasets_parser(report, expected):
    from doctorsun.data.converters.mimic_cxr import report_sections

    got = report_sections(report)
    got.pop("preamble", None)
    assert got == expected
