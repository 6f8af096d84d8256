"""The CheXbert adapter against the real ``f1chexbert`` package: its labeler, tokenizer and scoring code run
as published, on a tiny randomly initialised BERT in place of the weights it would fetch (none can be
fetched here). What is checked is the adapter: that it calls the package as the package expects and reads
the numbers it returns under their names."""

from __future__ import annotations

import pytest
from f1chexbert import f1chexbert  # the test extra installs it


@pytest.fixture()
def tiny_chexbert(tmp_path, monkeypatch):
    """``chexbert.pth`` in the package's cache dir from a tiny BERT; the package's two hub lookups
    (``bert-base-uncased`` config and tokenizer) answered from local tiny ones."""
    import torch
    from transformers import BertConfig, BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "no", "acute", "pleural", "effusion", "large",
             "cardiomegaly", "edema", "the", "heart", "is", "normal", "size", "."]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n", encoding="utf-8")
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    monkeypatch.setattr(f1chexbert.BertTokenizer, "from_pretrained", lambda *a, **k: BertTokenizer(str(vocab)))
    monkeypatch.setattr(f1chexbert.AutoConfig, "from_pretrained", lambda *a, **k: config)
    monkeypatch.setattr(f1chexbert, "CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    labeler = f1chexbert.bert_labeler(inference=True)
    (tmp_path / "cache").mkdir()
    state = {f"module.{k}": v for k, v in labeler.state_dict().items()}  # saved from DataParallel, as published
    torch.save({"model_state_dict": state}, tmp_path / "cache" / "chexbert.pth")
    return labeler


def test_chexbert_adapter_reads_the_packages_numbers(tiny_chexbert):
    from doctorsun.eval.report_metrics import clinical_scores

    refs = ["No acute cardiomegaly.", "Large pleural effusion.", "The heart is normal size."]
    same = clinical_scores(["chexbert"], refs, refs)["chexbert"]
    assert set(same) == {"chexbert_accuracy", "chexbert_f1_micro_14", "chexbert_f1_macro_14",
                         "chexbert_f1_micro_5"}, same
    assert same["chexbert_accuracy"] == 1.0  # a report labelled like itself
    assert all(0.0 <= v <= 1.0 for v in same.values())
    other = clinical_scores(["chexbert"], ["edema", "edema edema", "no"], refs)["chexbert"]
    assert set(other) == set(same) and all(0.0 <= v <= 1.0 for v in other.values())


def test_chexbert_tokenization_without_encode_plus(tiny_chexbert, tmp_path):
    """The package's tokenization, as ``encode_plus`` did it: [CLS] ids [SEP], whitespace collapsed,
    512 ids at most ending in [SEP], an empty report [CLS] [SEP]."""
    import pandas as pd

    from doctorsun.eval.report_metrics import chexbert_tokenize

    tok = f1chexbert.BertTokenizer.from_pretrained("bert-base-uncased")
    got = chexbert_tokenize(pd.Series(["  No acute\n effusion. ", "", "no " * 600]), tok)
    assert got[0] == [2, 5, 6, 8, 17, 3] and got[1] == [2, 3]
    assert len(got[2]) == 512 and got[2][0] == 2 and got[2][-1] == 3 and set(got[2][1:-1]) == {5}
