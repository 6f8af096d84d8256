"""The CheXbert adapter against the real ``f1chexbert`` package: its labeler, tokenizer and scoring code run
as published, on a tiny randomly initialised BERT in place of the weights it would fetch (none can be
fetched here). What is checked is the adapter: that it calls the package as the package expects and reads
the numbers it returns under their names."""

from __future__ import annotations

import pytest
from f1chexbert import f1chexbert  # the test extra installs it


def tiny_bert_config(vocab_size: int):
    """The tiny BERT that stands in for each package's published encoder."""
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=64)


@pytest.fixture()
def tiny_chexbert(tmp_path, monkeypatch):
    """``chexbert.pth`` in the package's cache dir from a tiny BERT; the package's two hub lookups
    (``bert-base-uncased`` config and tokenizer) answered from local tiny ones."""
    import torch
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "no", "acute", "pleural", "effusion", "large",
             "cardiomegaly", "edema", "the", "heart", "is", "normal", "size", "."]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n", encoding="utf-8")
    config = tiny_bert_config(len(words))
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


@pytest.fixture()
def tiny_radgraph(tmp_path, monkeypatch):
    """The ``radgraph`` package's model folder (``config.json``, AllenNLP ``vocabulary/``, ``weights.th``)
    for a tiny randomly initialised DyGIE over a tiny local BERT, built with the package's own classes and
    put where the package looks for its cache."""
    import json

    import torch
    from dotmap import DotMap
    from radgraph import radgraph as package
    from radgraph.allennlp.data import Vocabulary
    from radgraph.allennlp.modules import text_field_embedders, token_embedders
    from radgraph.dygie.models import dygie
    from transformers import BertModel, BertTokenizer

    from doctorsun.eval.report_metrics import _radgraph_tokenizers

    _radgraph_tokenizers()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "1", "2", "no", "acute", "pleural", "effusion",
             "large", "cardiomegaly", "edema", "the", "heart", "is", "normal", "size", ".", "left", "lung", "in"]
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    BertTokenizer(str(bert / "vocab.txt")).save_pretrained(bert)
    torch.manual_seed(0)
    BertModel(tiny_bert_config(len(words))).save_pretrained(bert)
    folder = tmp_path / "cache" / "radgraph"
    folder.mkdir(parents=True)
    bert_args = {"model_name": str(bert), "max_length": 64}
    config = {"dataset_reader": {"max_span_width": 4, "token_indexers": {"bert": bert_args}},
              "model": {"type": "dygie", "initializer": {}, "module_initializer": {},
                        "embedder": {"token_embedders": {"bert": bert_args}},
                        "feature_size": 4, "max_span_width": 4, "target_task": "relation",
                        "feedforward_params": {"num_layers": 1, "hidden_dims": 8, "dropout": 0.0},
                        "loss_weights": {"ner": 1.0, "relation": 1.0, "coref": 0.0, "events": 0.0},
                        "modules": {"ner": {}, "coref": {"spans_per_word": 0.3, "max_antecedents": 10},
                                    "relation": {"spans_per_word": 0.5},
                                    "events": {"trigger_spans_per_word": 0.3, "argument_spans_per_word": 0.8,
                                               "loss_weights": {"trigger": 1.0, "arguments": 0.5}}}}}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    vocab = Vocabulary()
    for label in ["", "ANAT-DP", "OBS-DP", "OBS-U", "OBS-DA"]:  # "" first: the package's null label
        vocab.add_token_to_namespace(label, "radgraph__ner_labels")
    for label in ["", "located_at", "modify", "suggestive_of"]:
        vocab.add_token_to_namespace(label, "radgraph__relation_labels")
    vocab.save_to_files(str(folder / "vocabulary"))
    embedder = text_field_embedders.BasicTextFieldEmbedder(
        {"bert": token_embedders.PretrainedTransformerMismatchedEmbedder(**bert_args)})
    model_args = DotMap(config).model
    for name in ["type", "embedder", "initializer", "module_initializer"]:
        del model_args[name]
    model = dygie.DyGIE(vocab=Vocabulary.from_files(str(folder / "vocabulary")), embedder=embedder, **model_args)
    torch.save(model.state_dict(), folder / "weights.th")
    monkeypatch.setattr(package, "CACHE_DIR", str(tmp_path / "cache"))
    return folder


def test_radgraph_adapter_reads_the_packages_numbers(tiny_radgraph):
    from radgraph import F1RadGraph

    from doctorsun.eval.report_metrics import clinical_scores

    refs = ["No acute cardiomegaly.", "Large pleural effusion in the left lung.", "The heart is normal size."]
    same = clinical_scores(["radgraph"], refs, refs)["radgraph"]
    assert same == {"radgraph_f1_simple": 1.0, "radgraph_f1_partial": 1.0, "radgraph_f1_complete": 1.0}, same
    hyps = ["edema", "Pleural effusion in the lung.", "no"]
    other = clinical_scores(["radgraph"], hyps, refs)["radgraph"]
    for level in ("simple", "partial", "complete"):  # the package's own call at each level, as a user makes it
        expected = F1RadGraph(reward_level=level, model_type="radgraph")(refs=refs, hyps=hyps)[0]
        assert other[f"radgraph_f1_{level}"] == pytest.approx(float(expected)), level
    assert "error" in clinical_scores(["radgraph-xl"], hyps, refs)["radgraph-xl"]  # no such model folder here


def test_radgraph_tokenizer_methods_restored(tiny_radgraph):
    """The two methods the package's AllenNLP calls, as transformers 4 answered them for BERT."""
    from radgraph.allennlp.common import cached_transformers

    tok = cached_transformers.get_tokenizer(str(tiny_radgraph.parent.parent / "bert"))
    assert tok.build_inputs_with_special_tokens([9, 10]) == [2, 9, 10, 3]
    got = tok.encode_plus("1", "2", add_special_tokens=True, return_token_type_ids=True)
    assert got["input_ids"] == [2, 5, 3, 6, 3] and got["token_type_ids"] == [0, 0, 0, 1, 1]
