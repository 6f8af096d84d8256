"""Each metric against values worked out by hand, in English and Chinese."""

from __future__ import annotations

import math

import pytest

from doctorsun.eval.metrics import (
    bleu1,
    exact_match,
    llava_med_bleu1,
    llava_med_closed_hit,
    llava_med_prf,
    multimedeval_vqa,
    normalize_exact,
    normalize_vqa,
    tokens,
)


@pytest.mark.parametrize("text, expected", [
    ("The left lung.", "left lung"),              # article dropped, final period dropped
    ("Yes, it is.", "yes it is"),                 # ", " touches a space: deleted
    ("x-ray", "x ray"),                           # "-" touches no space: becomes a space
    ("1,000 cells", "1000 cells"),                # digit,digit: every mark deleted
    ("There are two nodules.", "there are 2 nodules"),
    ("3.5 cm.", "3.5 cm"),                        # a period before a digit stays
    ("dont know", "don't know"),                  # contraction restored
    ("None", "0"),
    ("(a) CT", "ct"),
    ("是的，有肺结节。", "是的，有肺结节。"),        # the VQA normaliser knows no Chinese punctuation
])
def test_normalize_vqa(text, expected):
    assert normalize_vqa(text) == expected


def test_tokens_split_chinese_by_character_and_english_by_space():
    assert tokens("left lower lobe") == ["left", "lower", "lobe"]
    assert tokens(normalize_vqa("是的，有肺结节。")) == ["是", "的", "有", "肺", "结", "节"]
    assert tokens(normalize_vqa("CT扫描 显示")) == ["ct", "扫", "描", "显", "示"]


def test_llava_med_prf_english():
    f1, p, r = llava_med_prf("The left lung is affected", "left lung")
    assert (p, r) == (0.5, 1.0) and f1 == pytest.approx(2 / 3)
    assert llava_med_prf("right kidney", "left lung") == (0.0, 0.0, 0.0)
    assert llava_med_prf("", "left lung") == (0.0, 0.0, 0.0)


def test_llava_med_prf_counts_prediction_repeats_like_the_reference():
    # tp counts the prediction's two "lung"s, fn the missing "left": R = 2 / 3, not 1 / 2
    f1, p, r = llava_med_prf("lung lung", "left lung")
    assert (p, r) == (1.0, pytest.approx(2 / 3)) and f1 == pytest.approx(0.8)


def test_llava_med_prf_chinese_by_character():
    # {左,肺,下,叶} vs {右,肺,下,叶}: 3 shared of 4 each side
    f1, p, r = llava_med_prf("左肺下叶", "右肺下叶")
    assert (f1, p, r) == (pytest.approx(0.75), 0.75, 0.75)


def test_bleu1_by_hand():
    assert bleu1(["lung"], ["left", "lung"]) == pytest.approx(math.exp(1 - 2 / 1))   # p1 = 1, short
    assert bleu1(["left", "lung", "mass"], ["left", "lung"]) == pytest.approx(2 / 3)  # no penalty
    assert bleu1([], ["left"]) == 0.0
    assert llava_med_bleu1("肝脏", "肝脏肿大") == pytest.approx(math.exp(1 - 4 / 2))


@pytest.mark.parametrize("pred, gold, hit", [
    ("Yes, there is.", "yes", True),
    ("There is an infarct.", "yes", False),   # says neither yes nor no
    ("no", "yes", False),
    ("It is normal", "no", True),             # substring rule: "normal" contains "no" (as the reference)
    ("是的", "是", True),
    ("否", "是", False),
])
def test_llava_med_closed_hit(pred, gold, hit):
    assert llava_med_closed_hit(pred, gold) is hit


def test_multimedeval_closed_no_adds_not():
    s = multimedeval_vqa("No, there is not.", "no")
    # sets {no, there, is, not} vs {no}: P = 1/4, R = 1, F1 = 2 * 0.25 / 1.25
    assert (s["precision"], s["recall"]) == (0.25, 1.0)
    assert s["f1"] == pytest.approx(0.4)
    assert s["closed"] and s["correct"]
    not_seen = multimedeval_vqa("not seen", "no")   # {not} of {no, not}: 0.5 >= 0.4
    assert not_seen["correct"] and not_seen["recall"] == 0.0
    assert not multimedeval_vqa("yes", "no")["correct"]


def test_multimedeval_open_threshold():
    s = multimedeval_vqa("left frontal lobe lesion", "left frontal lobe")
    assert s["recall"] == 1.0 and s["precision"] == 0.75 and s["correct"] and not s["closed"]
    assert s["f1"] == pytest.approx(2 * 0.75 / 1.75)
    assert s["bleu1"] == pytest.approx(0.75)
    assert not multimedeval_vqa("frontal lobe", "left frontal lobe")["correct"]   # R = 2/3 < 0.75


def test_multimedeval_chinese():
    assert multimedeval_vqa("否", "否")["correct"]          # {否} of {否, 不}: 0.5
    assert multimedeval_vqa("不是", "否")["correct"]        # {不} of {否, 不}: 0.5
    assert not multimedeval_vqa("是", "否")["correct"]
    s = multimedeval_vqa("肝脏肿大", "肝脏")                # open: chars {肝,脏,肿,大} vs {肝,脏}
    assert (s["precision"], s["recall"], s["closed"]) == (0.5, 1.0, False)


@pytest.mark.parametrize("pred, gold, same", [
    ("Yes.", "yes", True),
    ("是的", "Yes", True),
    ("没有", "否", True),
    ("X-Ray", "x ray", True),
    ("Liver (left lobe)", "liver", True),
    ("肝脏（左叶）", "肝脏", True),
    ("肝脏。", "肝脏", True),
    ("Liver disease", "liver", False),
])
def test_exact_match(pred, gold, same):
    assert exact_match(pred, gold) is same


def test_normalize_exact_maps_synonyms_only_for_whole_answers():
    assert normalize_exact("Yep!") == "yes"
    assert normalize_exact("yes it is") == "yes it is"


# --- per-item equality with the peers' own code, where DoctorSun used to differ ----------------------------
def test_llava_med_open_scores_normalise_twice_as_its_run_eval_does():
    """``run_eval.evaluate`` normalises, then ``calculate_f1score`` normalises again; each pass strips at
    most 32 periods, so 45 periods need both passes. The peer gives F1 0.5, precision 1/3, recall 1."""
    f1, precision, recall = llava_med_prf("1. 2. 3. " * 15, "3")
    assert (f1, precision, recall) == pytest.approx((0.5, 1 / 3, 1.0))
    once = normalize_vqa("1. 2. 3. " * 15)
    assert "." in once and "." not in normalize_vqa(once)  # one pass leaves 13 periods


def test_multimedeval_strips_the_gold_before_scoring():
    """``answer.lower().strip()``: with the trailing space, "/ " would delete the slashes instead."""
    s = multimedeval_vqa("t1 t2", "t1/t2/ ")
    assert s["recall"] == 1.0 and s["correct"]


def test_peer_exact_values_beside_ours_for_chinese():
    """DoctorSun splits Chinese per character and reads 是/否 as yes/no; the peers split on whitespace."""
    assert llava_med_prf("左肺下叶", "右肺下叶")[2] == pytest.approx(0.75)
    assert llava_med_prf("左肺下叶", "右肺下叶", peer=True) == (0.0, 0.0, 0.0)  # one token each, different
    assert multimedeval_vqa("否", "否")["closed"] and not multimedeval_vqa("否", "否", peer=True)["closed"]
    assert llava_med_closed_hit("是", "是") and not llava_med_closed_hit("是", "是", peer=True)
    english = ("The left lung is affected", "left lung")
    assert llava_med_prf(*english) == llava_med_prf(*english, peer=True)
