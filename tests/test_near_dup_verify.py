"""The word-level check every cosine near-duplicate candidate must pass (transforms/near_dup_verify.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hyperscene.transforms.near_dup_verify import (
    FUNCTION_WORD_CLASSES,
    FUNCTION_WORDS,
    NEGATIONS,
    REPLACE_ONLY_WORDS,
    main_script,
    verify,
    words,
)

SAME_WORDS = [
    ("en", "The cat sat on the mat.", "the cat sat on the mat"),
    ("en", "Well, I never!", "well I never"),
    ("en", "He said:  “Come   here.”", "He said\ncome\there"),
    ("en", "It cost 1,000 dollars.", "it cost 1,000 dollars"),
    ("ru", "Он пришёл домой.", "он пришёл домой"),
    ("ru", "«Да, — сказал он, — иду!»", "Да сказал он иду"),
    ("ru", "ЁЛКА стояла в углу", "ёлка стояла в углу…"),
    ("de", "Der Hund bellt.", "der Hund bellt"),
]

FUNCTION_WORD_EDITS = [
    ("en", "The cat sat on the mat", "A cat sat on the mat"),
    ("en", "The cat sat on the mat", "The cat sat in the mat"),
    ("en", "He said that he would come", "He said he would come"),
    ("en", "The king of France is bald", "The king of France was bald"),
    ("en", "I don't know", "I do not know"),
    ("en", "They cannot stay", "They can not stay"),
    ("en", "She read the book and the letter", "She read a book and a letter"),
    ("ru", "Он жил в деревне", "Он жил на деревне"),
    ("ru", "Он был дома", "Он дома"),
    ("ru", "И вот он пришёл", "Он пришёл"),
]

REJECTED = [
    ("en", "flights from Boston to Denver", "flights from Denver to Boston"),
    ("en", "The dog bit the man", "The man bit the dog"),
    ("en", "the son of the king", "the king of the son"),
    ("en", "He paid 30 dollars", "He paid 40 dollars"),
    ("en", "He paid 3.5 dollars", "He paid 3 5 dollars"),
    ("en", "He paid three dollars", "He paid four dollars"),
    ("en", "He waited one hour", "He waited an hour"),
    ("en", "He is here", "He is not here"),
    ("en", "I do know", "I don't know"),
    ("en", "She will come", "She will never come"),
    ("en", "John went to Paris", "John went to Rome"),
    ("en", "He left the room", "She left the room"),
    ("en", "John was killed", "John killed"),
    ("en", "She went with him", "She went without him"),
    ("en", "Tea or coffee", "Tea and coffee"),
    ("en", "a man saw the dog", "the man saw a dog"),
    ("en", "There is a cat", "Is there a cat"),
    ("en", "The cat sat on the mat", "Cat sat in mat"),
    ("en", "The cat and the dog", "A cat but a dog"),
    ("ru", "Он пришёл", "Он не пришёл"),
    ("ru", "Он пришёл", "Она пришла"),
    ("ru", "Он ехал из Москвы в Тверь", "Он ехал из Твери в Москву"),
    ("ru", "Он ждал от Москвы", "Он ждал до Москвы"),
    ("ru", "Ему было три года", "Ему было четыре года"),
    ("ru", "Иван поехал в Париж", "Иван поехал в Рим"),
    ("ru", "Это можно", "Это нельзя"),
    ("ru", "И в доме же был он", "Он"),
]


@pytest.mark.parametrize("lang,a,b", SAME_WORDS)
def test_punctuation_case_and_whitespace_are_the_same_words(lang, a, b):
    assert verify(a, b, lang) == "same-words"
    assert verify(b, a, lang) == "same-words"


@pytest.mark.parametrize("lang,a,b", FUNCTION_WORD_EDITS)
def test_a_function_word_or_two_may_change(lang, a, b):
    assert verify(a, b, lang) == "function-words"
    assert verify(b, a, lang) == "function-words"


@pytest.mark.parametrize("lang,a,b", REJECTED)
def test_meaning_changes_never_merge(lang, a, b):
    assert verify(a, b, lang) is None
    assert verify(b, a, lang) is None


def test_three_function_word_edits_are_too_many():
    assert verify("The cat sat on the mat", "A cat sat in a mat") is None
    assert verify("The cat sat on the mat", "A cat sat in the mat") == "function-words"
    assert verify("И вот он был в доме", "Он был доме", "ru") is None


def test_other_languages_merge_only_the_same_words():
    assert verify("Der Hund bellt", "Ein Hund bellt", "de") is None
    assert verify("The cat sat", "A cat sat", "fr") is None


def test_a_mixed_corpus_checks_each_pair_in_its_own_script():
    """--lang xx: English lists for Latin text, Russian lists for Cyrillic, and no mixing."""
    assert verify("The cat sat on the mat", "A cat sat on the mat", "xx") == "function-words"
    assert verify("Он жил в деревне", "Он жил на деревне", "xx") == "function-words"
    assert verify("flights from Boston to Denver", "flights from Denver to Boston", "xx") is None
    assert verify("Он не пришёл", "Он пришёл", "xx") is None
    assert verify("Der Hund bellt", "Ein Hund bellt", "xx") is None  # Latin, but no English function words differ
    assert verify("Москва и Boris", "Москва and Boris", "xx") is None  # Cyrillic against Latin: only the same words merge
    assert verify("Москва!", "москва", "xx") == "same-words"


def test_main_script():
    assert [main_script(t) for t in ("Hello, world", "Привет, мир", "Ёлка stood there", "東京タワー", "12 345", "")] == [
        "latin", "cyrillic", "latin", "other", "", ""]
    assert main_script("Café naïve") == "latin"


def test_texts_without_words():
    assert verify("...", "...") == "same-words"
    assert verify("— —", "—  —") == "same-words"
    assert verify("…", "...") == "same-words"  # NFKC
    assert verify("", "   ") == "same-words"
    assert verify("...", "!!!") is None
    assert verify("...", "Yes.") is None
    assert verify("", "a") is None


def test_words_normalize_unicode_and_keep_numbers_whole():
    assert words("Ｔｈｅ  CAT’s 1,000 (3.5) cats—end.Then") == ["the", "cat's", "1,000", "3.5", "cats", "end", "then"]


def test_meaning_bearing_words_are_never_function_words():
    numbers = {
        "en": "one two three four five six seven eight nine ten eleven twelve hundred thousand",
        "ru": "один одна одно два две три четыре пять шесть семь восемь девять десять одиннадцать "
        "двенадцать сто тысяча тысячи",
    }
    pronouns = {"en": "i you he she it we they me him her us them", "ru": "я ты он она оно мы вы они его её ее их"}
    for lang, function_words in FUNCTION_WORDS.items():
        assert not function_words & set(numbers[lang].split())
        assert not function_words & set(pronouns[lang].split())
        assert not function_words & NEGATIONS[lang]
        assert REPLACE_ONLY_WORDS.get(lang, frozenset()) <= function_words
        assert function_words == frozenset().union(*FUNCTION_WORD_CLASSES[lang])


VOCABULARY = "the a of in on is was not n't he she John 3 1,000 и в на не он был Москва . , ! — «»".split()
texts = st.one_of(st.text(max_size=60), st.lists(st.sampled_from(VOCABULARY), max_size=12).map(" ".join))


@st.composite
def near_pairs(draw):
    """Two texts a few word edits apart, so that both answers of verify come up."""
    a = draw(st.lists(st.sampled_from(VOCABULARY), max_size=12))
    b = list(a)
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(b)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "swap"]))
        if op == "insert":
            b.insert(i, draw(st.sampled_from(VOCABULARY)))
        elif b and i < len(b):
            if op == "delete":
                del b[i]
            elif op == "replace":
                b[i] = draw(st.sampled_from(VOCABULARY))
            else:
                j = draw(st.integers(0, len(b) - 1))
                b[i], b[j] = b[j], b[i]
    return " ".join(a), " ".join(b)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_a_text_always_merges_with_itself(a):
    for lang in ("en", "ru", "de"):
        assert verify(a, a, lang) is not None


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.tuples(texts, texts), near_pairs()))
def test_verify_is_symmetric(pair):
    a, b = pair
    for lang in ("en", "ru", "de"):
        assert (verify(a, b, lang) is None) == (verify(b, a, lang) is None)
        assert verify(a, b, lang) == verify(b, a, lang)
