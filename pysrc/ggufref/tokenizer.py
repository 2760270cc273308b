"""Text <-> token ids, from the vocabulary stored in the GGUF file, matching llama.cpp.

Two tokenizer families cover the models ggufref runs:

- ``tokenizer.ggml.model = llama``: SentencePiece-style (Gemma, Llama 2) -> `tokenizer_spm`.
- ``tokenizer.ggml.model = gpt2``: byte-level BPE (Llama 3, Qwen, Mistral-Nemo) -> `tokenizer_bpe`.

Both share the first step: special tokens are cut out of the text before anything else.
Control tokens (``<bos>``, ``<|im_start|>``) are recognised only when the caller asks
(``parse_special=True``: chat templates do, user text must not); user-defined tokens (Gemma's
whitespace runs, Qwen's ``<think>``) are recognised always, as llama.cpp does.

Token attributes follow llama.cpp: ``tokenizer.ggml.token_type`` gives each token a type, and
tokens whose text marks an end of turn (``<end_of_turn>``, ``<|im_end|>``, ``<|eot_id|>``...) are
forced to CONTROL and collected into `Tokenizer.eot_ids`, the ids that end generation.
"""

from __future__ import annotations

import bisect
import codecs
import itertools
import math
import os
import re
from array import array
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ggufref.errors import ModelError
from ggufref.tokenizer_bpe import (
    CHAR_TO_BYTE,
    PRE_TOKENIZERS,
    bpe_merge,
    byte_encode,
    parse_merges,
    pre_tokenize,
)
from ggufref.tokenizer_spm import spm_encode

# tokenizer.ggml.token_type values (gguf.TokenType)
TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL, TYPE_USER_DEFINED, TYPE_UNUSED, TYPE_BYTE = range(1, 7)

# llama.cpp's token attribute bits (llama_token_attr)
ATTR_UNKNOWN, ATTR_UNUSED, ATTR_NORMAL = 1 << 0, 1 << 1, 1 << 2
ATTR_CONTROL, ATTR_USER_DEFINED, ATTR_BYTE = 1 << 3, 1 << 4, 1 << 5
_TYPE_TO_ATTR = {
    TYPE_NORMAL: ATTR_NORMAL,
    TYPE_UNKNOWN: ATTR_UNKNOWN,
    TYPE_CONTROL: ATTR_CONTROL,
    TYPE_USER_DEFINED: ATTR_USER_DEFINED,
    TYPE_UNUSED: ATTR_UNUSED,
    TYPE_BYTE: ATTR_BYTE,
}

# Texts llama.cpp treats as end of generation (and forces to CONTROL), whatever the file says.
EOG_TEXTS = frozenset(
    ["<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>"]
    + ["<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]"]
    + ["[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>"]
    + ["<｜end▁of▁sentence｜>", "[e~["]
    # fill-in-the-middle padding, repository and file separators
    + ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", "<|fim_repo|>", "<|repo_name|>"]
    + ["<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>"]
)
# Texts llama.cpp forces to CONTROL without making them end generation (fill-in-the-middle).
FIM_TEXTS = frozenset(
    ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "▁<PRE>", "<|fim_suffix|>"]
    + ["<fim-suffix>", "<fim_suffix>", "<SUF>", "▁<SUF>", "<|fim_middle|>", "<fim-middle>"]
    + ["<fim_middle>", "<MID>", "▁<MID>"]
)

_SPACE = "\u2581"  # ▁, SentencePiece's visible space


# ----------------------------------------------------------------------------------------------
# Reading the tokenizer.* metadata (the GGUF loader can hand us its dict instead)

_WANTED = ("tokenizer.", "general.")


def read_tokenizer_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``tokenizer.*`` and ``general.*`` keys of a GGUF file, as plain Python values
    (through the validated loader: a hostile file fails with GGUFError, not here)."""
    from ggufref.gguf_file import open_gguf

    return open_gguf(path).with_prefix(*_WANTED)


def _metadata_of(source: Any) -> tuple[dict[str, Any], str]:
    """Accept a path, a metadata dict, an object with `.metadata`, or a gguf.GGUFReader."""
    if isinstance(source, str | os.PathLike):
        return read_tokenizer_metadata(source), str(source)
    if isinstance(source, Mapping):
        return dict(source), "<metadata>"
    origin = str(getattr(source, "path", "<metadata>"))
    if hasattr(source, "metadata"):
        return dict(source.metadata), origin
    if hasattr(source, "with_prefix"):  # ggufref.gguf_file.GGUFFile
        return source.with_prefix(*_WANTED), origin
    if hasattr(source, "fields"):  # gguf.GGUFReader
        meta = {k: f.contents() for k, f in source.fields.items() if k.startswith(_WANTED)}
        return meta, origin
    raise TypeError(f"cannot read a tokenizer from {type(source).__name__}")


_CACHE: dict[tuple[str, int, int], Tokenizer] = {}
_BYTE_TOKEN_RE = re.compile(r"<0x[0-9A-Fa-f]{2}>")
_ID_KEYS = ("bos", "eos", "unknown", "padding", "eot", "eom")
_FLAG_KEYS = ("add_bos_token", "add_eos_token", "add_space_prefix")


# tag::check_metadata[]
def check_tokenizer_metadata(meta: Mapping[str, Any], origin: str) -> list[str]:
    """The token list, after checking the type of every ``tokenizer.ggml.*`` key we read.

    A model file is untrusted input: a key of the wrong type (``bos_token_id`` as a string,
    ``scores`` as one float, a ``token_type`` list shorter than the vocabulary) would fail
    later with a Python traceback, so it is refused here with a message naming the key.
    """

    def bad(key: str, found: Any, expected: str, shown: str = "") -> ModelError:
        shown = shown or (type(found).__name__ if isinstance(found, list | tuple) else "")
        shown = shown or repr(found)[:40]
        return ModelError(f"{origin}: tokenizer.ggml.{key}: found {shown}, expected {expected}")

    tokens = meta.get("tokenizer.ggml.tokens")
    if tokens is None:
        raise ModelError(f"{origin}: tokenizer.ggml.tokens is missing (the vocabulary)")
    if not isinstance(tokens, list | tuple) or not _all_of(tokens, (str,)):
        raise bad("tokens", _first_odd(tokens, str), "a list of strings")
    if not tokens:
        raise ModelError(f"{origin}: tokenizer.ggml.tokens is empty (the vocabulary)")
    n = len(tokens)
    arrays = (("scores", (int, float), "numbers"), ("token_type", (int,), "integers"))
    for key, kinds, what in arrays:
        value = meta.get(f"tokenizer.ggml.{key}")
        if value is None:
            continue
        if not isinstance(value, list | tuple) or not _all_of(value, kinds):
            raise bad(key, _first_odd(value, kinds), f"a list of {n} {what}")
        if len(value) != n:
            raise bad(key, None, f"{n} (one per token)", shown=f"{len(value)} items")
    merges = meta.get("tokenizer.ggml.merges")
    if merges is not None and (not isinstance(merges, list | tuple) or not _all_of(merges, (str,))):
        raise bad("merges", _first_odd(merges, str), 'a list of strings "left right"')
    for key in _ID_KEYS:
        value = meta.get(f"tokenizer.ggml.{key}_token_id")
        if value is not None and not _is(value, (int,)):
            raise bad(f"{key}_token_id", value, "an integer token id")
    for key in _FLAG_KEYS:
        value = meta.get(f"tokenizer.ggml.{key}")
        if value is not None and not (isinstance(value, bool) or value in (0, 1)):
            raise bad(key, value, "a bool")
    pre = meta.get("tokenizer.ggml.pre")
    if pre is not None and not isinstance(pre, str):
        raise bad("pre", pre, "a string")
    return list(tokens)


# end::check_metadata[]


def _all_of(values: list[Any] | tuple[Any, ...], kinds: tuple[type, ...]) -> bool:
    """Every item's exact type is one of ``kinds`` (one pass at C speed: vocabularies are big;
    a bool, whose type is not int, fails)."""
    return set(map(type, values)) <= set(kinds)


def _is(value: Any, kinds: tuple[type, ...]) -> bool:
    """isinstance, except that a bool is not a number and a float must be finite."""
    if isinstance(value, bool) or not isinstance(value, kinds):
        return False
    return not isinstance(value, float) or math.isfinite(value)


def _first_odd(value: Any, kinds: type | tuple[type, ...]) -> Any:
    """What to show for a wrong value: the whole scalar, or the first item of a wrong type."""
    if not isinstance(value, list | tuple):
        return value
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return next((v for v in value if not _is(v, kinds)), value)


# ----------------------------------------------------------------------------------------------
# The tokenizer


class Tokenizer:
    """Encode text to ids and decode ids to text, exactly as llama.cpp does for this vocabulary."""

    def __init__(self, meta: Mapping[str, Any], origin: str = "<metadata>"):
        model = meta.get("tokenizer.ggml.model")
        if not isinstance(model, str) or model not in ("llama", "gpt2"):
            raise ModelError(
                f"{origin}: unsupported tokenizer.ggml.model {model!r:.60} (llama, gpt2)"
            )
        self.kind = "spm" if model == "llama" else "bpe"
        tokens = check_tokenizer_metadata(meta, origin)
        if "" in tokens:
            tokens = [t or f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
        self.tokens: list[str] = tokens
        n = len(self.tokens)
        # Compact arrays, not lists of Python numbers: 262144 floats as objects cost ~8 MB.
        # (Vocabularies are big: the loops over all tokens here run at C speed.)
        self.scores = array("f", meta.get("tokenizer.ggml.scores") or [0.0] * n)
        types = meta.get("tokenizer.ggml.token_type") or [TYPE_NORMAL] * n
        self.attrs = array("i", map(_TYPE_TO_ATTR.get, types, itertools.repeat(0)))
        attrs = np.frombuffer(self.attrs, dtype=np.intc)
        for i in np.flatnonzero(attrs == ATTR_BYTE).tolist():
            # a BYTE token must spell its byte, or decoding it would fail
            if not _BYTE_TOKEN_RE.fullmatch(self.tokens[i]):
                raise ModelError(
                    f"{origin}: tokenizer.ggml.token_type: token {i} is a byte token but its "
                    f"text is {self.tokens[i]!r:.40}, expected <0xNN>"
                )
        self.token_to_id: dict[str, int] = dict(zip(self.tokens, range(n), strict=True))
        if len(self.token_to_id) != n:
            raise ModelError(f"{origin}: the vocabulary has duplicate tokens")
        self._configure(meta, origin)
        self._find_end_of_generation(meta)
        # Special tokens are cut out longest first (llama.cpp sorts by byte length).
        # (attrs is a view of self.attrs: it sees what _find_end_of_generation changed)
        special = np.flatnonzero(attrs & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)).tolist()
        special.sort(key=lambda i: -len(self.tokens[i].encode("utf-8")))
        self._special_all = special
        # Without parse_special, only user-defined tokens (not also control) are cut out.
        self._special_user = [i for i in special if not self.is_control(i)]
        self._pieces: dict[tuple[int, bool], bytes] = {}
        self._non_word_starts: list[int] | None = None
        self._word_cache: dict[str, list[int]] = {}

    def _configure(self, meta: Mapping[str, Any], origin: str) -> None:
        """Defaults per family as llama.cpp sets them, then the file's keys on top."""
        n = len(self.tokens)
        if self.kind == "spm":
            ids = {"bos": 1, "eos": 2, "unk": 0, "pad": None}
            self.add_bos, self.add_space_prefix, self.clean_spaces = True, True, False
            self.ignore_merges = False
            self.byte_ids = [self.token_to_id.get(f"<0x{b:02X}>") for b in range(256)]
        else:
            ids = {"bos": 11, "eos": 11, "unk": None, "pad": None}
            pre = meta.get("tokenizer.ggml.pre") or "default"
            if pre not in PRE_TOKENIZERS:
                known = ", ".join(sorted(PRE_TOKENIZERS))
                raise ModelError(f"{origin}: unsupported tokenizer.ggml.pre {pre!r} ({known})")
            self.pre = pre
            self.regexes, self.clean_spaces, self.ignore_merges, self.add_bos = PRE_TOKENIZERS[pre]
            self.add_space_prefix = False
            self.ranks = parse_merges(list(meta.get("tokenizer.ggml.merges") or []))
        for name, key in [("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")]:
            value = meta.get(f"tokenizer.ggml.{key}_token_id")
            if value is not None and 0 <= value < n:
                ids[name] = value
            elif ids[name] is not None and not 0 <= ids[name] < n:  # type: ignore[operator]
                ids[name] = None
        self.bos_id: int | None = ids["bos"]
        self.eos_id: int | None = ids["eos"]
        self.unk_id: int | None = ids["unk"]
        self.pad_id: int | None = ids["pad"]
        self.add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", self.add_bos))
        self.add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
        self.add_space_prefix = bool(
            meta.get("tokenizer.ggml.add_space_prefix", self.add_space_prefix)
        )

    def _find_end_of_generation(self, meta: Mapping[str, Any]) -> None:
        eog: set[int] = set()
        for text in EOG_TEXTS | FIM_TEXTS:
            tid = self.token_to_id.get(text)
            if tid is not None:
                self.attrs[tid] |= ATTR_CONTROL
                if text in EOG_TEXTS:
                    eog.add(tid)
        for key in ("tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"):
            value = meta.get(key)
            if value is not None and 0 <= value < len(self.tokens):
                eog.add(value)
        if self.eos_id is not None:
            eog.add(self.eos_id)
        # llama.cpp's exceptions: gpt-oss's <|end|> and Gemma 4's </s> do not end generation.
        texts = {self.tokens[t]: t for t in eog}
        has_call = "<|call|>" in texts or "<|calls|>" in texts
        if "<|end|>" in texts and has_call and ("<|return|>" in texts or "<|flush|>" in texts):
            eog.discard(texts["<|end|>"])
            self.attrs[texts["<|end|>"]] = ATTR_USER_DEFINED
        if "</s>" in texts and "<|tool_response>" in texts:
            eog.discard(texts["</s>"])
            self.attrs[texts["</s>"]] = ATTR_NORMAL
        self.eot_ids: frozenset[int] = frozenset(eog)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_gguf(cls, source: Any) -> Tokenizer:
        """Build from a GGUF path, a loaded GGUF file, or a metadata dict.

        Built once per file (path, size, mtime): Gemma 3's vocabulary takes ~0.4 s.
        """
        path = source if isinstance(source, str | os.PathLike) else getattr(source, "path", None)
        if path is None or not os.path.isfile(path):
            return cls(*_metadata_of(source))
        st = os.stat(path)
        key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
        if key not in _CACHE:
            _CACHE[key] = cls(*_metadata_of(source))
        return _CACHE[key]

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def token_id(self, text: str) -> int | None:
        """The id of the token whose text is exactly `text` (e.g. "<end_of_turn>"), or None."""
        return self.token_to_id.get(text)

    def is_control(self, tid: int) -> bool:
        return bool(self.attrs[tid] & (ATTR_CONTROL | ATTR_UNKNOWN))

    # -- encode ---------------------------------------------------------------------------------

    # tag::encode[]
    def encode(
        self,
        text: str,
        add_bos: bool | None = None,
        parse_special: bool = False,
        add_eos: bool | None = None,
    ) -> list[int]:
        """Token ids of `text`. add_bos/add_eos None: as the file says (tokenizer.ggml.add_*)."""
        _check_unicode(text)
        return self._encode_fragments(self._split_special(text, parse_special), add_bos, add_eos)

    # end::encode[]

    # tag::encode_protected[]
    def encode_protected(
        self,
        text: str,
        plain_spans: Iterable[tuple[int, int]],
        add_bos: bool | None = None,
        add_eos: bool | None = None,
    ) -> list[int]:
        """Like ``encode(text, parse_special=True)``, except that a control token lying wholly
        inside one of ``plain_spans`` stays text. Chat prompts use it so a message holding
        ``<|im_end|>`` cannot end its own turn: only the template may write control tokens.

        The text is not cut at the spans, so a prompt without control-token text in its
        messages encodes exactly like ``encode``; a span that only overlaps a token's text
        (a message "im" found inside ``<|im_end|>``) leaves the token alone.
        """
        _check_unicode(text)
        spans = _merged(plain_spans, len(text))
        starts = [a for a, _ in spans]

        def inside(a: int, b: int) -> bool:
            k = bisect.bisect_right(starts, a) - 1
            return k >= 0 and b <= spans[k][1]

        segments = [(0, len(text))] if text else []  # plain text still to search
        found: list[tuple[int, int]] = []  # (start, token id)
        for tid in self._special_all:  # longest first, as _split_special
            tok = self.tokens[tid]
            if tok not in text:
                continue
            control, n, rest = self.is_control(tid), len(tok), []
            for a, b in segments:
                q = text.find(tok, a, b)
                while q >= 0:
                    if control and inside(q, q + n):  # message text: stays text
                        q = text.find(tok, q + 1, b)
                        continue
                    rest.append((a, q))
                    found.append((q, tid))
                    a = q + n
                    q = text.find(tok, a, b)
                rest.append((a, b))
            segments = [(a, b) for a, b in rest if a < b]
        frags: list[str | int] = []
        pos = 0
        for q, tid in sorted(found):
            if q > pos:
                frags.append(text[pos:q])
            frags.append(tid)
            pos = q + len(self.tokens[tid])
        if pos < len(text):
            frags.append(text[pos:])
        return self._encode_fragments(frags, add_bos, add_eos)

    # end::encode_protected[]

    def _encode_fragments(
        self, frags: list[str | int], add_bos: bool | None, add_eos: bool | None
    ) -> list[int]:
        """Ids of text already cut at special tokens (ints) into plain-text fragments."""
        add_bos = self.add_bos if add_bos is None else add_bos
        add_eos = self.add_eos if add_eos is None else add_eos
        out: list[int] = []
        if add_bos and self.bos_id is not None:
            out.append(self.bos_id)
        prev_special = True  # SentencePiece: a fragment after a special token gets a space prefix
        for frag in frags:
            if isinstance(frag, int):
                out.append(frag)
                prev_special = True
            elif self.kind == "spm":
                if self.add_space_prefix and prev_special:
                    frag = " " + frag
                out += spm_encode(
                    frag.replace(" ", _SPACE), self.token_to_id, self.scores, self.byte_ids
                )
                prev_special = False
            else:
                for word in pre_tokenize(frag, self.regexes):
                    out += self._bpe_word(byte_encode(word))
        if add_eos and self.eos_id is not None:
            out.append(self.eos_id)
        return out

    # tag::split_special[]
    def _split_special(self, text: str, parse_special: bool) -> list[str | int]:
        """Cut special tokens out of `text`: each special token in turn (longest first) splits
        the text fragments that are left; what remains are plain-text fragments."""
        frags: list[str | int] = [text] if text else []
        for tid in self._special_all if parse_special else self._special_user:
            tok = self.tokens[tid]
            if tok not in text:
                continue
            out: list[str | int] = []
            for frag in frags:
                if isinstance(frag, int) or tok not in frag:
                    out.append(frag)
                    continue
                for k, part in enumerate(frag.split(tok)):
                    if k:
                        out.append(tid)
                    if part:
                        out.append(part)
            frags = out
        return frags

    # end::split_special[]

    def _bpe_word(self, word: str) -> list[int]:
        """Ids of one byte-encoded word (cached: words repeat a lot in real text)."""
        ids = self._word_cache.get(word)
        if ids is not None:
            return ids
        if self.ignore_merges and word in self.token_to_id:
            ids = [self.token_to_id[word]]
        else:
            ids = []
            for piece in bpe_merge(word, self.ranks):
                tid = self.token_to_id.get(piece)
                if tid is not None:
                    ids.append(tid)
                else:  # llama.cpp then looks up each byte of the piece as a one-byte token
                    ids += [self.token_to_id[c] for c in piece if c in self.token_to_id]
        if len(self._word_cache) < 100_000:
            self._word_cache[word] = ids
        return ids

    # -- decode ---------------------------------------------------------------------------------

    # tag::token_to_piece[]
    def token_to_piece(self, tid: int, special: bool = False) -> bytes:
        """The bytes token `tid` stands for. Control tokens give b"" unless `special`."""
        key = (tid, special)
        piece = self._pieces.get(key)
        if piece is None:
            piece = self._pieces[key] = self._piece(tid, special)
        return piece

    def non_word_starts(self) -> list[int]:
        """Ids of the tokens whose text, leading spaces aside, does not begin with a letter or a
        digit (punctuation, markup, control tokens, whitespace). Computed once per tokenizer.

        The agent loop bans these as the first token of an answer-only round (chat/agent.py), so the
        model starts in words: tool calls open with ``{``, ``[``, ``<`` or a code fence.
        """
        if self._non_word_starts is None:
            self._non_word_starts = [
                i
                for i in range(self.vocab_size)
                if not self._piece(i, True).decode("utf-8", "replace").lstrip()[:1].isalnum()
            ]
        return self._non_word_starts

    def _piece(self, tid: int, special: bool) -> bytes:
        attr, text = self.attrs[tid], self.tokens[tid]
        if attr & (ATTR_CONTROL | ATTR_UNKNOWN):
            return text.encode("utf-8") if special else b""
        if attr & ATTR_USER_DEFINED:
            return text.encode("utf-8")
        if attr & ATTR_NORMAL:
            if self.kind == "spm":
                return text.replace(_SPACE, " ").encode("utf-8")
            return _byte_decode(text)
        if attr & ATTR_BYTE:
            return bytes([int(text[3:5], 16)])  # "<0xNN>"
        return b""  # unused or undefined tokens print nothing

    # end::token_to_piece[]

    def decode_bytes(
        self, ids: Iterable[int], special: bool = False, remove_special: bool = False
    ) -> bytes:
        """llama.cpp's llama_detokenize: pieces joined, then its space clean-up."""
        ids = list(ids)
        strip_space = self.add_space_prefix  # the space prefix encode added to the first word
        if remove_special and self.add_bos and ids and ids[0] == self.bos_id:
            strip_space = False
            ids = ids[1:]
        if remove_special and self.add_eos and ids and ids[-1] == self.eos_id:
            ids = ids[:-1]
        parts = []
        for k, tid in enumerate(ids):
            piece = self.token_to_piece(tid, special)
            if k == 0 and strip_space and piece.startswith(b" "):
                piece = piece[1:]
            parts.append(piece)
        out = b"".join(parts)
        return _clean_spaces(out) if self.clean_spaces else out

    def decode(
        self, ids: Iterable[int], special: bool = False, remove_special: bool = False
    ) -> str:
        """Text of `ids` (invalid UTF-8, e.g. a cut multibyte character, becomes U+FFFD)."""
        return self.decode_bytes(ids, special, remove_special).decode("utf-8", errors="replace")

    def stream(self, special: bool = False) -> StreamDecoder:
        return StreamDecoder(self, special)


def _merged(spans: Iterable[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """Spans clipped to ``0..n``, sorted, overlapping ones merged."""
    out: list[tuple[int, int]] = []
    for start, end in sorted((max(0, a), min(n, b)) for a, b in spans):
        if start >= end:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _check_unicode(text: str) -> None:
    """Refuse lone surrogates: they have no UTF-8, and they are how Python hands over invalid
    UTF-8 bytes from argv or a file read with ``surrogateescape``."""
    if not isinstance(text, str):
        raise ModelError(f"can only tokenize text, got {type(text).__name__}")
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ModelError(
            f"the text is not valid UTF-8 (an undecodable byte or lone surrogate "
            f"at character {err.start})"
        ) from None


def _byte_decode(text: str) -> bytes:
    """Byte-level token text -> bytes (llama.cpp prints unmapped characters as [UNK_BYTE_...])."""
    try:
        return bytes([CHAR_TO_BYTE[c] for c in text])
    except KeyError:
        out = b""
        for c in text:
            if c in CHAR_TO_BYTE:
                out += bytes([CHAR_TO_BYTE[c]])
            else:
                out += b"[UNK_BYTE_0x" + c.encode("utf-8").hex().encode() + text.encode() + b"]"
        return out


# tag::clean_spaces[]
def _clean_spaces(buf: bytes) -> bytes:
    """llama.cpp's detokenizer clean-up for BPE vocabularies (GPT-2 style text):
    " ?" " !" " ." " ," lose the space; " ' " loses both; " 's" " 'm" " 're" " 've" lose it."""
    if not buf:
        return buf
    out = bytearray(buf[:1])  # pass 1: no space before ? ! . ,
    for i in range(1, len(buf)):
        if buf[i - 1] == 0x20 and buf[i] in b"?!.,":
            out.pop()
        out.append(buf[i])
    src = bytearray(out)  # pass 2: a lone apostrophe between spaces
    out = bytearray(src[:1])
    i = 1
    while i < len(src):
        x = src[i]
        if x == 0x27 and i + 1 < len(src) and src[i - 1] == 0x20 and src[i + 1] == 0x20:
            out.pop()
            src[i + 1] = 0  # the next space is dropped (llama.cpp overwrites it with NUL)
            out.append(x)
            i += 2
            continue
        out.append(x)
        i += 1
    src = bytearray(out)  # pass 3: contractions
    out = bytearray(src[:1])
    for i in range(1, len(src)):
        if src[i - 1] == 0x20 and src[i] == 0x27 and i + 1 < len(src):
            nxt = bytes(src[i + 1 : i + 3])
            if nxt[:1] in (b"s", b"m") or (len(nxt) == 2 and nxt in (b"re", b"ve")):
                out.pop()
        out.append(src[i])
    return bytes(out)


# end::clean_spaces[]


# tag::stream[]
class StreamDecoder:
    """Feed token ids one at a time; get back only text whose UTF-8 is complete.

    A token may end in the middle of a multibyte character (byte-fallback tokens, byte-level
    BPE): those bytes wait in the decoder until the rest arrives, so a streamed answer never
    shows half a character. Bytes that can never become valid UTF-8 come out as U+FFFD.
    """

    def __init__(self, tokenizer: Tokenizer, special: bool = False):
        self.tokenizer = tokenizer
        self.special = special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, tid: int) -> str:
        return self._utf8.decode(self.tokenizer.token_to_piece(tid, self.special))

    def flush(self) -> str:
        """Whatever is left at the end (an incomplete character becomes U+FFFD)."""
        return self._utf8.decode(b"", final=True)


# end::stream[]
