"""hyperscene encode and its Python API on the sample corpus's store (conftest's ``sample_store``,
read-only), with the store's real model; the Hugging Face wrapper on a tiny model built here."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from conftest import SAMPLE_CORPUS
from hyperscene.pipelines import encode as encode_command
from hyperscene.pipelines.cli import main
from hyperscene.transforms.errors import InvalidOption
from hyperscene.transforms.export import parse_token
from hyperscene.transforms.store.reader import StoreVersion
from hyperscene.transforms.unit_ids import unit_hex


@pytest.fixture(scope="module")
def encoder(sample_store):
    from hyperscene.transforms.encoder import Encoder

    return Encoder.from_store(str(sample_store))


@pytest.fixture(scope="module")
def stored(sample_store):
    """The store's documents' texts and occurrences, read directly (not through the code under test)."""
    from hyperscene.transforms.inputs import discover
    from hyperscene.transforms.read import read_input_file

    store = StoreVersion(str(sample_store))
    occurrences = defaultdict(list)
    for o in sorted(store.read("occurrences", ["doc_id", "position", "unit_id", "hyperword", "semantic_id"]).to_pylist(),
                    key=lambda o: (o["doc_id"], o["position"])):
        occurrences[o["doc_id"]].append(o)
    texts = {r["doc_id"]: r["text"] for f in discover([str(SAMPLE_CORPUS)]) for tag, r in read_input_file(f) if tag == "documents"}
    units = store.read("units", ["unit_id", "text"]).to_pydict()
    return {"occurrences": occurrences, "texts": texts, "unit_text": dict(zip(map(unit_hex, units["unit_id"]), units["text"])),
            "store": store}


def test_encoding_the_store_s_own_corpus_gives_every_unit_its_stored_hyperword_and_semantic_id(encoder, stored):
    docs = list(encoder.encode_many(sorted(stored["texts"].items())))
    assert [d.doc_id for d in docs] == sorted(stored["texts"])
    units = same_semantic = 0
    for doc in docs:
        assert doc.text() == stored["texts"][doc.doc_id]  # byte for byte, CRLF and all
        rows = stored["occurrences"][doc.doc_id]
        assert [u.unit_id for u in doc.units] == [unit_hex(o["unit_id"]) for o in rows]
        assert [u.hyperword for u in doc.units] == [o["hyperword"] for o in rows]
        assert all(u.stored and u.match.kind == "exact" and u.match.unit_id == u.unit_id for u in doc.units)
        units += len(rows)
        same_semantic += sum(tuple(o["semantic_id"]) == u.semantic_id for o, u in zip(rows, doc.units))
    # Scenes are cut again on vectors embedded in other batches than compress's: measured 100% here
    assert same_semantic / units >= 0.99, (same_semantic, units)


def test_a_near_duplicate_matches_the_stored_unit_a_refresh_would_merge_it_into(encoder, stored):
    segment = encoder._segmenter.segment
    by_length = sorted((t for t in stored["unit_text"].values() if len(t.split()) >= 8 and t.endswith(".")), key=len)
    # a sentence the segmenter keeps whole on its own, with another final mark
    original = next(t for t in by_length[len(by_length) // 2:] if len(segment(t[:-1] + "!").units) == 1)
    variant = original[:-1] + "!"
    unrelated = "Quantum chromodynamics describes the strong interaction."
    assert len(segment(unrelated).units) == 1
    doc = encoder.encode(f"{variant}\n\n{unrelated}\n", "new")
    near, other = doc.units
    assert not near.stored and near.match is not None and near.match.kind == "near"
    assert near.match.score >= encoder._threshold and near.match.method.startswith("cosine+")
    assert stored["unit_text"][near.match.unit_id].split()[:-1] == original.split()[:-1]
    assert not other.stored and other.match is None
    assert doc.text() == f"{variant}\n\n{unrelated}\n"


def test_tokens_and_the_way_back_through_the_command(sample_store, stored, tmp_path, capsys):
    corpus = SAMPLE_CORPUS / "alice-in-wonderland.txt"
    tokens_file, back_file = tmp_path / "tokens.txt", tmp_path / "back.txt"
    assert main(["encode", str(sample_store), str(corpus), "--format", "tokens", "--out", str(tokens_file)]) == 0
    assert "encoded 1 documents" in capsys.readouterr().err
    (line,) = tokens_file.read_text(encoding="utf-8").splitlines()
    doc_id = next(d for d in stored["texts"] if d.startswith("alice"))
    assert [parse_token(t) for t in line.split()] == [(0, o["hyperword"]) for o in stored["occurrences"][doc_id]]

    # the way back: each hyperword's representative text, as the hyperwords table keeps it
    first = " ".join(line.split()[:3])
    (tokens_file).write_text(first + "\n", encoding="utf-8")
    assert main(["encode", str(sample_store), "--decode", str(tokens_file), "--out", str(back_file)]) == 0
    representative = dict(zip(*stored["store"].read("hyperwords", ["hyperword", "representative_text"]).to_pydict().values()))
    want = " | ".join(" ".join(representative[parse_token(t)[1]].split()) for t in first.split())
    assert back_file.read_text(encoding="utf-8") == want + "\n"

    # scene tokens: the level-1 codes of the document's scenes
    assert main(["encode", str(sample_store), str(corpus), "--format", "tokens", "--level", "1", "--out", str(tokens_file)]) == 0
    level1 = [parse_token(t) for t in tokens_file.read_text(encoding="utf-8").split()]
    scenes = stored["store"].read("scenes", ["doc_id", "level", "index", "code"]).to_pylist()
    assert level1 == [(1, s["code"]) for s in sorted(scenes, key=lambda s: s["index"]) if s["doc_id"] == doc_id and s["level"] == 1]


def test_jsonl_records_hold_every_unit_and_no_version_is_written(sample_store, tmp_path):
    before = sorted(p.name for p in sample_store.iterdir())
    source = tmp_path / "new.jsonl"
    source.write_text(json.dumps({"text": "Down the rabbit hole.\r\nShe fell."}) + "\n" + json.dumps({"text": 3}) + "\n",
                      encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = encode_command.run([str(sample_store), str(source), "--input-format", "jsonl", "--out", str(out)])
    assert result["documents"] == 1 and result["skipped"] == 1  # the record without text is counted, not fatal
    (record,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert record["prefix"] + "".join(u["text"] + u["separator"] for u in record["units"]) == "Down the rabbit hole.\r\nShe fell."
    assert {"hyperword", "semantic_id", "match", "unit_id", "hyperword_score"} <= set(record["units"][0])
    assert sorted(p.name for p in sample_store.iterdir()) == before


def test_coded_errors(sample_store, encoder, tmp_path):
    with pytest.raises(InvalidOption, match=r"\[E701\]"):
        encoder.representative_texts(["hw_0_1"])
    with pytest.raises(InvalidOption, match=r"\[E702\]"):
        encoder.representative_texts(["<hw_0_999999>"])
    with pytest.raises(InvalidOption, match=r"\[E703\]"):
        list(encoder.encode_many(["text"], batch_units=0))
    with pytest.raises(InvalidOption, match=r"\[E274\]"):
        encode_command.run([str(sample_store), str(SAMPLE_CORPUS), "--format", "tokens", "--level", "99",
                            "--out", str(tmp_path / "x")])


@pytest.fixture(scope="module")
def hyperword_export(sample_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("hw") / "export"
    assert main(["export", str(sample_store), "--format", "hyperwords", "--out", str(out)]) == 0
    return out


def byte_level_tokenizer():
    """A GPT-2-style byte-level BPE tokenizer trained here on a few lines: no [CLS]/[SEP], and a
    space between two added tokens is a token of its own."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["Alice was beginning to get very tired of sitting by her sister on the bank."] * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


TEXTS = ["Alice was beginning to get very tired. She had peeped into the book her sister was reading!",
         "It was the best of times."]


@pytest.mark.parametrize("kind", ["wordpiece", "byte-level"])
def test_a_model_extended_with_the_store_s_tokens_takes_raw_text_in_one_call(kind, encoder, hyperword_export, model_folder):
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from hyperscene.pipelines.hf_tokenizer import HyperwordTokenizer, add_hyperword_tokens

    tokenizer = (AutoTokenizer.from_pretrained(model_folder, local_files_only=True) if kind == "wordpiece"
                 else byte_level_tokenizer())
    with pytest.raises(InvalidOption, match=r"\[E705\]"):
        HyperwordTokenizer(encoder, tokenizer)("Not yet extended.")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, n_positions=512))
    added = add_hyperword_tokens(tokenizer, model, str(hyperword_export))
    hw = HyperwordTokenizer(encoder, tokenizer)

    # the model gets what it learnt from the export: the tokenizer on the export's token string
    strings = [" ".join(encoder.encode(t).tokens(0)) for t in TEXTS]
    assert hw.code_strings(TEXTS) == strings
    batch = hw(TEXTS, padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == tokenizer(strings, padding=True, return_tensors="pt")["input_ids"].tolist()
    logits = model(**batch).logits
    assert logits.shape[:2] == batch["input_ids"].shape and logits.shape[2] == len(tokenizer)
    for ids, mask, text in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(), TEXTS):
        hyperword_ids = [i for i, m in zip(ids, mask) if m and i in added.values()]
        assert hyperword_ids == [added[t] for t in encoder.encode(text).tokens(0)]
    single = hw(TEXTS[1], return_tensors="pt")
    assert single["input_ids"].shape[0] == 1  # a batch of one, as the tokenizer gives it
    assert model(**single).logits.shape[0] == 1
    truncated = hw(TEXTS[0], truncation=True, max_length=2)["input_ids"]
    assert len(truncated) == 2 and truncated == tokenizer(strings[0], truncation=True, max_length=2)["input_ids"]
    # back from ids: what each hyperword token stands for
    want = " | ".join(" ".join(t.split()) for t in encoder.representative_texts(encoder.encode(TEXTS[1]).tokens(0)))
    assert hw.decode(single["input_ids"][0], skip_special_tokens=True) == want


def test_batching_and_the_candidate_cache_change_no_result(encoder):
    text = "Alice was beginning to get very tired!\n\nThe Queen said nothing at all. She went away."
    one_by_one = list(encoder.encode_many([("a", text), ("b", text + " And then?")], batch_units=1))
    together = list(encoder.encode_many([("a", text), ("b", text + " And then?")]))
    assert [d.as_dict() for d in one_by_one] == [d.as_dict() for d in together]
    # a full cache is emptied and refilled within one call: every id asked for comes back
    encoder.candidate_cache, cached = 2, dict(encoder._candidate_vectors)
    try:
        import numpy as np

        encoder._candidate_vectors.clear()
        first = encoder._embed_candidates(np.array([1, 2]), ["one", "two"])
        again = encoder._embed_candidates(np.array([2, 3]), ["two", "three"])
        assert len(again) == 2 and np.allclose(again[0], first[1], atol=1e-2)
    finally:
        encoder.candidate_cache = 50_000
        encoder._candidate_vectors.clear()
        encoder._candidate_vectors.update(cached)
