"""A word-level check that every cosine near-duplicate candidate must also pass before it merges.

Sentence embeddings blur word order, roles, numbers, negation and named entities: "flights from
Boston to Denver" and "flights from Denver to Boston" sit at cosine ~0.97. A merge drops the merged
text from the distilled training export, so a wrong merge loses training data, while a missed one
only costs a little compression. The check is therefore strict: two texts may merge only when

- ``"same-words"``: their words are equal after NFKC, casefolding and dropping punctuation and
  whitespace (texts with no words at all: equal after NFKC and collapsing whitespace), or
- ``"function-words"``: their word sequences differ by at most ``MAX_FUNCTION_WORD_EDITS``
  inserted, deleted or replaced function words (``FUNCTION_WORDS``), a replacement staying within
  one class of interchangeable words (``FUNCTION_WORD_CLASSES``: "a" for "the", "на" for "в",
  never "and" for "of"); English "be" and "have" forms are only ever replaced (``REPLACE_ONLY_WORDS``).
  English "n't" counts as "not", so "don't" and "do not" agree.

Anything else is rejected: a content word, number or named entity that differs; a different count
of negations ("n't", "not", "never", "не", "нет", ...); and any word that leaves one place and
reappears at another, which is how swapped roles show ("from A to B" / "from B to A"). Personal
pronouns, numbers, number words, negations, modals and prepositions of direction or time (to/from,
before/after, от/до, из, без) are content words: they say who, how many, whether, where or when.
Only "en" and "ru" have function-word lists; in any other language only ``"same-words"`` merges.
With ``lang="xx"`` (spaCy's multi-language code, for corpora that mix languages) each pair is checked
with the lists of the script its words are in (:func:`main_script`: Cyrillic "ru", Latin "en"), and
a pair in two scripts only as ``"same-words"``. Any Latin-script text is taken for English there, so
other Latin-script languages beside English get the English lists too.

Pure Python (stdlib), a few tens of microseconds per sentence pair: it runs on every candidate.
"""

from __future__ import annotations

import difflib
import re
import unicodedata

MAX_FUNCTION_WORD_EDITS = 2

# Each string is a class of words that may replace one another; a word alone in its class can only
# be inserted or deleted. Modal "бы", gendered "был"/"была" and "что"/"чтобы" stay apart because
# swapping them changes mood, who, or statement versus purpose.
FUNCTION_WORD_CLASSES: dict[str, tuple[frozenset[str], ...]] = {
    lang: tuple(frozenset(c.split()) for c in classes)
    for lang, classes in {
        "en": (
            "a an the", "this that these those", "that which",
            "am is are was were be been being", "have has had having", "do does did",
            "of in on at upon", "and but yet", "also", "just", "even", "still", "oh ah o",
        ),
        "ru": (
            "и а но да", "в во на", "о об обо", "с со", "к ко", "по", "у",
            "же", "ли", "ведь", "вот", "ну", "уж уже", "ещё еще", "то", "это", "так", "как",
            "что", "чтобы", "был", "была", "было", "были", "даже", "ах ох",
        ),
    }.items()
}
FUNCTION_WORDS: dict[str, frozenset[str]] = {
    lang: frozenset().union(*classes) for lang, classes in FUNCTION_WORD_CLASSES.items()
}
# Function words that may only stand in for one another, never come or go: dropping "was" turns
# "John was killed" into "John killed".
REPLACE_ONLY_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset("am is are was were be been being have has had having".split()),
}
NEGATIONS: dict[str, frozenset[str]] = {
    "en": frozenset("not no never nor none nothing nobody neither nowhere without cannot".split()),
    "ru": frozenset(
        "не ни нет никогда ничего ничто ничем ничему никто никого никому никем нигде никуда "
        "ниоткуда без безо нельзя".split()
    ),
}

# Words are runs of letters and digits; an apostrophe inside a word and a separator inside a number
# (1,000 / 3.5) stay in the token, so "3.5" and "3 5" are different numbers.
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+|(?<=\d)[.,]\d+)*")
_APOSTROPHES = ("\u2019", "\u02bc", "\u2018")
_DIGIT = re.compile(r"\d")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
MULTILINGUAL = "xx"
SCRIPT_LANGS = {"latin": "en", "cyrillic": "ru"}
_NT_STEMS = {"ca": "can", "wo": "will", "sha": "shall"}


def words(text: str) -> list[str]:
    """The normalized words of ``text``: NFKC, casefolded, punctuation and whitespace dropped."""
    if text.isascii():
        folded = text.lower()  # NFKC leaves ASCII alone and casefold is lower there
    else:
        folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
        for apostrophe in _APOSTROPHES:
            if apostrophe in folded:
                folded = folded.replace(apostrophe, "'")
    return _WORD.findall(folded)


def main_script(text: str) -> str:
    """"latin", "cyrillic" or "other": the script most of ``text``'s letters are in ("" for no letters)."""
    if text.isascii():
        return "latin" if any(c.isalpha() for c in text) else ""
    latin, cyrillic = len(_LATIN.findall(text)), len(_CYRILLIC.findall(text))
    letters = sum(c.isalpha() for c in text)
    if not letters:
        return ""
    if max(latin, cyrillic) * 2 <= letters:
        return "other"
    return "latin" if latin >= cyrillic else "cyrillic"



def not_latin(text: str) -> bool:
    """Whether a unit counts toward W002's non-Latin units (as compress counts them)."""
    return main_script(text) not in ("latin", "")

def _expand_negations(tokens: list[str], lang: str) -> list[str]:
    # "don't"/"do not" and "cannot"/"can not" then agree, and "don't"/"do" differ by a "not".
    joined = " ".join(tokens)
    if lang != "en" or ("n't" not in joined and "cannot" not in joined):
        return tokens
    out = []
    for t in tokens:
        if t.endswith("n't") and len(t) > 3:
            out += [_NT_STEMS.get(t[:-3], t[:-3]), "not"]
        elif t == "cannot":
            out += ["can", "not"]
        else:
            out.append(t)
    return out


def _numbers(tokens: list[str]) -> list[str]:
    return [t for t in tokens if not t.isalpha() and _DIGIT.search(t)]


def verify(a: str, b: str, lang: str = "en") -> str | None:
    """Why ``a`` and ``b`` may merge (``"same-words"`` or ``"function-words"``), or None if not."""
    wa, wb = words(a), words(b)
    if not wa or not wb:
        if wa or wb:
            return None
        same = " ".join(unicodedata.normalize("NFKC", a).split()) == " ".join(unicodedata.normalize("NFKC", b).split())
        return "same-words" if same else None
    if wa == wb:
        return "same-words"
    if lang == MULTILINGUAL:
        script = main_script(" ".join(wa))
        if script != main_script(" ".join(wb)):
            return None
        lang = SCRIPT_LANGS.get(script, "")

    function_words = FUNCTION_WORDS.get(lang, frozenset())
    negations = NEGATIONS.get(lang, frozenset())
    ta, tb = _expand_negations(wa, lang), _expand_negations(wb, lang)
    # Cheap rejections first: most candidate pairs differ in a content word.
    if abs(len(ta) - len(tb)) > MAX_FUNCTION_WORD_EDITS:
        return None
    if [t for t in ta if t not in function_words] != [t for t in tb if t not in function_words]:
        return None
    # Numbers and negations are content words too; checked on their own so that neither can slip
    # through a function-word list that someone extends.
    if _numbers(ta) != _numbers(tb):
        return None
    if sorted(t for t in ta if t in negations) != sorted(t for t in tb if t in negations):
        return None
    if ta == tb:
        return "function-words"  # only contractions differ
    if sorted(ta) == sorted(tb):
        return None  # the same words in another order
    return _function_word_reason(ta, tb, lang, function_words)


def _gaps(tokens: list[str], function_words: frozenset[str]) -> list[list[str]]:
    """The runs of function words before, between and after the content words."""
    gaps: list[list[str]] = [[]]
    for t in tokens:
        if t in function_words:
            gaps[-1].append(t)
        else:
            gaps.append([])
    return gaps


def _function_word_reason(ta: list[str], tb: list[str], lang: str, function_words: frozenset[str]) -> str | None:
    # The content words are equal in order (checked above), so they anchor the alignment and only
    # the runs of function words between them are aligned, each by difflib. Its alignment depends
    # on argument order; a fixed order makes verify symmetric.
    if ta > tb:
        ta, tb = tb, ta
    classes = FUNCTION_WORD_CLASSES.get(lang, ())
    insertable = function_words - REPLACE_ONLY_WORDS.get(lang, frozenset())
    removed, added, edits = [], [], 0
    for gap_a, gap_b in zip(_gaps(ta, function_words), _gaps(tb, function_words)):
        if gap_a == gap_b:
            continue
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, gap_a, gap_b, autojunk=False).get_opcodes():
            old, new = gap_a[i1:i2], gap_b[j1:j2]
            if op == "equal":
                continue
            if op != "replace":
                if not all(t in insertable for t in old + new):
                    return None
            elif len(old) != len(new) or not all(any(x in c and y in c for c in classes) for x, y in zip(old, new)):
                return None  # only a word of the same class may stand in for another
            removed += old
            added += new
            edits += max(len(old), len(new))
            if edits > MAX_FUNCTION_WORD_EDITS:
                return None
    if set(removed) & set(added):
        return None  # a word moved: order carries who does what to whom
    return "function-words"
