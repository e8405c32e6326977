"""hyperscene.pipelines.hf_tokenizer on tiny randomly initialised models built here, with the bundled
MiniLM tokenizer (a real WordPiece vocabulary, loaded offline)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hyperscene.pipelines.hf_tokenizer import add_hyperword_tokens, load_vocabulary

VOCAB = [
    {"token": "<hw_0_0>", "id": 0, "level": 0, "code": 0, "count": 3, "representative_id": "u0",
     "representative_text": "the cat sat on the mat"},
    {"token": "<hw_0_1>", "id": 1, "level": 0, "code": 1, "count": 1, "representative_id": "u1",
     "representative_text": "Alice was beginning to get very tired of sitting by her sister"},
    {"token": "<hw_1_0>", "id": 2, "level": 1, "code": 0, "count": 0, "representative_id": None,
     "representative_text": None},  # an empty cluster: no representative
]


@pytest.fixture
def tokenizer(model_folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_folder, local_files_only=True)


def tiny_bert(vocab_size: int):
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=64))


def tiny_gpt2(vocab_size: int, tied: bool):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_embd=16, n_layer=1, n_head=2, n_positions=64,
                                      tie_word_embeddings=tied))


def expected_rows(tokenizer, old: np.ndarray, rows: list[dict]) -> np.ndarray:
    """Each row: the mean of ``old``'s rows of its representative text's tokens (all rows if none)."""
    out = []
    for r in rows:
        ids = tokenizer(r["representative_text"] or "", add_special_tokens=False)["input_ids"]
        out.append(old[ids].mean(axis=0) if ids else old.mean(axis=0))
    return np.stack(out)


def test_new_rows_are_the_mean_of_the_representative_texts_embeddings(tokenizer):
    model = tiny_bert(len(tokenizer))
    old = model.get_input_embeddings().weight.detach().numpy().copy()
    want = expected_rows(tokenizer, old, VOCAB)
    n = len(tokenizer)

    added = add_hyperword_tokens(tokenizer, model, VOCAB)

    assert added == {"<hw_0_0>": n, "<hw_0_1>": n + 1, "<hw_1_0>": n + 2}
    assert len(tokenizer) == n + 3
    weight = model.get_input_embeddings().weight.detach().numpy()
    assert weight.shape == (n + 3, 16) and model.config.vocab_size == n + 3
    assert np.array_equal(weight[:n], old)  # the model's own rows are untouched
    assert np.allclose(weight[n:], want, atol=1e-6)
    assert not np.allclose(weight[n], weight[n + 1])  # different texts, different rows
    # Each token is one piece of the tokenizer now, also next to other text.
    assert tokenizer("Then <hw_0_1> and <hw_1_0>", add_special_tokens=False)["input_ids"][1::2][:2] == [n + 1, n + 2]
    assert tokenizer.decode([n, n + 2], skip_special_tokens=True).split() == ["<hw_0_0>", "<hw_1_0>"]

    # A second run adds nothing and changes nothing.
    before = weight.copy()
    assert add_hyperword_tokens(tokenizer, model, VOCAB) == {}
    assert len(tokenizer) == n + 3 and np.array_equal(model.get_input_embeddings().weight.detach().numpy(), before)


@pytest.mark.parametrize("tied", [True, False])
def test_output_embeddings_tied_or_their_own(tokenizer, tied):
    model = tiny_gpt2(len(tokenizer), tied)
    old_in = model.get_input_embeddings().weight.detach().numpy().copy()
    old_out = model.get_output_embeddings().weight.detach().numpy().copy()
    assert np.array_equal(old_in, old_out) == tied
    n = len(tokenizer)

    added = add_hyperword_tokens(tokenizer, model, VOCAB[:2])

    assert list(added.values()) == [n, n + 1]
    new_in = model.get_input_embeddings().weight.detach().numpy()
    new_out = model.get_output_embeddings().weight.detach().numpy()
    assert new_in.shape == new_out.shape == (n + 2, 16)
    assert np.allclose(new_in[n:], expected_rows(tokenizer, old_in, VOCAB[:2]), atol=1e-6)
    # Untied: the output rows come from the output matrix's own rows of the same tokens.
    assert np.allclose(new_out[n:], expected_rows(tokenizer, old_out, VOCAB[:2]), atol=1e-6)
    assert np.array_equal(new_out[:n], old_out)


def test_levels_and_vocabulary_files(tokenizer, tmp_path):
    (tmp_path / "vocab.jsonl").write_text("".join(json.dumps(r) + "\n" for r in VOCAB), encoding="utf-8")
    assert load_vocabulary(str(tmp_path)) == load_vocabulary(str(tmp_path / "vocab.jsonl")) == VOCAB
    model = tiny_bert(len(tokenizer))
    added = add_hyperword_tokens(tokenizer, model, str(tmp_path), levels=[1])
    assert list(added) == ["<hw_1_0>"]
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)

    (tmp_path / "other.jsonl").write_text(json.dumps({"token": "hello"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a hyperword token"):
        load_vocabulary(str(tmp_path / "other.jsonl"))
