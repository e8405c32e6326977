"""Property test (issue 5, part 7): compress then decompress gives every document back exactly.

Documents are arbitrary surrogate-free Unicode (hypothesis' ``st.text``) mixed with the pieces that
break text pipelines most: combining marks, right-to-left text and direction marks, emoji with skin
tones, flags and ZWJ sequences, zero-width characters and the byte-order mark, control characters,
and every kind of line ending (\\n, \\r\\n, \\r, U+2028, U+2029, U+0085, \\v, \\f).

A compress costs 5 to 25 s here (loading the models, then Beam), so one hypothesis example is one
whole corpus: EXAMPLES = 8 examples, each of 40 to 120 generated documents plus two more (a fixed
one holding every kind of piece above, and all the generated ones joined into one longer document),
and each document is written twice, as a text file and as a JSONL record (ensure_ascii on and off in
turn). That is 8 compress runs of 84 to 244 documents, 672 to 1,952 documents per test run, in
71 s on a 2-core machine (16 runs of half as many documents each took 106 s: at this size a
compress's start-up is most of its cost). A text file must come back byte for byte, a record's text field exactly,
and nothing may be dead-lettered. Shrinking is off (each step would be another compress); a
failure's message names each document that did not come back, with its text and what came back
instead, and hypothesis prints the whole corpus (and a blob to reproduce it).

The default embedder is used: ``--embedder static`` stops on units without tokens, such as a lone
zero-width space (see ``test_bad_input.py``), which this test generates often.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from hyperscene.pipelines import compress, decompress
from hyperscene.transforms.store.reader import StoreVersion

EXAMPLES = 8
MIN_DOCUMENTS, MAX_DOCUMENTS = 40, 120

LINE_ENDINGS = ["\n", "\r\n", "\r", "\u2028", "\u2029", "\x85", "\x0b", "\x0c"]
COMBINING = ["\u0301", "\u0308\u0323", "e\u0301", "\u20dd", "\u1100\u1161\u11a8", "\u0915\u094d\u0937", "Z\u0351\u036b\u0343"]
RIGHT_TO_LEFT = ["שָׁלוֹם עוֹלָם.", "مرحبا بالعالم؟", "\u200f", "\u200e", "\u202eabc\u202c", "\u2067אב\u2069", "ܐܒܓ"]
EMOJI = ["🙂", "👩\u200d👩\u200d👧\u200d👦", "🏳\ufe0f\u200d🌈", "👍🏽", "🇺🇦", "❤\ufe0f", "1\ufe0f\u20e3", "🧑🏿\u200d🚀"]
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e", "\u034f"]
PROSE = ["The cat sat on the mat.", "Dr. Watson arrived", ". ", "! ", "? ", ", ", "; ", "--", " and ", "\t", "...",
         "\u201cquoted\u201d", "  ", "\x00", "\x1b[0m", "\u3000", "\u00a0"]
SPECIAL = LINE_ENDINGS + COMBINING + RIGHT_TO_LEFT + EMOJI + ZERO_WIDTH + PROSE

PIECES = st.one_of(
    st.text(max_size=20),  # any code point but surrogates
    st.text(alphabet=st.characters(categories=["Mn", "Me", "Mc", "Cf", "Cc", "Zs", "Zl", "Zp", "So", "Sk"]), max_size=8),
    st.sampled_from(SPECIAL),
)
DOCUMENT = st.lists(PIECES, max_size=80).map("".join)
EVERY_PIECE = " ".join(SPECIAL) + "".join(LINE_ENDINGS) + "End."


def write_corpus(folder: Path, texts: list[str]) -> None:
    folder.mkdir()
    lines = []
    for i, text in enumerate(texts):
        (folder / f"doc-{i:03d}.txt").write_bytes(text.encode("utf-8"))
        lines.append(json.dumps({"id": f"r{i}", "text": text}, ensure_ascii=i % 2 == 0) + "\n")
    (folder / "records.jsonl").write_bytes("".join(lines).encode("utf-8"))


def mismatches(restored: Path, texts: list[str]) -> list[str]:
    """One line per document that did not come back exactly."""
    wrong = []
    for i, text in enumerate(texts):
        path = restored / f"doc-{i:03d}.txt"
        back = path.read_bytes() if path.exists() else None
        if back != text.encode("utf-8"):
            wrong.append(f"doc-{i:03d}.txt: {text!r} came back as {back.decode('utf-8', 'replace') if back is not None else None!r}")
    records = restored / "records.jsonl"
    lines = records.read_bytes().split(b"\n") if records.exists() else []
    back_text = {obj["id"]: obj["text"] for obj in (json.loads(line) for line in lines if line)}
    for i, text in enumerate(texts):
        if back_text.get(f"r{i}") != text:
            wrong.append(f"records.jsonl line {i + 1}: {text!r} came back as {back_text.get(f'r{i}')!r}")
    return wrong


@settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate], print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(st.lists(DOCUMENT, min_size=MIN_DOCUMENTS, max_size=MAX_DOCUMENTS))
def test_compress_then_decompress_gives_every_document_back(texts):
    texts = [EVERY_PIECE, "".join(texts), *texts]  # and all of them as one longer document
    with tempfile.TemporaryDirectory(prefix="hyperscene-property-") as tmp:
        corpus, store, restored = Path(tmp) / "corpus", Path(tmp) / "store", Path(tmp) / "restored"
        write_corpus(corpus, texts)
        manifest = compress.run([str(corpus), "--out", str(store)])
        decompress.run([str(store), "--out", str(restored)])
        wrong = mismatches(restored, texts)
        assert not wrong, "\n".join(wrong)
        assert manifest["counts"].get("dead_letters", 0) == 0, StoreVersion(str(store)).read("dead_letters").to_pylist()
        assert manifest["counts"]["documents"] == 2 * len(texts)
