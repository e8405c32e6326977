"""Add the hyperword tokens of a ``hyperscene export --format hyperwords`` to a Hugging Face
tokenizer and model.

Each new token's input embedding row starts as the mean of the model's own input embeddings of the
tokens of its representative text (for level 0 the hyperword's most central unit; above, the gist
of its codebook's representative scene), so the model starts from what the token stands for
rather than from noise. A token without a representative text (an empty cluster) starts as the
mean of all the model's original rows. When the model has an output embedding matrix of its own
(not tied to the input one), its new rows are set the same way from its own output rows.

Usage::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from hyperscene.pipelines.hf_tokenizer import add_hyperword_tokens

    tokenizer = AutoTokenizer.from_pretrained("my-model")
    model = AutoModelForCausalLM.from_pretrained("my-model")
    added = add_hyperword_tokens(tokenizer, model, "export-dir")   # or export-dir/vocab.jsonl
    tokenizer.save_pretrained("my-model-hw"); model.save_pretrained("my-model-hw")

Tokens are added as ordinary (not special) tokens, so ``decode(..., skip_special_tokens=True)``
keeps them. Tokens the tokenizer already has are left alone, so running it twice adds nothing.
"""

from __future__ import annotations

import json
import os
from typing import Iterable, Sequence

from hyperscene.transforms.export import VOCABULARY, parse_token


def load_vocabulary(path: str) -> list[dict]:
    """The rows of an export's ``vocab.jsonl`` (``path`` is that file or the export folder)."""
    if os.path.isdir(path):
        path = os.path.join(path, VOCABULARY)
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for r in rows:
        parse_token(r["token"])  # fails on a file that is not a hyperword vocabulary
    return rows


def add_hyperword_tokens(tokenizer, model, vocabulary: str | Sequence[dict], levels: Iterable[int] | None = None) -> dict[str, int]:
    """Add the vocabulary's tokens (rows with ``token`` and ``representative_text``; or the path of an
    export folder or its ``vocab.jsonl``) to ``tokenizer``, grow ``model``'s embeddings to match and
    initialise each new row (see the module's docstring). ``levels``: only tokens of these levels.

    Returns {token: its id in the tokenizer} for the tokens added by this call.
    """
    import torch

    rows = load_vocabulary(vocabulary) if isinstance(vocabulary, (str, os.PathLike)) else list(vocabulary)
    if levels is not None:
        wanted = set(levels)
        rows = [r for r in rows if parse_token(r["token"])[0] in wanted]
    known = tokenizer.get_vocab()
    new = [r for r in dict((r["token"], r) for r in rows).values() if r["token"] not in known]
    if not new:
        return {}
    # Representative texts are tokenised before the new tokens exist, so none of them is used.
    sources = [tokenizer(r.get("representative_text") or "", add_special_tokens=False)["input_ids"] for r in new]

    inputs = model.get_input_embeddings()
    outputs = model.get_output_embeddings()
    old_rows = inputs.weight.shape[0]
    untied_output = outputs is not None and outputs.weight.data_ptr() != inputs.weight.data_ptr()

    tokenizer.add_tokens([r["token"] for r in new], special_tokens=False)
    ids = tokenizer.convert_tokens_to_ids([r["token"] for r in new])
    if len(tokenizer) > old_rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)

    with torch.no_grad():
        _initialise(model.get_input_embeddings().weight, ids, sources, old_rows)
        if untied_output:
            _initialise(model.get_output_embeddings().weight, ids, sources, old_rows)
    return dict(zip((r["token"] for r in new), ids))


def _initialise(weight, ids: Sequence[int], sources: Sequence[Sequence[int]], old_rows: int) -> None:
    """Row ``ids[i]`` of ``weight`` := the mean of its rows ``sources[i]`` (those below ``old_rows``),
    or of all rows below ``old_rows`` when there are none."""
    everything = weight[:old_rows].mean(dim=0)
    for row, source in zip(ids, sources):
        source = [i for i in source if i < old_rows]
        weight[row] = weight[source].mean(dim=0) if source else everything


class HyperwordTokenizer:
    """Raw text -> the input ids of a tokenizer extended by :func:`add_hyperword_tokens`, called as a
    Hugging Face tokenizer is.

    ``encoder`` (:class:`hyperscene.transforms.encoder.Encoder`) turns each text into its
    ``<hw_L_C>`` tokens at ``level``, joined by spaces as ``hyperscene export --format hyperwords
    --level L`` writes its ``text`` column; ``tokenizer`` then tokenizes that string with every
    argument given. The model therefore gets what it learnt from the export, the tokenizer's own
    special tokens and any space tokens between the hyperword tokens (byte-level BPE) included::

        tokenizer = HyperwordTokenizer(Encoder.from_store("store"), AutoTokenizer.from_pretrained("my-model-hw"))
        batch = tokenizer(["First text.", "Second one."], padding=True, return_tensors="pt")
        logits = model(**batch).logits

    :meth:`decode` goes back from ids to what the tokens stand for (representative texts and gists).
    """

    def __init__(self, encoder, tokenizer, level: int = 0):
        self.encoder, self.tokenizer, self.level = encoder, tokenizer, level

    def __len__(self) -> int:
        return len(self.tokenizer)

    def code_strings(self, text: str | Sequence[str]) -> str | list[str]:
        """The export-style token string of each text: what the tokenizer is given."""
        single = isinstance(text, str)
        vocabulary = self.tokenizer.get_vocab()
        strings = []
        for doc in self.encoder.encode_many([text] if single else list(text)):
            tokens = doc.tokens(self.level)
            self._check_known(tokens, vocabulary)
            strings.append(" ".join(tokens))
        return strings[0] if single else strings

    def __call__(self, text: str | Sequence[str], **kwargs):
        """``tokenizer(code_strings(text), **kwargs)``: padding, truncation, max_length,
        return_tensors and the rest as the tokenizer takes them."""
        return self.tokenizer(self.code_strings(text), **kwargs)

    def encode(self, text: str, **kwargs) -> list[int]:
        return self.tokenizer.encode(self.code_strings(text), **kwargs)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Ids -> the representative text of each hyperword token, joined by " | "; the tokenizer's
        other tokens (special tokens unless skipped) as it decodes them, whitespace left out."""
        from hyperscene.transforms.export import parse_token

        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        pieces, run = [], []

        def flush():
            text = self.tokenizer.decode(run, skip_special_tokens=skip_special_tokens).strip() if run else ""
            if text:
                pieces.append(text)
            run.clear()

        for i, token in zip(ids, self.tokenizer.convert_ids_to_tokens(ids)):
            try:
                parse_token(token)
            except ValueError:
                run.append(i)
                continue
            flush()
            pieces.append(" ".join((self.encoder.representative_texts([token])[0] or "").split()))
        flush()
        return " | ".join(pieces)

    def batch_decode(self, sequences, skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(s, skip_special_tokens) for s in sequences]

    def _check_known(self, tokens: list[str], vocabulary: dict) -> None:
        from hyperscene.transforms.errors import Errors, InvalidOption

        for token in dict.fromkeys(tokens):
            if token not in vocabulary:
                raise InvalidOption(Errors.E705.format(token=token, level=self.level))
