"""Report-generation metrics, from the libraries report-generation papers use, on the corpus:

- BLEU-1..4, ROUGE-L and CIDEr(-D): ``pycocoevalcap`` (the COCO caption evaluation code that R2Gen and
  its successors report), on lower-cased word tokens with punctuation dropped;
- METEOR: nltk's ``meteor_score`` (exact and Porter-stem matches; WordNet synonyms when nltk's WordNet
  corpus is installed), the same on every machine; with ``DOCTORSUN_METEOR=java`` (or ``auto``: Java when
  there is one) ``pycocoevalcap``'s reference Java METEOR 1.5, the number papers print. The score file
  names the implementation used, because the two differ slightly.
- clinical metrics that need model weights (CheXbert F1, RadGraph F1): ``CLINICAL`` adapters for the
  ``f1chexbert`` and ``radgraph`` packages, or any ``module:function`` taking ``(predictions,
  references)`` and returning ``{name: value}``; reported under their own names, or with the reason
  they could not run.
"""

from __future__ import annotations

import importlib
import io
import os
import re
import shutil
from collections.abc import Callable, Sequence
from contextlib import redirect_stdout
from functools import partial
from statistics import fmean
from typing import Any

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[\u4e00-\u9fff]")

METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "meteor", "cider")


def tokens(text: str) -> str:
    """Lower-cased words (each Chinese character one word), punctuation dropped, space-joined."""
    return " ".join(_WORD.findall(text.lower()))


def corpus_scores(predictions: Sequence[str], references: Sequence[str], meteor: str | None = None) -> dict[str, Any]:
    """BLEU-1..4, ROUGE-L, METEOR and CIDEr of ``predictions`` against one reference each; ``meteor``:
    nltk, java or auto (default: ``$DOCTORSUN_METEOR``, else nltk)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    # pycocoevalcap refuses empty hypotheses; a one-word placeholder that matches nothing scores as zero.
    res = {i: [tokens(p) or "<empty>"] for i, p in enumerate(predictions)}
    gts = {i: [tokens(r) or "<empty>"] for i, r in enumerate(references)}
    with redirect_stdout(io.StringIO()):  # pycocoevalcap prints its counts
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        rouge, _ = Rouge().compute_score(gts, res)
        cider, _ = Cider().compute_score(gts, res)
    meteor_value, how = _meteor(gts, res, meteor or os.environ.get("DOCTORSUN_METEOR", "nltk"))
    return {**{f"bleu_{n + 1}": float(bleu[n]) for n in range(4)}, "rouge_l": float(rouge), "meteor": meteor_value,
            "cider": float(cider), "n": len(predictions),
            "implementation": {"bleu_rouge_cider": "pycocoevalcap", "meteor": how, "tokens": "lower-cased words"}}


def _meteor(gts: dict[int, list[str]], res: dict[int, list[str]], which: str) -> tuple[float, str]:
    if which not in ("auto", "java", "nltk"):
        raise ValueError(f"meteor must be auto, java or nltk, not {which!r}")
    if which == "java" or (which == "auto" and shutil.which("java")):
        try:
            from pycocoevalcap.meteor.meteor import Meteor

            scorer = Meteor()
            try:
                score, _ = scorer.compute_score(gts, res)
            finally:
                scorer.close() if hasattr(scorer, "close") else None
            return float(score), "pycocoevalcap (Java METEOR 1.5)"
        except Exception:  # noqa: BLE001 - a broken Java setup falls back to nltk, named in the score file
            if which == "java":
                raise
    from nltk.translate.meteor_score import meteor_score

    wordnet, how = _wordnet()
    values = [meteor_score([gts[i][0].split()], res[i][0].split(), wordnet=wordnet) for i in gts]
    return fmean(values), how


class _NoSynonyms:
    """Stands in for nltk's WordNet when its corpus is not installed: no synonym matches."""

    @staticmethod
    def synsets(*args, **kwargs) -> list:
        return []


def _wordnet():
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        return wordnet, "nltk meteor_score (exact, stem, WordNet synonyms)"
    except LookupError:
        return _NoSynonyms(), "nltk meteor_score (exact and stem matches; no WordNet corpus installed)"


def chexbert_tokenize(impressions, tokenizer) -> list[list[int]]:
    """f1chexbert's ``tokenize`` without ``encode_plus`` (gone in transformers 5): each report stripped, its
    whitespace collapsed, its WordPiece ids between [CLS] and [SEP], cut to 512 ids ending in [SEP]; an empty
    report is [CLS] [SEP]."""
    out = []
    for text in impressions:
        words = tokenizer.tokenize(re.sub(r"\s+", " ", str(text).replace("\n", " ")).strip())
        ids = [tokenizer.cls_token_id, *tokenizer.convert_tokens_to_ids(words), tokenizer.sep_token_id]
        out.append(ids[:511] + [tokenizer.sep_token_id] if len(ids) > 512 else ids)
    return out


def _chexbert(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """f1chexbert's labeler on each report, then its scores (accuracy on the 5 main findings, F1 over the 14
    and the 5) computed here as its ``forward`` does with scikit-learn's public functions: ``forward`` also
    calls a private one whose signature changed."""
    import warnings

    import numpy as np
    from f1chexbert import F1CheXbert
    from f1chexbert import f1chexbert as package
    from sklearn.metrics import accuracy_score, classification_report
    from transformers import PreTrainedTokenizerBase

    if not hasattr(PreTrainedTokenizerBase, "encode_plus"):
        package.tokenize = chexbert_tokenize  # the package's own calls encode_plus
    scorer = F1CheXbert()
    refs = [scorer.get_label(r.strip()) for r in references]
    hyps = [scorer.get_label(h.strip()) for h in predictions]
    five = scorer.target_names_5_index
    refs_5, hyps_5 = [np.array(r)[five] for r in refs], [np.array(h)[five] for h in hyps]
    with warnings.catch_warnings():  # an F1 with no positive label is 0, as the package reports it
        warnings.simplefilter("ignore")
        report = classification_report(refs, hyps, target_names=scorer.target_names, output_dict=True)
        report_5 = classification_report(refs_5, hyps_5, target_names=scorer.target_names_5, output_dict=True)
    return {"chexbert_accuracy": float(accuracy_score(refs_5, hyps_5)),
            "chexbert_f1_micro_14": float(report["micro avg"]["f1-score"]),
            "chexbert_f1_macro_14": float(report["macro avg"]["f1-score"]),
            "chexbert_f1_micro_5": float(report_5["micro avg"]["f1-score"])}


def _radgraph_tokenizers() -> None:
    """The ``radgraph`` package's tokenizers given back the two methods that its vendored AllenNLP calls and
    transformers 5 removed: ``encode_plus`` (now the tokenizer's own call, same arguments) and
    ``build_inputs_with_special_tokens`` (ids between the special tokens that the tokenizer adds around one
    sequence)."""
    from radgraph.allennlp.common import cached_transformers as cached
    from transformers import PreTrainedTokenizerBase

    if hasattr(PreTrainedTokenizerBase, "encode_plus") or getattr(cached, "_doctorsun_shim", False):
        return
    get = cached.get_tokenizer

    def get_tokenizer(model_name: str, **kwargs):
        tokenizer = get(model_name, **kwargs)
        if not hasattr(tokenizer, "encode_plus"):
            tokenizer.encode_plus = tokenizer.__call__
        if not hasattr(tokenizer, "build_inputs_with_special_tokens"):
            marked = tokenizer("1")["input_ids"]
            bare = tokenizer("1", add_special_tokens=False)["input_ids"]
            at = marked.index(bare[0])
            start, end = marked[:at], marked[at + len(bare):]
            tokenizer.build_inputs_with_special_tokens = lambda ids, pair=None: [*start, *ids, *end]
        return tokenizer

    cached.get_tokenizer = get_tokenizer
    cached._doctorsun_shim = True


def _radgraph(predictions: Sequence[str], references: Sequence[str], model_type: str = "radgraph"
              ) -> dict[str, float]:
    """The ``radgraph`` package's F1RadGraph with its ``model_type`` model at the three reward levels
    (entities; entities and relations, partial credit; complete), each the mean over reports."""
    from radgraph import F1RadGraph

    _radgraph_tokenizers()
    mean, _, _, _ = F1RadGraph(reward_level="all", model_type=model_type)(hyps=list(predictions),
                                                                            refs=list(references))
    prefix = model_type.replace("-", "_")
    return {f"{prefix}_f1_{level}": float(x) for level, x in zip(("simple", "partial", "complete"), mean,
                                                                 strict=True)}


CLINICAL: dict[str, Callable[[Sequence[str], Sequence[str]], dict[str, float]]] = {
    "chexbert": _chexbert, "radgraph": _radgraph, "radgraph-xl": partial(_radgraph, model_type="radgraph-xl")}
"""Built-in clinical metrics (their packages fetch or read their own weights): ``radgraph`` is the original
RadGraph model that RadGraph F1 was defined with, ``radgraph-xl`` the package's larger one."""


def clinical_scores(names: Sequence[str], predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Each clinical metric by name (``chexbert``, ``radgraph`` or ``module:function``): its values, or
    ``{"error": why}`` when it could not run (package or weights missing). The run goes on either way."""
    out: dict[str, Any] = {}
    for name in names:
        try:
            if name in CLINICAL:
                fn = CLINICAL[name]
            elif ":" in name:
                module, _, attr = name.partition(":")
                fn = getattr(importlib.import_module(module), attr)
            else:
                raise ValueError(f"unknown clinical metric {name!r}; known: {', '.join(CLINICAL)} or module:function")
            values = fn(predictions, references)
            out[name] = {k: float(v) for k, v in dict(values).items()}
        except Exception as exc:  # noqa: BLE001 - reported in the score file under the metric's name
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out
