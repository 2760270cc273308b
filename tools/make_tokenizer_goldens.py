"""Record llama.cpp's token ids and detokenized text as goldens for tests/test_tokenizer.py.

llama.cpp (through llama-cpp-python, loaded with ``vocab_only=True``) is the oracle: for the
default model and for each synthetic vocabulary of ``ggufref.testing.vocab`` it tokenizes
`CORPUS` with and without special-token parsing and BOS, and detokenizes the ids back; it also
tokenizes seeded random texts (``testing.vocab.random_texts``) that the tests replay.
The synthetic GGUFs are rebuilt by the tests from their kind; each golden stores a sha256 of
the token list so that a change in the vocabulary builder shows up as a clear failure.

    python tools/make_tokenizer_goldens.py [--model PATH] [--out tests/data/goldens]

Needs llama-cpp-python (not a test dependency: the goldens are committed).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "pysrc"))

from ggufref.model_files import resolve_model  # noqa: E402
from ggufref.testing.vocab import (  # noqa: E402
    KINDS,
    build_vocab,
    random_texts,
    tokens_sha256,
    write_vocab_gguf,
)
from ggufref.tokenizer import read_tokenizer_metadata  # noqa: E402

Decoded = str | dict[str, str]  # text, or {"hex": ...} when the bytes are not UTF-8
N_RANDOM = 150  # random texts per vocabulary, each with and without special-token parsing

LONG = (
    "GGUF files store a model's metadata and its tensors. The tokenizer is part of the "
    "metadata: a list of token strings, their scores or merge ranks, and a type for each. "
    "To turn text into ids, the special tokens are cut out first, then the remaining text is "
    "split and merged. Decoding goes the other way: each id maps back to its bytes. "
)

CORPUS: list[str] = [
    "",
    "The capital of France is",
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's fine, aren't they? We've seen THAT'S and YOU'RE.",
    # spaces
    " ",
    "  ",
    "     ",
    " leading space",
    "  two leading spaces",
    "trailing space ",
    "trailing spaces   ",
    "multiple    spaces   inside",
    "a b  c   d    e     f",
    # tabs and newlines
    "\t",
    "tab\tseparated\tvalues",
    "\t\tdouble tab",
    "\n",
    "\n\n",
    "\n\n\n\n",
    "line one\nline two",
    "para one\n\npara two\n\n\n\nend",
    "crlf\r\nline\r\n",
    " \n \n ",
    "trailing newline\n",
    "mixed \t\n \t\n",
    # accented Latin and other scripts
    "Café naïve résumé façade jalapeño Straße Ærø Œuvre",
    "São Paulo, Zürich, Kraków, Ångström",
    "e\u0301 (e + combining acute) vs \u00e9",
    "Ελληνικά και Русский текст",
    "مرحبا بالعالم",
    # CJK
    "你好，世界。",
    "日本語のテキストです。",
    "한국어 문장입니다.",
    "中文English混合text",
    # emoji
    "🙂",
    "I love 🍕 and 🚀!",
    "👨\u200d👩\u200d👧\u200d👦 family",
    "👍🏽 thumbs",
    "🏳\ufe0f\u200d🌈 flag",
    "✨✨✨",
    # code
    "def add(a, b):\n    return a + b\n",
    "for (int i = 0; i < n; i++) {\n\tsum += x[i];\n}",
    '{"name": "get_weather", "arguments": {"city": "Paris"}}',
    "<html><body><p>Hi</p></body></html>",
    "x=1;y=2;print(x+y)  # 3",
    "    indented four\n        eight",
    # numbers
    "1",
    "12",
    "123",
    "1234",
    "12345",
    "1234567890",
    "3.14159",
    "1,234,567.89",
    "2024-11-26 14:30:00",
    "0x1F 0b1010 1e-5 -42",
    "\u0663\u0664\u0665 arabic-indic digits",
    "\u216b roman numeral",
    # special-token strings
    "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
    "<start_of_turn> spaced <end_of_turn>",
    "<bos>text<eos>",
    "<s>text</s>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<think>\nreasoning\n</think>\n\nanswer",
    '<tool_call>\n{"name": "f"}\n</tool_call>',
    "<|endoftext|>",
    "<unk><pad><mask>",
    "<img> and [multimodal]",
    # clean-up of spaces on decode, odd characters
    "Hello , world . ' s 're 'm 've 't",
    "don't 'quote' \"double\"",
    "\u00a0nbsp\u3000ideographic space",
    "ctrl\x01\x7f chars",
    LONG,
]


def _llama(path: Path):  # type: ignore[no-untyped-def]
    import llama_cpp

    return llama_cpp.Llama(str(path), vocab_only=True, verbose=False)


def _detokenize(llm, ids: list[int], remove_special: bool, unparse_special: bool) -> Decoded:  # type: ignore[no-untyped-def]
    import llama_cpp

    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    size = 64 + 32 * len(ids)
    buf = ctypes.create_string_buffer(size)
    n = llama_cpp.llama_detokenize(
        llm._model.vocab, arr, len(ids), buf, size, remove_special, unparse_special
    )
    if n < 0:
        raise RuntimeError(f"detokenize buffer too small for {ids}")
    return _text_or_hex(buf.raw[:n])


def _text_or_hex(raw: bytes) -> Decoded:
    """Valid UTF-8 as text (readable, compact); anything else as {"hex": ...}."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": raw.hex()}


def _drop_bos(ids: list[int], bos: int) -> list[int]:
    return ids[1:] if ids[:1] == [bos] else ids


def _piece(llm, tid: int, special: bool) -> str:  # type: ignore[no-untyped-def]
    import llama_cpp

    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(llm._model.vocab, tid, buf, 256, 0, special)
    return buf.raw[:n].hex()


def record(path: Path, name: str, kind: str | None, tokens: list[str]) -> dict:  # type: ignore[type-arg]
    """One golden: every corpus text encoded four ways and decoded three ways by llama.cpp."""
    import llama_cpp

    llm = _llama(path)
    cases = []
    seen: set[int] = set()
    for text in CORPUS:
        raw = text.encode("utf-8")
        ids = llm.tokenize(raw, add_bos=True, special=False)
        ids_special = llm.tokenize(raw, add_bos=True, special=True)
        case: dict = {"text": text, "ids": ids}  # type: ignore[type-arg]
        if ids_special != ids:  # stored only when parsing special tokens changes the ids
            case["ids_special"] = ids_special
        # Without BOS the ids are those minus the leading BOS: stored only when they are not.
        for key, with_bos, special in (
            ("ids_no_bos", ids, False),
            ("ids_special_no_bos", ids_special, True),
        ):
            plain = llm.tokenize(raw, add_bos=False, special=special)
            if plain != _drop_bos(with_bos, llm.token_bos()):
                case[key] = plain
        case["decoded"] = _detokenize(llm, ids, False, False)
        case["decoded_special"] = _detokenize(llm, ids_special, False, True)
        case["decoded_remove_special"] = _detokenize(llm, ids_special, True, False)
        seen.update(ids + ids_special)
        cases.append(case)
    # Pieces of every id the corpus used, plus a spread over the whole vocabulary.
    n = len(tokens)
    sample = sorted(seen | set(range(0, n, max(1, n // 100))) | set(range(min(n, 20))))
    pieces = {str(t): [_piece(llm, t, False), _piece(llm, t, True)] for t in sample}
    return {
        "name": name,
        "kind": kind,
        "oracle": f"llama-cpp-python {llama_cpp.__version__}",
        "vocab_size": n,
        "tokens_sha256": tokens_sha256(tokens),
        "eog": [t for t in range(n) if llama_cpp.llama_vocab_is_eog(llm._model.vocab, t)],
        "bos": llm.token_bos(),
        "eos": llm.token_eos(),
        "note": "decoded*: llama_detokenize's bytes as text, or hex when not UTF-8; "
        "ids_special: only where not ids; ids*_no_bos: only where not those minus the leading "
        "BOS; pieces: id -> [hex, hex special]",
        "cases": cases,
        "random": [
            {
                "text": t,
                "special": special,
                "ids": llm.tokenize(t.encode(), add_bos=True, special=special),
            }
            for t in random_texts(N_RANDOM)
            for special in (False, True)
        ],
        "pieces": pieces,
    }


def write(golden: dict, out: Path) -> None:  # type: ignore[type-arg]
    # One case per line: small diffs when llama.cpp changes its mind about one text.
    body = ",\n".join(
        json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in golden["cases"]
    )
    head = {k: v for k, v in golden.items() if k not in ("cases", "random", "pieces")}
    text = json.dumps(head, ensure_ascii=False, indent=1)[:-2]
    text += ',\n "cases": [\n' + body + "\n ],\n"
    rand = ",\n".join(
        json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in golden["random"]
    )
    text += ' "random": [\n' + rand + "\n ],\n"
    text += ' "pieces": ' + json.dumps(golden["pieces"], separators=(",", ":")) + "\n}\n"
    out.write_text(text, encoding="utf-8")
    print(f"{out}: {len(golden['cases'])} texts, {out.stat().st_size} bytes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="default: the default model (resolve_model)")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "goldens")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            path = Path(tmp) / f"{kind}.gguf"
            write_vocab_gguf(path, kind)
            golden = record(path, kind, kind, build_vocab(kind).tokens)
            write(golden, args.out / f"tokenizer_{kind}.json")
    model = args.model or resolve_model(None)
    tokens = read_tokenizer_metadata(model)["tokenizer.ggml.tokens"]
    golden = record(model, model.stem, None, tokens)
    write(golden, args.out / "tokenizer_default_model.json")


if __name__ == "__main__":
    main()
