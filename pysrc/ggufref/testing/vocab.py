"""Small but complete tokenizers for synthetic GGUF models.

A real vocabulary has 32k to 262k tokens; the test models need only a few hundred to make
every code path run: byte fallback, merges, special tokens, user-defined tokens.
`add_vocab(writer, kind)` writes every ``tokenizer.ggml.*`` key llama.cpp reads, so llama.cpp
can load the file and serve as the oracle for our tokenizer.

The pieces are learned by a tiny BPE trainer over `CORPUS`; the trainer breaks ties by
string order, so a kind always produces the same vocabulary (the goldens store a sha256 of
the token list to catch drift).

Kinds:

- ``spm``: SentencePiece-style like Gemma 3 (``tokenizer.ggml.model = llama``): control tokens
  ``<pad> <eos> <bos> <unk>`` at ids 0-3, chat tokens ``<start_of_turn> <end_of_turn>``,
  user-defined whitespace tokens, 256 byte-fallback tokens ``<0x00>``..``<0xFF>``, then
  ``▁``-prefixed pieces with scores; no space prefix.
- ``spm-llama2``: the same pieces laid out like Llama 2 (``<unk> <s> </s>`` at 0-2, space prefix).
- ``bpe-llama3``: byte-level BPE (``gpt2``) with ``pre = llama-bpe`` and Llama 3's specials.
- ``bpe-qwen2``: byte-level BPE with ``pre = qwen2`` and Qwen's specials (``<think>`` and the
  tool-call tags are user-defined, as in Qwen GGUFs: llama.cpp splits them out even when special
  tokens are not parsed).
- ``bpe-default``: byte-level BPE with ``pre = default`` and ``<|endoftext|>``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass, field

import gguf

from ggufref.tokenizer_bpe import byte_to_unicode

KINDS = ("spm", "spm-llama2", "bpe-llama3", "bpe-qwen2", "bpe-default")

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = (int(t) for t in gguf.TokenType)

CORPUS = """\
The quick brown fox jumps over the lazy dog. The dog sleeps in the sun, and the fox runs
into the forest. A model reads a file, turns the text into tokens, and predicts the next
token. The capital of France is Paris; the capital of Italy is Rome. In the morning we
read the news, in the evening we write code. This is a test of the tokenizer: it should
split words, numbers and punctuation the same way every time.
Hello, world! How are you today? I'm fine, thanks. You're welcome. We've seen it, they'll
come, she'd know. It's 2024 and 1,234,567 people counted 3.14159 apples at 12:30 pm.
The weights stay quantized in their blocks; the kernels read each row of blocks in order.
Every layer has attention and a feed-forward network, and the output is a list of logits.
Tokens are integers. Text is a string of bytes. The vocabulary maps one to the other.

def tokenize(text: str) -> list[int]:
    \"\"\"Split the text into token ids.\"\"\"
    ids = []
    for word in text.split():
        if word in vocab:
            ids.append(vocab[word])
        else:
            ids.extend(byte_fallback(word))
    return ids

class Model:
    def __init__(self, n_layers=18, n_embd=640):
        self.n_layers = n_layers
        self.n_embd = n_embd

    def forward(self, x):
        for i in range(self.n_layers):
            x = self.layers[i](x) + x
        return x

for (int i = 0; i < n; i++) { sum += a[i] * b[i]; }
if (x == NULL) { return -1; } else { printf("%d\\n", x); }
{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
<html><body><p>Hello</p></body></html>
SELECT name, value FROM config WHERE key = 'model' ORDER BY name;

Café, naïve, résumé, façade, jalapeño, Straße, Ærø, Œuvre, São Paulo, Zürich, Kraków.
你好，世界。我们在学习语言模型。日本語のテキストも少しあります。한국어 문장입니다.
Привет, мир! Γειά σου κόσμε. مرحبا بالعالم. 🙂 🚀 ✨ 👍
"""

# Tokens that every byte-level kind shares with real models, by kind: (text, type).
BPE_SPECIALS: dict[str, list[tuple[str, int]]] = {
    "bpe-llama3": [
        ("<|begin_of_text|>", CONTROL),
        ("<|end_of_text|>", CONTROL),
        ("<|start_header_id|>", CONTROL),
        ("<|end_header_id|>", CONTROL),
        ("<|eot_id|>", CONTROL),
        ("<|eom_id|>", CONTROL),
        ("<|python_tag|>", CONTROL),
    ],
    "bpe-qwen2": [
        ("<|endoftext|>", CONTROL),
        ("<|im_start|>", CONTROL),
        ("<|im_end|>", CONTROL),
        ("<tool_call>", USER_DEFINED),
        ("</tool_call>", USER_DEFINED),
        ("<think>", USER_DEFINED),
        ("</think>", USER_DEFINED),
    ],
    "bpe-default": [("<|endoftext|>", CONTROL)],
}


@dataclass
class Vocab:
    """Everything `add_vocab` writes, as plain Python lists (index = token id)."""

    model: str  # tokenizer.ggml.model: "llama" (SentencePiece-style) or "gpt2" (byte-level BPE)
    pre: str  # tokenizer.ggml.pre
    tokens: list[str]
    scores: list[float]
    types: list[int]  # gguf.TokenType values
    merges: list[str] = field(default_factory=list)  # "left right", by rank (BPE only)
    special_ids: dict[str, int] = field(default_factory=dict)  # "bos", "eos", "unk", "pad"
    add_bos: bool = True
    add_space_prefix: bool | None = None  # SentencePiece-style only

    def token_id(self, text: str) -> int:
        return self.tokens.index(text)


# ----------------------------------------------------------------------------------------------
# A deterministic BPE trainer


def train_bpe(words: Counter[tuple[str, ...]], n_merges: int) -> list[tuple[str, str]]:
    """Learn up to `n_merges` merges from word counts (each word a tuple of symbols).

    Each step merges the most frequent adjacent pair; ties go to the smallest pair in string
    order, so the result does not depend on dict ordering. The corpus is small, so pairs seen
    once are merged too (the vocabulary then holds whole words, as a real one does).
    """
    seqs = [list(w) for w in words]
    counts = list(words.values())
    pair_counts: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for i, seq in enumerate(seqs):
        for pair in zip(seq, seq[1:], strict=False):
            pair_counts[pair] += counts[i]
            where.setdefault(pair, set()).add(i)

    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges and pair_counts:
        best = min(pair_counts, key=lambda p: (-pair_counts[p], p))
        merges.append(best)
        for i in sorted(where.pop(best, ())):
            seq = seqs[i]
            for pair in zip(seq, seq[1:], strict=False):  # forget this word's old pairs
                pair_counts[pair] -= counts[i]
                if pair_counts[pair] <= 0:
                    del pair_counts[pair]
            seqs[i] = seq = _merge_pair(seq, best)
            for pair in zip(seq, seq[1:], strict=False):
                pair_counts[pair] += counts[i]
                where.setdefault(pair, set()).add(i)
    return merges


def _merge_pair(seq: list[str], pair: tuple[str, str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(seq):
        if i + 1 < len(seq) and (seq[i], seq[i + 1]) == pair:
            out.append(seq[i] + seq[i + 1])
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out


# ----------------------------------------------------------------------------------------------
# SentencePiece-style (tokenizer.ggml.model = llama)

SPM_MERGES = 700


@functools.cache
def _spm_pieces() -> tuple[list[str], list[float]]:
    """Pieces and scores: merged pieces score -rank (so the SPM bigram merge replays the BPE
    order), single characters score below every merge."""
    words = Counter(tuple("▁" + w) for w in CORPUS.split())
    merges = train_bpe(words, SPM_MERGES)
    pieces: list[str] = []
    seen: set[str] = set()
    for left, right in merges:
        if left + right not in seen:
            seen.add(left + right)
            pieces.append(left + right)
    scores = [-float(i) for i in range(len(pieces))]
    chars = sorted({c for w in words for c in w})
    pieces += chars
    scores += [-float(SPM_MERGES + i) for i in range(len(chars))]
    return pieces, scores


def _spm_vocab(kind: str) -> Vocab:
    if kind == "spm":  # Gemma 3 layout
        head = [("<pad>", CONTROL), ("<eos>", CONTROL), ("<bos>", CONTROL), ("<unk>", UNKNOWN)]
        head += [("<start_of_turn>", CONTROL), ("<end_of_turn>", CONTROL), ("<mask>", CONTROL)]
        # Gemma's vocabulary has user-defined tokens for whitespace runs and a few tags;
        # llama.cpp splits them out before the SentencePiece merge, even without parse_special.
        head += [("\n", USER_DEFINED), ("\n\n", USER_DEFINED), ("  ", USER_DEFINED)]
        head += [("   ", USER_DEFINED), ("\t", USER_DEFINED), ("<img>", USER_DEFINED)]
        specials = {"pad": 0, "eos": 1, "bos": 2, "unk": 3}
        add_space_prefix = False
    else:  # Llama 2 layout
        head = [("<unk>", UNKNOWN), ("<s>", CONTROL), ("</s>", CONTROL)]
        specials = {"unk": 0, "bos": 1, "eos": 2}
        add_space_prefix = True
    tokens = [t for t, _ in head]
    types = [ty for _, ty in head]
    scores = [0.0 if ty == USER_DEFINED else -1000.0 for ty in types]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    scores += [0.0] * 256
    pieces, piece_scores = _spm_pieces()
    tokens += pieces
    types += [NORMAL] * len(pieces)
    scores += piece_scores
    return Vocab(
        model="llama",
        pre="default",
        tokens=tokens,
        scores=scores,
        types=types,
        special_ids=specials,
        add_bos=True,
        add_space_prefix=add_space_prefix,
    )


# ----------------------------------------------------------------------------------------------
# Byte-level BPE (tokenizer.ggml.model = gpt2)

BPE_MERGES = 1000

# Words for training: contractions, letters with an optional leading space, single digits,
# punctuation runs, whitespace. (Close to, but not the same as, any model's pre-tokenizer:
# the trainer only needs plausible words.)
_TRAIN_SPLIT = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d| ?[^\s\w]+|\s+")


@functools.cache
def _bpe_base() -> tuple[list[str], list[tuple[str, str]]]:
    enc = byte_to_unicode()
    words: Counter[tuple[str, ...]] = Counter()
    for w in _TRAIN_SPLIT.findall(CORPUS):
        words[tuple(enc[b] for b in w.encode("utf-8"))] += 1
    merges = train_bpe(words, BPE_MERGES)
    tokens = [enc[b] for b in sorted(enc, key=lambda b: ord(enc[b]))]
    seen = set(tokens)
    for left, right in merges:
        if left + right not in seen:
            seen.add(left + right)
            tokens.append(left + right)
    return tokens, merges


def _bpe_vocab(kind: str) -> Vocab:
    base, merges = _bpe_base()
    tokens = list(base)
    types = [NORMAL] * len(tokens)
    for text, ty in BPE_SPECIALS[kind]:
        tokens.append(text)
        types.append(ty)
    scores = [0.0] * len(tokens)

    def tid(text: str) -> int:
        return tokens.index(text)

    if kind == "bpe-llama3":
        pre, add_bos = "llama-bpe", True
        specials = {"bos": tid("<|begin_of_text|>"), "eos": tid("<|eot_id|>")}
        specials["pad"] = tid("<|end_of_text|>")
    elif kind == "bpe-qwen2":
        pre, add_bos = "qwen2", False
        specials = {"bos": tid("<|endoftext|>"), "eos": tid("<|im_end|>")}
        specials["pad"] = tid("<|endoftext|>")
    else:
        pre, add_bos = "default", False
        specials = {"bos": tid("<|endoftext|>"), "eos": tid("<|endoftext|>")}
    return Vocab(
        model="gpt2",
        pre=pre,
        tokens=tokens,
        scores=scores,
        types=types,
        merges=[f"{a} {b}" for a, b in merges],
        special_ids=specials,
        add_bos=add_bos,
    )


# ----------------------------------------------------------------------------------------------
# Public API


@functools.cache
def build_vocab(kind: str) -> Vocab:
    """The vocabulary of `kind` (cached: building the BPE ones takes a fraction of a second)."""
    if kind in ("spm", "spm-llama2"):
        return _spm_vocab(kind)
    if kind in BPE_SPECIALS:
        return _bpe_vocab(kind)
    raise ValueError(f"unknown vocab kind {kind!r}, expected one of {', '.join(KINDS)}")


# tag::add_vocab[]
def add_vocab(writer: gguf.GGUFWriter, kind: str) -> int:
    """Write the tokenizer of `kind` into `writer` (all tokenizer.ggml.* keys); return its size."""
    v = build_vocab(kind)
    writer.add_tokenizer_model(v.model)
    writer.add_tokenizer_pre(v.pre)
    writer.add_token_list(v.tokens)
    writer.add_token_scores(v.scores)
    writer.add_token_types(v.types)
    if v.merges:
        writer.add_token_merges(v.merges)
    writer.add_bos_token_id(v.special_ids["bos"])
    writer.add_eos_token_id(v.special_ids["eos"])
    if "unk" in v.special_ids:
        writer.add_unk_token_id(v.special_ids["unk"])
    if "pad" in v.special_ids:
        writer.add_pad_token_id(v.special_ids["pad"])
    writer.add_add_bos_token(v.add_bos)
    writer.add_add_eos_token(False)
    if v.add_space_prefix is not None:
        writer.add_add_space_prefix(v.add_space_prefix)
    return len(v.tokens)


# end::add_vocab[]


def write_vocab_gguf(path: str | os.PathLike[str], kind: str) -> int:
    """Write a GGUF with only a vocabulary (and the few llama keys a loader insists on).

    llama.cpp opens it with ``vocab_only=True``; our tokenizer reads it like any model file.
    """
    w = gguf.GGUFWriter(os.fspath(path), "llama")
    w.add_context_length(128)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    n = add_vocab(w, kind)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return n


def tokens_sha256(tokens: list[str]) -> str:
    """A fingerprint of a token list (the goldens store it to detect vocabulary drift)."""
    h = hashlib.sha256()
    for t in tokens:
        h.update(t.encode("utf-8") + b"\0")
    return h.hexdigest()


# Pieces of awkward text: pre-tokenizer edges, combining marks, emoji sequences, control and
# private-use characters, and special-token spellings of several families. Random sequences of
# them are tokenized by llama.cpp once (tools/make_tokenizer_goldens.py) and replayed by the tests.
FUZZ_PIECES = [
    *"abcXYZ  \t\n\r'.,!?-_()[]{}<>|$+=^~`\"0123456789",
    *["'s", "'T", "'re", "'LL", " '", "é", "ß", "e\u0301", "\u0300", "你", "好", "日本", "한"],
    *["Ж", "λ", "\u0663", "\u216b", "½", "²", "🙂", "👍🏽", "\u200d", "\ufe0f", "\u00a0", "\u3000"],
    *["\u2028", "\x85", "\x0b", "\x1c", "\U000e0001", "\u0378", "   ", "\n\n\n", "<0x41>", "▁"],
    *["<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<|im_start|>", "<|im_end|>"],
    *["<think>", "</tool_call>", "<|eot_id|>", "<|begin_of_text|>", "<|endoftext|>", "<img>"],
    *["<s>", "</s>", "[multimodal]", "<unused3>", "Hello", " world", "the", "ing"],
]


def random_texts(n: int, seed: int = 0) -> list[str]:
    """n seeded random concatenations of 0..40 FUZZ_PIECES (the same list on every machine)."""
    import random

    rng = random.Random(seed)
    return ["".join(rng.choices(FUZZ_PIECES, k=rng.randint(0, 40))) for _ in range(n)]
