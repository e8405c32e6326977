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
    ``<hw_L_C>`` tokens at ``level``, as ``hyperscene export --format hyperwords --level L`` wrote
    the sequences the model learnt; each token is one id of ``tokenizer``. The tokenizer's own
    special tokens ([CLS] ... [SEP], <s> ...) wrap each sequence as they would wrap text::

        tokenizer = HyperwordTokenizer(Encoder.from_store("store"), AutoTokenizer.from_pretrained("my-model-hw"))
        batch = tokenizer(["First text.", "Second one."], padding=True, return_tensors="pt")
        logits = model(**batch).logits

    :meth:`decode` goes back from ids to what the tokens stand for (representative texts and gists).
    """

    def __init__(self, encoder, tokenizer, level: int = 0):
        self.encoder, self.tokenizer, self.level = encoder, tokenizer, level
        self._prefix, self._suffix = _special_tokens_around(tokenizer)

    def __len__(self) -> int:
        return len(self.tokenizer)

    def __call__(self, text, add_special_tokens: bool = True, padding=False, truncation: bool = False,
                 max_length: int | None = None, return_tensors: str | None = None, return_attention_mask: bool = True):
        from transformers import BatchEncoding

        single = isinstance(text, str)
        sequences = [self._ids(doc.tokens(self.level)) for doc in self.encoder.encode_many([text] if single else list(text))]
        if add_special_tokens:
            sequences = [self._prefix + s + self._suffix for s in sequences]
        if truncation and max_length is not None:
            sequences = [self._truncated(s, max_length, add_special_tokens) for s in sequences]
        features = {"input_ids": sequences}
        if return_attention_mask:
            features["attention_mask"] = [[1] * len(s) for s in sequences]
        if padding:
            batch = self.tokenizer.pad(features, padding=padding, max_length=max_length, return_tensors=return_tensors)
            return batch
        if single:
            features = {k: v[0] for k, v in features.items()}
        return BatchEncoding(features, tensor_type=return_tensors)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self(text, add_special_tokens=add_special_tokens, return_attention_mask=False)["input_ids"]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Ids -> the representative text of each hyperword token, joined by " | "; other tokens as
        the tokenizer writes them, special ones left out with ``skip_special_tokens``."""
        from hyperscene.transforms.export import parse_token

        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        special = set(self.tokenizer.all_special_ids) if skip_special_tokens else set()
        out = []
        for i, token in zip(ids, self.tokenizer.convert_ids_to_tokens(ids)):
            if i in special:
                continue
            try:
                parse_token(token)
            except ValueError:
                out.append(self.tokenizer.decode([i]))
                continue
            out.append(self.encoder.representative_texts([token])[0] or "")
        return " | ".join(" ".join(t.split()) for t in out)

    def batch_decode(self, sequences, skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(s, skip_special_tokens) for s in sequences]

    def _ids(self, tokens: list[str]) -> list[int]:
        from hyperscene.transforms.errors import Errors, InvalidOption

        ids = self.tokenizer.convert_tokens_to_ids(tokens)
        for token, i in zip(tokens, ids):
            if i is None or i == self.tokenizer.unk_token_id:
                raise InvalidOption(Errors.E705.format(token=token, level=self.level))
        return list(ids)

    def _truncated(self, ids: list[int], max_length: int, special: bool) -> list[int]:
        if len(ids) <= max_length:
            return ids
        if not special:
            return ids[:max_length]
        keep = max(max_length - len(self._prefix) - len(self._suffix), 0)
        return self._prefix + ids[len(self._prefix):len(self._prefix) + keep] + self._suffix


def _special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single sequence's own, found by tokenizing one
    of its added tokens (which it never splits) with its special tokens."""
    added = [t for t in tokenizer.get_added_vocab() if t.startswith("<hw_")]
    if not added:
        return [], []
    token_id = tokenizer.convert_tokens_to_ids(added[0])
    ids = tokenizer(added[0], add_special_tokens=True)["input_ids"]
    k = ids.index(token_id)
    return list(ids[:k]), list(ids[k + 1:])
