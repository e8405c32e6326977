"""Hard negatives and true near-duplicates from real books, and how merge rules score on them.

    python benchmarks/near_dup_pairs.py --lang en --split dev      # tune on dev
    python benchmarks/near_dup_pairs.py --lang ru --split test     # report on test
    python benchmarks/near_dup_pairs.py --lang ru --split test --model e5-small --embedder static   # with cosines

Each pair is made from one sentence of ../shared/corpora (en-gutenberg without its Project
Gutenberg header and footer, or ru-classics) by a rule. Negatives (must not merge): "swap" (two
content words change places: "X of Y" -> "Y of X"), "number" (a number changes, or an article
becomes one), "negation" (a "not" / "не" goes in), "entity" (a capitalised name becomes another
from a different sentence), and "other" (two different sentences of similar length from the same
book: the easy sanity row). Positives (may merge): "punctuation", "case", "whitespace" and
"function-word" (one function word of transforms/near_dup_verify.py changed within its class or
dropped). Books are split into dev and test by a hash of their text, so the same book (en-gutenberg
files one under two names) never lands on both sides; everything is seeded by (lang, split).

For each rule it prints the share of pairs of each kind merged, the precision (merged pairs that
are positives) and the recall (positives merged), then a JSON line. Rules: the word-level verifier
alone, word 3-shingle Jaccard (what MinHash estimates) at several thresholds, alone and with the
verifier, and, given cosines (:func:`report`), cosine at each threshold, alone and with the verifier.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from hyperscene.transforms.near_dup_verify import FUNCTION_WORD_CLASSES, FUNCTION_WORDS, REPLACE_ONLY_WORDS, verify

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
CORPUS = {"en": "en-gutenberg", "ru": "ru-classics"}
NEGATIVE_KINDS = ("swap", "number", "negation", "entity", "other")
POSITIVE_KINDS = ("punctuation", "case", "whitespace", "function-word")
JACCARD_THRESHOLDS = (0.5, 0.7, 0.8, 0.9)

PG_START = re.compile(r"^\*\*\* ?START OF.*$", re.MULTILINE | re.IGNORECASE)
PG_END = re.compile(r"^\*\*\* ?END OF", re.MULTILINE | re.IGNORECASE)
BOILERPLATE = re.compile(r"gutenberg|license|electronic|www\.|http", re.IGNORECASE)
SENTENCE_END = re.compile(r"(?<=[.!?…])(?<!\bMr\.)(?<!\bMrs\.)(?<!\bDr\.)(?<!\bSt\.)\s+(?=[A-ZА-ЯЁ\"“«'‘—])")
WORD_CORE = re.compile(r"^(\W*)(.*?)(\W*)$")  # leading punctuation, the word, trailing punctuation
CLAUSE_END = re.compile(r"[.!?:;\"“”«»—‘'(]$")
UPPER_WORD = re.compile(r"^[A-ZА-ЯЁ][a-zа-яё]{2,}$")
NUMBER_WORDS = {
    "en": "one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred thousand".split(),
    "ru": "один одна одно одного одной два две двух три трёх трех четыре четырёх пять пяти шесть шести семь семи "
    "восемь восьми девять девяти десять десяти одиннадцать двенадцать сто ста тысяча тысячи тысяч".split(),
}
# Words a number can stand in for ("the house" -> "two house" is a different claim).
DETERMINERS = {"en": {"a", "an", "the"}, "ru": {"этот", "эта", "это", "эти", "тот", "та", "те", "каждый"}}
# Not noun-like: what a "swap" leaves in place, beside the function words.
PRONOUNS = {
    "en": set("i me my mine you your he him his she her hers it its we us our they them their who whom what which there here "
              "about after before into from to with for by not".split()),
    "ru": set("я меня мне мной ты тебя тебе он его ему им она её ее ей они их ими мы нас нам вы вас вам свой своя свою своё "
              "свои мой моя моё мои твой не ни для от до из".split()),
}
SWAP_AROUND = {"en": {"of", "to", "from", "and", "with", "for", "by"}, "ru": {"и", "в", "на", "от", "до", "из", "с", "к", "у", "для"}}
AUXILIARIES = set("is was are were have had will would can could do did should".split())
RU_VERB = re.compile(r"(ет|ит|ут|ют|ат|ят|ал|ала|ало|али|ил|ила|или|ыл|ыла|ыли|ел|ела|ели)$")


# --- source sentences -------------------------------------------------------------------------


def book_sentences(lang: str, split: str) -> dict[str, list[str]]:
    """Sentences of 6 to 30 words of each book of the split, by book name."""
    books, seen = {}, set()
    for path in sorted((CORPORA / CORPUS[lang]).glob("*.txt")):
        text = path.read_text(encoding="utf-8").replace("\r\n", "\n").replace("\r", "\n")
        start, end = PG_START.search(text), PG_END.search(text)
        body = text[start.end() if start else 0 : end.start() if end else len(text)]
        digest = hashlib.sha256(body.encode()).digest()
        if digest in seen or (digest[0] % 2 == 0) != (split == "dev"):
            continue
        seen.add(digest)
        sentences = []
        for paragraph in re.split(r"\n\s*\n", body):
            lines = [line for line in paragraph.split("\n") if not BOILERPLATE.search(line)]
            for s in SENTENCE_END.split(" ".join(" ".join(lines).split())):
                if 6 <= len(s.split()) <= 30:
                    sentences.append(s)
        books[path.name] = sentences
    return books


# --- rules: each returns the changed sentence, or None where it does not apply -----------------


def _parts(token: str) -> tuple[str, str, str]:
    return WORD_CORE.match(token).groups()


def _with_case_of(word: str, like: str) -> str:
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def _noun_like(core: str, lang: str) -> bool:
    return core.isalpha() and len(core) >= 3 and core.lower() not in FUNCTION_WORDS[lang] | PRONOUNS[lang]


def swap(s: str, rng: random.Random, lang: str, ctx) -> str | None:
    t = s.split()
    parts = [_parts(x) for x in t]
    around = [i for i in range(1, len(t) - 1)
              if parts[i][1].lower() in SWAP_AROUND[lang] and not parts[i][0] + parts[i][2]
              and not parts[i - 1][2] and not parts[i + 1][0]
              and _noun_like(parts[i - 1][1], lang) and _noun_like(parts[i + 1][1], lang)]
    if around:
        left, right = (i := rng.choice(around)) - 1, i + 1
    else:
        content = [i for i, p in enumerate(parts) if _noun_like(p[1], lang) and (p[1][0].isupper() or len(p[1]) >= 5)]
        if len(content) < 2:
            return None
        left, right = content[0], content[-1]
    (lp, lw, ls), (rp, rw, rs) = parts[left], parts[right]
    if lw.lower() == rw.lower():
        return None
    if left == 0:  # the sentence's capital moves with the position, not with the word
        lw, rw = lw[:1].lower() + lw[1:], rw[:1].upper() + rw[1:]
    t[left], t[right] = lp + rw + ls, rp + lw + rs
    return " ".join(t)


def number(s: str, rng: random.Random, lang: str, ctx) -> str | None:
    t = s.split()
    parts = [_parts(x) for x in t]
    digits = [i for i, p in enumerate(parts) if p[1].isdigit()]
    if digits:
        i = rng.choice(digits)
        p, w, x = parts[i]
        t[i] = p + str(int(w) + rng.randint(1, 9)) + x
        return " ".join(t)
    words = [i for i, p in enumerate(parts) if p[1].lower() in NUMBER_WORDS[lang]]
    targets = words or [i for i, p in enumerate(parts) if p[1].lower() in DETERMINERS[lang]]
    if not targets:
        return None
    i = rng.choice(targets)
    p, w, x = parts[i]
    t[i] = p + _with_case_of(rng.choice([n for n in NUMBER_WORDS[lang][1:12] if n != w.lower()]), w) + x
    return " ".join(t)


def negation(s: str, rng: random.Random, lang: str, ctx) -> str | None:
    t = s.split()
    cores = [_parts(x)[1].lower() for x in t]
    if lang == "en":
        i = next((i for i, c in enumerate(cores[:-1]) if c in AUXILIARIES and not _parts(t[i])[2]), None)
        if i is None or cores[i + 1] in ("not", "never"):
            return None
        return " ".join(t[: i + 1] + ["not"] + t[i + 1 :])
    i = next((i for i, c in enumerate(cores) if len(c) >= 4 and RU_VERB.search(c) and c.isalpha()), None)
    if i is None or (i and cores[i - 1] == "не"):
        return None
    if i == 0:
        return " ".join(["Не", t[0][:1].lower() + t[0][1:]] + t[1:])
    return " ".join(t[:i] + ["не"] + t[i:])


def _names(t: list[str], lowercase: set[str]) -> list[int]:
    """Positions of likely names: capitalised words the split never writes in lower case, after a
    word that does not end a clause or open a quote."""
    spots = []
    for i in range(1, len(t)):
        prefix, core, _ = _parts(t[i])
        if not prefix and UPPER_WORD.match(core) and core.lower() not in lowercase and not CLAUSE_END.search(t[i - 1]):
            spots.append(i)
    return spots


def entity(s: str, rng: random.Random, lang: str, ctx) -> str | None:
    t = s.split()
    spots = _names(t, ctx["lowercase"])
    if not spots:
        return None
    i = rng.choice(spots)
    p, w, x = _parts(t[i])
    for _ in range(20):
        other_sentence, name = rng.choice(ctx["names"])
        if other_sentence != s and name.lower() != w.lower():
            t[i] = p + name + x
            return " ".join(t)
    return None


def punctuation(s: str, rng: random.Random, lang: str, ctx) -> str | None:
    t = s.split()
    comma_at = rng.randrange(len(t) - 1)
    candidates = [" ".join(x + "," if i == comma_at else x for i, x in enumerate(t))]
    if s[-1] in ".!?…":
        candidates += [s.rstrip(".!?…"), s.rstrip(".!?…") + rng.choice(["!", "...", ";"])]
    if "," in s:
        candidates.append(s.replace(",", "", 1))
    return rng.choice(candidates)


def case(s: str, rng: random.Random, lang: str, ctx) -> str | None:
    t = s.split()
    i = rng.randrange(len(t))
    b = rng.choice([
        lambda: s.lower(),
        lambda: " ".join(x.upper() if j == i else x for j, x in enumerate(t)),
        lambda: " ".join([(str.lower if t[0][:1].isupper() else str.upper)(t[0][:1]) + t[0][1:]] + t[1:]),
    ])()
    return b if b != s else None


def whitespace(s: str, rng: random.Random, lang: str, ctx) -> str | None:
    t = s.split()
    i = rng.randrange(1, len(t))
    return " ".join(t[:i]) + rng.choice(["  ", "\n", "\t", " \n "]) + " ".join(t[i:])


def function_word(s: str, rng: random.Random, lang: str, ctx) -> str | None:
    t = s.split()
    spots = [i for i, x in enumerate(t) if x.lower() in FUNCTION_WORDS[lang]]
    if not spots:
        return None
    i = rng.choice(spots)
    w = t[i].lower()
    choices = [o for c in FUNCTION_WORD_CLASSES[lang] if w in c for o in sorted(c) if o != w]
    if w not in REPLACE_ONLY_WORDS.get(lang, ()):
        choices.append("")
    pick = rng.choice(choices)
    if not pick:
        rest = t[:i] + t[i + 1 :]
        return " ".join([_with_case_of(rest[0], t[0])] + rest[1:] if i == 0 else rest)
    return " ".join(t[:i] + [_with_case_of(pick, t[i])] + t[i + 1 :])


RULES = {"swap": swap, "number": number, "negation": negation, "entity": entity,
         "punctuation": punctuation, "case": case, "whitespace": whitespace, "function-word": function_word}


def build_pairs(lang: str, split: str, n_per_kind: int = 300) -> list[dict]:
    """Up to ``n_per_kind`` pairs of each kind, ``{"a", "b", "kind", "duplicate"}``, deterministic."""
    rng = random.Random(f"near-dup-pairs:{lang}:{split}")
    books = book_sentences(lang, split)
    pool = [(book, s) for book, sentences in books.items() for s in sentences]
    lowercase = {w for _, s in pool for w in re.findall(r"\b[a-zа-яё]+\b", s)}
    names = []  # (sentence, name in it): where "entity" draws a new name from
    for _, s in pool:
        t = s.split()
        names += [(s, _parts(t[i])[1]) for i in _names(t, lowercase)]
    ctx = {"lowercase": lowercase, "names": names}
    pairs = []
    for kind, rule in RULES.items():
        made = 0
        for book, s in rng.sample(pool, len(pool)):
            b = rule(s, rng, lang, ctx)
            if b is not None and b != s:
                pairs.append({"a": s, "b": b, "kind": kind, "duplicate": kind in POSITIVE_KINDS})
                made += 1
                if made == n_per_kind:
                    break
    made = 0
    for book, s in rng.sample(pool, len(pool)):
        n = len(s.split())
        similar = [o for o in rng.sample(books[book], min(50, len(books[book]))) if o != s and abs(len(o.split()) - n) <= 2]
        if similar:
            pairs.append({"a": s, "b": similar[0], "kind": "other", "duplicate": False})
            made += 1
            if made == n_per_kind:
                break
    return pairs


# --- scoring ----------------------------------------------------------------------------------


def shingle_jaccard(a: str, b: str, n: int = 3) -> float:
    """Jaccard similarity of the lowercased word n-shingles (the word sets for texts under n words)."""
    wa, wb = re.findall(r"\w+", a.lower()), re.findall(r"\w+", b.lower())
    if len(wa) < n or len(wb) < n:
        sa, sb = set(wa), set(wb)
    else:
        sa = {tuple(wa[i : i + n]) for i in range(len(wa) - n + 1)}
        sb = {tuple(wb[i : i + n]) for i in range(len(wb) - n + 1)}
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def evaluate(pairs: list[dict], cosine: np.ndarray | None, threshold: float | None, lang: str, use_verifier: bool) -> dict:
    """Merge = (score >= threshold, if scores are given) and (the verifier accepts, if used).
    ``cosine`` may hold any similarity score per pair (cosine, shingle Jaccard)."""
    merged = np.ones(len(pairs), dtype=bool) if cosine is None else np.asarray(cosine) >= threshold
    if use_verifier:
        merged &= np.array([verify(p["a"], p["b"], lang) is not None for p in pairs])
    duplicate = np.array([p["duplicate"] for p in pairs])
    kinds = np.array([p["kind"] for p in pairs])
    hits = int((merged & duplicate).sum())
    return {
        "precision": round(hits / merged.sum(), 4) if merged.sum() else None,
        "recall": round(hits / duplicate.sum(), 4) if duplicate.sum() else None,
        "merged": int(merged.sum()),
        "per_kind": {k: round(float(merged[kinds == k].mean()), 4) for k in dict.fromkeys(kinds)},
    }


def report(pairs: list[dict], cosine: np.ndarray | None, thresholds: list[float], *, lang: str) -> dict:
    """Print the merge rate per kind, precision and recall of each rule; return them by rule name.
    ``cosine``: one cosine per pair from some embedder (None: the rules without it)."""
    jaccard = np.array([shingle_jaccard(p["a"], p["b"]) for p in pairs])
    rules = {"verifier": (None, None, True)}
    for t in JACCARD_THRESHOLDS:
        rules[f"jaccard>={t}"] = (jaccard, t, False)
        rules[f"jaccard>={t}+verifier"] = (jaccard, t, True)
    for t in thresholds if cosine is not None else []:
        rules[f"cosine>={t}"] = (cosine, t, False)
        rules[f"cosine>={t}+verifier"] = (cosine, t, True)
    results = {name: evaluate(pairs, scores, t, lang, use) for name, (scores, t, use) in rules.items()}
    kinds = list(dict.fromkeys(p["kind"] for p in pairs))
    width = max(map(len, rules)) + 1
    print(f"{'share merged':<{width}}" + "".join(f"{k[:9]:>10}" for k in kinds) + f"{'precision':>10}{'recall':>8}{'merged':>8}")
    for name, r in results.items():
        print(f"{name:<{width}}" + "".join(f"{r['per_kind'][k]:>10.3f}" for k in kinds)
              + f"{r['precision'] if r['precision'] is not None else float('nan'):>10.3f}{r['recall']:>8.3f}{r['merged']:>8}")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lang", default="en", choices=sorted(CORPUS))
    ap.add_argument("--split", default="dev", choices=["dev", "test"])
    ap.add_argument("--n-per-kind", type=int, default=300)
    ap.add_argument("--model", help="embed the pairs with this model (minilm, e5-small, a folder) for the cosine rules")
    ap.add_argument("--embedder", default="torch", choices=["torch", "static", "openvino"])
    ap.add_argument("--show", type=int, default=5, help="print this many negatives the verifier merges")
    args = ap.parse_args()

    pairs = build_pairs(args.lang, args.split, args.n_per_kind)
    counts = {k: sum(p["kind"] == k for p in pairs) for k in dict.fromkeys(p["kind"] for p in pairs)}
    print(f"{args.lang} {args.split}: {len(pairs)} pairs; " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    cosine, thresholds = None, []
    if args.model:
        from hyperscene.transforms.model_catalog import resolve_model
        from hyperscene.transforms.models import default_batch_size, folder_for_embedder, load_embedder
        from hyperscene.transforms.near_dup import default_threshold

        model = load_embedder(folder_for_embedder(resolve_model(args.model)[0], args.embedder), args.embedder)
        texts = sorted({t for p in pairs for t in (p["a"], p["b"])})
        vectors = dict(zip(texts, model.encode(texts, batch_size=default_batch_size("cpu", args.embedder),
                                               normalize_embeddings=True, convert_to_numpy=True)))
        cosine = np.array([float(vectors[p["a"]] @ vectors[p["b"]]) for p in pairs])
        default = default_threshold(args.model, args.embedder)
        thresholds = sorted({round(default + d, 2) for d in (-0.04, -0.02, 0.0)} - {1.0})
        print(f"cosines from {args.model} ({args.embedder}); its default near-duplicate threshold is {default}")
    results = report(pairs, cosine, thresholds, lang=args.lang)

    start = time.perf_counter()
    reasons = [verify(p["a"], p["b"], args.lang) for p in pairs]
    speed = len(pairs) / (time.perf_counter() - start)
    print(f"verifier: {speed:,.0f} pairs/s on one core")
    wrong = [(p, r) for p, r in zip(pairs, reasons) if r and not p["duplicate"]]
    for p, r in wrong[: args.show]:
        print(f"  merged {p['kind']} ({r}): {p['a']!r} / {p['b']!r}")
    print(json.dumps({"lang": args.lang, "split": args.split, "model": args.model, "embedder": args.embedder if args.model else None,
                      "pairs": counts, "verifier_pairs_per_s": round(speed),
                      "results": results}, ensure_ascii=False))


if __name__ == "__main__":
    main()
