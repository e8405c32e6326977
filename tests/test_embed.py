import apache_beam as beam
import numpy as np
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from conftest import SAMPLE_CORPUS
from hyperscene.transforms.embed import SentenceTransformerModelHandler
from hyperscene.transforms.model_cache import fingerprint
from hyperscene.transforms.model_catalog import resolve_model
from hyperscene.transforms.errors import ModelNotFound


def test_resolve_bundled_aliases(model_folder):
    for name in ("minilm", "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "bundled"):
        assert resolve_model(name) == (model_folder, "bundled")


def test_resolve_local_folder(model_folder):
    assert resolve_model(model_folder) == (model_folder, "local")


def test_unknown_model_fails_fast_without_a_network(tmp_path):
    with pytest.raises(ModelNotFound, match="unknown model 'no-such/model-xyz'"):
        resolve_model("no-such/model-xyz")
    with pytest.raises(ModelNotFound, match="unknown model 'BAAI/bge-small-en-v1.5'"):
        resolve_model("BAAI/bge-small-en-v1.5")  # a dot in a hub id does not make it a path
    with pytest.raises(ModelNotFound, match="does not exist"):
        resolve_model(str(tmp_path / "missing-model"))
    with pytest.raises(ModelNotFound, match="holds no sentence-transformers model"):
        resolve_model(str(tmp_path))


def test_handler_embeds_with_the_real_bundled_model(model_folder):
    handler = SentenceTransformerModelHandler(model_folder, batch_size=4)
    assert handler.batch_elements_kwargs()["max_batch_size"] == 1  # an example is already a batch of texts
    model = handler.load_model()
    texts = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
    (result,) = handler.run_inference([texts], model)
    vectors = result.inference
    assert list(result.example) == texts
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > 0.6 > sims[0, 2]


def test_a_texts_vector_depends_only_on_its_own_example(model_folder):
    handler = SentenceTransformerModelHandler(model_folder, batch_size=2, max_batch_size=2)
    model = handler.load_model()
    alone = handler.run_inference([["one", "two"]], model)[0].inference
    together = handler.run_inference([["one", "two"], ["three", "a much longer text than the others, to change padding"]], model)
    assert np.array_equal(alone, together[0].inference)


def test_run_inference_on_batched_strings_in_a_pipeline(model_folder):
    handler = SentenceTransformerModelHandler(model_folder, batch_size=2)

    def check(results):
        assert sorted(t for r in results for t in r.example) == ["one", "three", "two"]
        assert all(r.inference.shape == (len(r.example), 384) for r in results)

    with TestPipeline() as p:
        out = p | beam.Create(["one", "two", "three"]) | beam.BatchElements(min_batch_size=2, max_batch_size=2) | RunInference(handler)
        assert_that(out, check)


def test_fingerprint_depends_on_weights(model_folder, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"a")
    first = fingerprint(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"b")
    assert fingerprint(str(tmp_path)) != first


def _bucket(n: int, bucket: int = 3):
    import pyarrow as pa

    from hyperscene.schemas.unit_bucket import UnitBucket

    units = pa.table({"unit_id": [f"{i:032x}" for i in range(n)], "text": [f"text {i}" for i in range(n)],
                      "occurrence_count": [1] * n})
    occurrences = pa.table({"doc_id": ["d"] * n, "position": list(range(n)), "unit_id": units["unit_id"],
                            "separator": [" "] * n})
    return UnitBucket(bucket, units, occurrences)


def test_spilled_vectors_come_back_bit_for_bit(tmp_path):
    from hyperscene.transforms.embed import load_vectors, spill_vectors

    vectors = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    spilled = spill_vectors(_bucket(5).with_vectors(vectors), str(tmp_path / "scratch"))
    assert spilled.vectors is None and spilled.vector_file.endswith("vectors-000003.npy")
    assert np.array_equal(load_vectors(spilled), vectors)


def test_load_vectors_says_what_is_missing_or_stale(tmp_path):
    from dataclasses import replace

    from hyperscene.transforms.embed import load_vectors, spill_vectors

    with pytest.raises(ValueError, match="must pass through Embed first"):
        load_vectors(_bucket(2))
    spilled = spill_vectors(_bucket(2).with_vectors(np.zeros((2, 4), np.float32)), str(tmp_path))
    with pytest.raises(ValueError, match="left by another run"):
        load_vectors(replace(_bucket(3), vector_file=spilled.vector_file))


def test_embed_stage_spills_one_file_per_bucket(model_folder, tmp_path):
    from hyperscene.transforms.embed import Embed, load_vectors

    handler = SentenceTransformerModelHandler(model_folder, batch_size=4)
    expected = {b: handler.run_inference([_bucket(4, b).texts()], handler.load_model())[0].inference for b in (0, 1)}

    def check(buckets):
        assert sorted(b.bucket for b in buckets) == [0, 1]
        for b in buckets:
            assert b.vectors is None and b.vector_file.startswith(str(tmp_path))
            np.testing.assert_allclose(load_vectors(b), expected[b.bucket], atol=1e-6)

    with TestPipeline() as p:
        out = p | beam.Create([_bucket(4, 0), _bucket(4, 1)]) | Embed(handler, spill_to=str(tmp_path))
        assert_that(out, check)


def test_vector_rows_give_the_same_values_by_reference_or_by_value(tmp_path):
    """Local spills travel as references, other vectors by value: both must give the same floats,
    rounding included, or a store would depend on where its scratch folder is."""
    from hyperscene.transforms.embed import VectorRows, VectorValues, for_row_access, spill_vectors, vector_rows

    vectors = np.random.default_rng(1).standard_normal((6, 8)).astype(np.float32)
    in_memory = _bucket(6).with_vectors(vectors)
    spilled = for_row_access(spill_vectors(in_memory, str(tmp_path)))
    rows = np.array([4, 0, 2])
    for dtype in ("float32", "float16"):
        reference, value = vector_rows(spilled, rows, dtype), vector_rows(for_row_access(in_memory), rows, dtype)
        assert isinstance(reference, VectorRows) and isinstance(value, VectorValues)
        assert np.array_equal(reference.load(), value.load())
        assert value.load().dtype == np.float32
    assert np.array_equal(vector_rows(spilled, rows).load(), vectors[rows])


def test_static_vectors_are_sentence_transformers_own_to_the_bit(model_folder):
    """The static embedder's own path (the fast tokenizer, one EmbeddingBag call) must give what
    sentence-transformers' encode gives, bit for bit, since a store's hyperwords follow from them:
    texts of every length, and texts with no known token (the zero vector either way)."""
    from hyperscene.transforms.vectorize import embed_texts, static_table
    from hyperscene.transforms.models import load_embedder, static_model

    model = load_embedder(static_model(model_folder), "static")
    assert static_table(model) is not None and static_table(load_embedder(model_folder)) is None
    prose = (SAMPLE_CORPUS / "alice-in-wonderland.txt").read_text(encoding="utf-8")
    texts = [s for s in prose.split(".")[:300] if s] + ["", "\ufeff", "\u200b", "a [CLS] b", prose[:20_000]]
    expected = model.encode(texts, batch_size=16, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
    expected[~np.isfinite(expected).all(axis=1)] = 0.0
    vectors = embed_texts(model, texts, 16)
    assert vectors.dtype == np.float32 and np.array_equal(vectors, expected)
    assert not vectors[-4].any() and vectors[-1].any()


def test_a_transformer_runs_batches_of_like_token_counts(model_folder):
    """sentence-transformers batches texts of like character counts; the pipeline batches by the
    model's own token counts (less padding), one ``encode`` call per batch, longest first and the
    same batches for the same texts. Short words of many tokens and long words of few are what
    character counts get wrong."""
    from hyperscene.transforms import heap
    from hyperscene.transforms.models import load_embedder
    from hyperscene.transforms.vectorize import embed_texts

    heap.return_freed_memory()  # as compress does: embedding must lift it while the model runs
    model = load_embedder(model_folder, precision="float32")
    texts = ["x y z w v u t s r q p o", "internationalization", "word " * 300, "a b c", "uncharacteristically",
             "q", "one two three four five six", "", "word " * 400]
    tokens = [len(ids) for ids in model.tokenizer(texts)["input_ids"]]
    batches, reusing = [], []
    encode = model.encode

    def spy(batch, **kw):
        batches.append(list(batch))
        reusing.append(heap._running)
        return encode(batch, **kw)

    model.encode = spy
    vectors = embed_texts(model, texts, 3)
    assert sorted(t for b in batches for t in b) == sorted(texts) and all(len(b) <= 3 for b in batches)
    counts = [min(tokens[texts.index(t)], model.max_seq_length) for b in batches for t in b]
    assert counts == sorted(counts, reverse=True)
    # Both past the model's 256 tokens: encode truncates them alike, so they keep their given order.
    assert batches[0][:2] == ["word " * 300, "word " * 400] and len(batches) == 3
    assert min(reusing) == 1 and heap._running == 0
    del model.encode
    expected = model.encode(texts, batch_size=3, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    assert np.array_equal(embed_texts(model, texts, 3), vectors)


def test_threads_sharing_a_model_embed_as_one_does(model_folder):
    """RunInference shares one model among a process's threads: counting tokens must not
    reconfigure the tokenizer encode is using in another thread."""
    from concurrent.futures import ThreadPoolExecutor

    from hyperscene.transforms.models import load_embedder
    from hyperscene.transforms.vectorize import embed_texts

    model = load_embedder(model_folder, precision="float32")
    prose = (SAMPLE_CORPUS / "alice-in-wonderland.txt").read_text(encoding="utf-8")
    texts = [s for s in prose.split(".")[:400] if s.strip()] + [prose[:5_000]]
    alone = embed_texts(model, texts, 8)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: embed_texts(model, texts, 8), range(4)))
    assert all(np.array_equal(r, alone) for r in results)


def test_counting_tokens_serve_the_static_look_up(model_folder, tmp_path):
    """With --embedder static, CountTokens's tokenization is mapped onto the static embedder's
    vocabulary instead of tokenizing again; the tokens must be the embedder's own: for a literal
    special token only the counting tokenizer splits out, for a token added to it, and past the
    truncation the embedder applies (model2vec's, from the model's config, even where
    tokenizer.json says none), it tokenizes those texts itself."""
    import json
    import shutil

    from hyperscene.transforms.vectorize import static_tokenizer
    from hyperscene.transforms.models import static_model
    from hyperscene.transforms.tokens import fast_encodings, load_tokenizer, static_id_map, static_token_ids

    counting = load_tokenizer(model_folder)
    counting.backend_tokenizer.add_tokens(["hyperscenetok"])  # an id past the model's vocabulary
    folder = tmp_path / "static"
    shutil.copytree(static_model(model_folder), folder)
    config = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    config["truncation"] = None
    (folder / "tokenizer.json").write_text(json.dumps(config), encoding="utf-8")
    static = static_tokenizer(str(folder))
    id_map = static_id_map(counting.backend_tokenizer, static)
    assert id_map is not None and (id_map >= 0).sum() == static.get_vocab_size()
    assert static_id_map(counting.backend_tokenizer, counting.backend_tokenizer) is not None  # a tokenizer is its own
    prose = (SAMPLE_CORPUS / "alice-in-wonderland.txt").read_text(encoding="utf-8")
    texts = [s for s in prose.split(".")[:200] if s] + ["a [CLS] b", "[PAD] x", "a hyperscenetok b", "", "\ufeff", "word " * 600]
    lengths, ids = static_token_ids(fast_encodings(counting, texts), id_map, static, texts)
    own = [e.ids for e in static.encode_batch_fast(texts, add_special_tokens=False)]
    assert lengths.tolist() == [len(o) for o in own] and ids.tolist() == [i for o in own for i in o]
    assert lengths[-1] == static.truncation["max_length"] < len(fast_encodings(counting, texts[-1:])[0])
