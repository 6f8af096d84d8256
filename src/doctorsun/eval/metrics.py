"""Answer normalisation and the VQA metrics that peers report, each under its own name.

Peers score the same sets differently, so every definition below follows one peer's code and says which:
- the VQA answer normaliser (shared by the VQA evaluator, LLaVA-Med and MultiMedEval);
- LLaVA-Med's open recall / precision / F1 / BLEU-1 and its closed "hit" rule;
- MultiMedEval's token-set precision / recall / F1, BLEU-1 and its closed / open correctness thresholds;
- lmms-eval's SLAKE exact match with bilingual yes/no synonyms.

Chinese is never tokenised by whitespace alone: every CJK character is its own token (``tokens``), and 是/否
count as yes/no. For text without CJK characters this is exactly the peers' whitespace split, so English
numbers match theirs. Where this deliberately differs from a peer (Chinese text), ``peer=True`` gives the
peer's exact value (whitespace split, English yes/no only), reported under the peer's name.
The standard 10-annotator VQA accuracy is deliberately absent: with one reference answer it is always 0.
"""

from __future__ import annotations

import re
import string
from collections import Counter

# --- VQA normaliser --------------------------------------------------------------------------------
# Tables from the VQA evaluator, copied unchanged by LLaVA-Med (llava/eval/eval_metrics/glossary.py) and
# MultiMedEval (multimedeval/utils.py): https://github.com/GT-Vision-Lab/VQA/blob/master/PythonEvaluationTools/vqaEvaluation/vqaEval.py
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ("a", "an", "the")
PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
         "!")
# The reference's lookbehind is misspelt "(?!<=\d)", so in effect: a period not followed by a digit goes.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")


def normalize_vqa(text: str) -> str:
    """VQA-style answer normalisation, as LLaVA-Med's ``normalize_word`` and MultiMedEval's ``clean_str``.

    Lower-case; each punctuation mark is deleted when it touches a space (or the text has a digit,digit),
    else turned into a space; periods not followed by a digit dropped; number words -> digits; articles
    dropped; contractions restored; commas removed.
    https://github.com/corentin-ryr/MultiMedEval/blob/main/multimedeval/utils.py (``clean_str``)
    """
    text = str(text).lower()
    out = text
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or _COMMA_STRIP.search(text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # The reference passes re.UNICODE (= 32) where ``count`` goes: at most 32 periods are stripped.
    out = _PERIOD_STRIP.sub("", out, count=32)
    words = [NUMBER_WORDS.get(w, w) for w in out.split()]
    words = [CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES]
    return " ".join(words).replace(",", "")


# --- tokens: whitespace for alphabetic scripts, one token per character for Chinese ---------------------
# lmms-eval's list of Chinese punctuation (lmms_eval/tasks/slake/utils.py); tokens also drop curly quotes.
LMMS_ZH_PUNCTUATION = "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～、，。；：《》？【】（）"
ZH_PUNCTUATION = LMMS_ZH_PUNCTUATION + "“”‘’…"
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_ZH_PUNCT_TABLE = str.maketrans({c: " " for c in ZH_PUNCTUATION})


def has_cjk(text: str) -> bool:
    return re.search(f"[{_CJK}]", text) is not None


def tokens(normalized: str, peer: bool = False) -> list[str]:
    """Split normalised text: whitespace between words, and every CJK character a token of its own.

    For text without CJK characters this is ``str.split()``, exactly what the peers do; in text with
    them, Chinese punctuation (and curly quotes) separates tokens and is dropped. ``peer``: the peers'
    plain whitespace split for every text.
    """
    if peer or not has_cjk(normalized):
        return normalized.split()
    return _TOKEN.findall(normalized.translate(_ZH_PUNCT_TABLE))


def bleu1(hypothesis: list[str], reference: list[str]) -> float:
    """Sentence BLEU-1 (clipped unigram precision x brevity penalty), no smoothing.

    nltk's ``sentence_bleu`` with unigram weight, as LLaVA-Med calls it; equal to torchmetrics'
    ``BLEUScore(n_gram=1)`` that MultiMedEval uses (same brevity penalty, 0 when no unigram matches).
    """
    from nltk.translate.bleu_score import sentence_bleu

    if not hypothesis:
        return 0.0
    return float(sentence_bleu([reference], hypothesis, weights=(1.0,)))


# --- LLaVA-Med ---------------------------------------------------------------------------------------
YES_NO = {"yes": "yes", "no": "no", "是": "yes", "否": "no"}
"""Gold answers that make a question yes/no ("closed" in MultiMedEval's sense), in both languages."""
PEER_YES_NO = {"yes": "yes", "no": "no"}
"""The peers' own yes/no: English only."""


def _yes_no(peer: bool) -> dict[str, str]:
    return PEER_YES_NO if peer else YES_NO


def llava_med_prf(prediction: str, gold: str, peer: bool = False) -> tuple[float, float, float]:
    """``(f1, precision, recall)`` of LLaVA-Med's ``calculate_f1score``; its recall is the "open" number.

    Word counts, not sets, and true positives count the *prediction's* repeats (the reference's quirk, kept
    so that numbers compare). The texts are normalised twice, as there: ``run_eval.evaluate`` normalises
    them and ``calculate_f1score`` does again, and each pass strips at most 32 periods.
    https://github.com/microsoft/LLaVA-Med/blob/v1.0.0/llava/eval/eval_metrics/evaluate_metrics.py
    """
    cand = Counter(tokens(normalize_vqa(normalize_vqa(prediction)), peer))
    ref = Counter(tokens(normalize_vqa(normalize_vqa(gold)), peer))
    if not cand or not ref:
        return 0.0, 0.0, 0.0
    tp = sum(n for w, n in cand.items() if w in ref)
    fp = sum(n for w, n in cand.items() if w not in ref)
    fn = sum(n for w, n in ref.items() if w not in cand)
    if tp == 0:
        return 0.0, 0.0, 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 2 * precision * recall / (precision + recall), precision, recall


def llava_med_bleu1(prediction: str, gold: str, peer: bool = False) -> float:
    """LLaVA-Med's ``bleu_score_1``: nltk sentence BLEU with weights (1, 0, 0, 0) on normalised words
    (normalised once there)."""
    return bleu1(tokens(normalize_vqa(prediction), peer), tokens(normalize_vqa(gold), peer))


def llava_med_closed_hit(prediction: str, gold: str, peer: bool = False) -> bool:
    """LLaVA-Med's closed rule: the normalised prediction says yes or no and contains the gold as a substring.

    Substrings, as in the reference (so "not" counts as saying "no"). Chinese predictions may say 是/否
    instead (not with ``peer``). Every closed question counts, so the accuracy's denominator is all closed
    questions, as in ``run_eval.py``; its sibling ``run_eval_batch_pvqa.py`` forgets to count a miss when
    the prediction says yes/no but not the gold, which inflates its closed accuracy.
    https://github.com/microsoft/LLaVA-Med/blob/v1.0.0/llava/eval/run_eval.py
    """
    pred, ref = normalize_vqa(prediction), normalize_vqa(gold)
    says = any(w in pred for w in _yes_no(peer))
    return says and ref in pred


# --- MultiMedEval ------------------------------------------------------------------------------------
def multimedeval_vqa(prediction: str, gold: str, peer: bool = False) -> dict[str, float | bool]:
    """One question scored as MultiMedEval's ``VQA.evaluate`` does.

    The gold is stripped first (``answer.lower().strip()`` there). Token *sets* after normalisation:
    precision, recall, F1 = 2PR / (P + R + 1e-8), BLEU-1. A question is closed when the gold is yes/no; for
    "no", "not" joins the gold set (and 不 joins 否, the Chinese analogue, unless ``peer``); a closed answer
    is correct when that recall >= 0.4, an open one when recall >= 0.75.
    https://github.com/corentin-ryr/MultiMedEval/blob/main/multimedeval/task_families.py
    """
    clean_pred, clean_gold = normalize_vqa(prediction), normalize_vqa(str(gold).lower().strip())
    pred_set, gold_set = set(tokens(clean_pred, peer)), set(tokens(clean_gold, peer))
    common = len(pred_set & gold_set)
    precision = common / len(pred_set) if pred_set else 0.0
    recall = common / len(gold_set) if gold_set else 0.0
    f1 = 2 * precision * recall / (precision + recall + 1e-8)
    closed = clean_gold in _yes_no(peer)
    if closed:
        if gold_set in ({"no"}, {"否"}):
            gold_set = gold_set | ({"not"} if "no" in gold_set else {"不"})
        correct = len(pred_set & gold_set) / len(gold_set) >= 0.4
    else:
        correct = recall >= 0.75
    return {"precision": precision, "recall": recall, "f1": f1,
            "bleu1": bleu1(tokens(clean_pred, peer), tokens(clean_gold, peer)), "closed": closed,
            "correct": correct}


# --- lmms-eval SLAKE ---------------------------------------------------------------------------------
EN_YES = {"yes", "yeah", "yep", "true"}
EN_NO = {"no", "nope", "false"}
ZH_YES = {"是", "是的", "有", "包含", "可以", "能", "会", "正常"}
ZH_NO = {"否", "不是", "没有", "无", "不包含", "不能", "不会", "不可以", "不正常", "异常"}
_EM_PUNCT_TABLE = str.maketrans({c: " " for c in string.punctuation + LMMS_ZH_PUNCTUATION})


def normalize_exact(text: str) -> str:
    """lmms-eval's SLAKE ``normalize_answer``: strip, lower-case, drop parenthesised asides (ASCII and
    full-width), punctuation (ASCII and Chinese) -> space, squeeze spaces, "x ray" -> "xray", and map
    yes/no synonyms in both languages to "yes"/"no".
    https://github.com/EvolvingLMMs-Lab/lmms-eval/blob/main/lmms_eval/tasks/slake/utils.py
    """
    text = str(text).strip().lower()
    text = re.sub(r"\([^)]*\)", " ", text)
    text = re.sub(r"（[^）]*）", " ", text)
    text = re.sub(r"\s+", " ", text.translate(_EM_PUNCT_TABLE)).strip()
    if text in {"x ray", "xray"}:
        return "xray"
    if text in EN_YES or text in ZH_YES:
        return "yes"
    if text in EN_NO or text in ZH_NO:
        return "no"
    return text


def exact_match(prediction: str, gold: str) -> bool:
    """lmms-eval SLAKE accuracy for one question: normalised prediction == normalised gold."""
    return normalize_exact(prediction) == normalize_exact(gold)
