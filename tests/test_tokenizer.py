"""The tokenizer against llama.cpp: token ids, decoded text and pieces from committed goldens.

The goldens (tests/data/goldens/tokenizer_*.json) were recorded by
tools/make_tokenizer_goldens.py from llama.cpp (llama-cpp-python, ``vocab_only=True``) for the
default model and for every synthetic vocabulary, which these tests rebuild from its kind.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ggufref.errors import GGUFError, ModelError
from ggufref.model_files import resolve_model
from ggufref.testing.vocab import (
    KINDS,
    build_vocab,
    random_texts,
    tokens_sha256,
    write_vocab_gguf,
)
from ggufref.tokenizer import Tokenizer
from ggufref.tokenizer_bpe import BYTE_TO_CHAR, pre_tokenize

GOLDENS = Path(__file__).parent / "data" / "goldens"
NAMES = [*KINDS, "default_model"]


def _default_model() -> Path:
    return resolve_model(None, progress=False)


def _golden(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((GOLDENS / f"tokenizer_{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Tokenizer]:
    """Every tokenizer under test, each read from a GGUF file as a model would be."""
    tmp = tmp_path_factory.mktemp("vocab")
    out = {}
    for kind in KINDS:
        write_vocab_gguf(tmp / f"{kind}.gguf", kind)
        out[kind] = Tokenizer.from_gguf(tmp / f"{kind}.gguf")
    return out


def _tok(tokenizers: dict[str, Tokenizer], name: str) -> Tokenizer:
    if name == "default_model":
        return Tokenizer.from_gguf(_default_model())
    return tokenizers[name]


def _bytes(value: str | dict[str, str]) -> bytes:
    return bytes.fromhex(value["hex"]) if isinstance(value, dict) else value.encode("utf-8")


def _expected_ids(case: dict, special: bool, bos: bool, bos_id: int) -> list[int]:  # type: ignore[type-arg]
    """Undo the golden's compaction: absent keys equal the ids they derive from."""
    with_bos = case.get("ids_special", case["ids"]) if special else case["ids"]
    if bos:
        return with_bos
    key = "ids_special_no_bos" if special else "ids_no_bos"
    return case.get(key, with_bos[1:] if with_bos[:1] == [bos_id] else with_bos)


# ----------------------------------------------------------------------------------------------
# Ids, text and pieces against llama.cpp


@pytest.mark.parametrize("name", NAMES)
def test_vocab_matches_golden(tokenizers: dict[str, Tokenizer], name: str) -> None:
    golden = _golden(name)
    tok = _tok(tokenizers, name)
    if golden["kind"] is not None:  # the builder must still produce the recorded vocabulary
        assert tokens_sha256(build_vocab(golden["kind"]).tokens) == golden["tokens_sha256"]
    assert tokens_sha256(tok.tokens) == golden["tokens_sha256"]
    assert tok.vocab_size == golden["vocab_size"]
    assert (tok.bos_id, tok.eos_id) == (golden["bos"], golden["eos"])
    assert sorted(tok.eot_ids) == golden["eog"]


@pytest.mark.parametrize("special", [False, True], ids=["plain", "parse_special"])
@pytest.mark.parametrize("bos", [True, False], ids=["bos", "no_bos"])
@pytest.mark.parametrize("name", NAMES)
def test_encode_matches_llama_cpp(
    tokenizers: dict[str, Tokenizer], name: str, bos: bool, special: bool
) -> None:
    golden = _golden(name)
    tok = _tok(tokenizers, name)
    wrong = []
    for case in golden["cases"]:
        expected = _expected_ids(case, special, bos, golden["bos"])
        # llama.cpp's add_special=True adds what the file asks for; False adds nothing.
        got = tok.encode(
            case["text"],
            add_bos=None if bos else False,
            add_eos=None if bos else False,
            parse_special=special,
        )
        if got != expected:
            wrong.append((case["text"], expected, got))
    assert not wrong, f"{len(wrong)}/{len(golden['cases'])} texts differ, first: {wrong[0]}"


@pytest.mark.parametrize("name", NAMES)
def test_decode_matches_llama_cpp(tokenizers: dict[str, Tokenizer], name: str) -> None:
    golden = _golden(name)
    tok = _tok(tokenizers, name)
    for case in golden["cases"]:
        ids, ids_special = case["ids"], case.get("ids_special", case["ids"])
        assert tok.decode_bytes(ids) == _bytes(case["decoded"]), case["text"]
        assert tok.decode_bytes(ids_special, special=True) == _bytes(case["decoded_special"])
        got = tok.decode_bytes(ids_special, remove_special=True)
        assert got == _bytes(case["decoded_remove_special"]), case["text"]


@pytest.mark.parametrize("name", NAMES)
def test_token_to_piece_matches_llama_cpp(tokenizers: dict[str, Tokenizer], name: str) -> None:
    golden = _golden(name)
    tok = _tok(tokenizers, name)
    for tid, (plain, special) in golden["pieces"].items():
        assert tok.token_to_piece(int(tid)).hex() == plain, tok.tokens[int(tid)]
        assert tok.token_to_piece(int(tid), special=True).hex() == special


# ----------------------------------------------------------------------------------------------
# Independent oracles and properties


def test_default_model_prompt_ids() -> None:
    """llama.cpp's ids for this prompt with BOS (tests/data/goldens/parity_default.json)."""
    tok = Tokenizer.from_gguf(_default_model())
    assert tok.kind == "spm"
    assert tok.encode("The capital of France is") == [2, 818, 5279, 529, 7001, 563]
    assert tok.encode("The capital of France is", add_bos=True) == [2, 818, 5279, 529, 7001, 563]
    assert tok.decode([2, 818, 5279, 529, 7001, 563]) == "The capital of France is"


def test_default_model_turn_tokens() -> None:
    tok = Tokenizer.from_gguf(_default_model())
    end_of_turn = tok.token_id("<end_of_turn>")
    assert end_of_turn is not None and end_of_turn in tok.eot_ids
    assert tok.eos_id in tok.eot_ids
    assert tok.token_id("<no such token>") is None
    # Control tokens are text unless the caller parses special tokens.
    assert end_of_turn not in tok.encode("<end_of_turn>", add_bos=False)
    assert tok.encode("<end_of_turn>", add_bos=False, parse_special=True) == [end_of_turn]
    assert Tokenizer.from_gguf(_default_model()) is tok  # built once per file


@pytest.mark.parametrize("name", ["spm", "spm-llama2", "bpe-qwen2", "default_model"])
def test_round_trip(tokenizers: dict[str, Tokenizer], name: str) -> None:
    """decode(encode(text)) == text for vocabularies without llama.cpp's space clean-up.

    Without BOS: with it, llama.cpp's detokenizer keeps the space prefix of Llama 2 style
    vocabularies (the prefix strip applies to the first piece only, BOS's empty one).
    """
    tok = _tok(tokenizers, name)
    for case in _golden(name)["cases"]:
        ids = tok.encode(case["text"], add_bos=False)
        assert tok.decode(ids) == case["text"]


def test_clean_spaces_only_for_gpt2_style_vocabularies(tokenizers: dict[str, Tokenizer]) -> None:
    """llama.cpp removes the space before , . ? ! on decode for Llama 3 but not for Qwen 2."""
    text = "Hello , world . ' s"
    llama3, qwen2 = tokenizers["bpe-llama3"], tokenizers["bpe-qwen2"]
    assert llama3.decode(llama3.encode(text, add_bos=False)) == "Hello, world.'s"
    assert qwen2.decode(qwen2.encode(text, add_bos=False)) == text


@pytest.mark.parametrize(
    ("kind", "default_bos"),
    [("spm", True), ("spm-llama2", True), ("bpe-llama3", True), ("bpe-qwen2", False)],
)
def test_bos_handling(tokenizers: dict[str, Tokenizer], kind: str, default_bos: bool) -> None:
    tok = tokenizers[kind]
    bos = build_vocab(kind).special_ids["bos"]
    assert tok.bos_id == bos
    assert tok.encode("") == ([bos] if default_bos else [])
    assert tok.encode("", add_bos=False) == []
    body = tok.encode("Hello world", add_bos=False)
    assert tok.encode("Hello world", add_bos=True) == [bos, *body]
    assert tok.encode("Hello world") == ([bos] if default_bos else []) + body


def test_stream_decoder_waits_for_whole_characters(tokenizers: dict[str, Tokenizer]) -> None:
    tok = tokenizers["spm"]
    c3, a9 = tok.token_id("<0xC3>"), tok.token_id("<0xA9>")  # "é" is C3 A9 in UTF-8
    assert c3 is not None and a9 is not None
    stream = tok.stream()
    assert stream.feed(c3) == ""
    assert stream.feed(a9) == "é"
    assert stream.feed(c3) == ""
    assert stream.flush() == "\ufffd"  # a character cut short at the end


def test_stream_decoder_byte_level(tokenizers: dict[str, Tokenizer]) -> None:
    """A 4-byte emoji fed as four byte tokens comes out once, whole."""
    tok = tokenizers["bpe-qwen2"]
    ids = [tok.token_id(BYTE_TO_CHAR[b]) for b in "🙂".encode()]  # F0 9F 99 82
    stream = tok.stream()
    assert [stream.feed(t) for t in ids if t is not None] == ["", "", "", "🙂"]
    assert stream.flush() == ""


@pytest.mark.parametrize("name", NAMES)
def test_stream_equals_pieces(tokenizers: dict[str, Tokenizer], name: str) -> None:
    """Streaming the ids of every golden text never shows broken UTF-8 and adds up to the text."""
    tok = _tok(tokenizers, name)
    for case in _golden(name)["cases"]:
        ids = tok.encode(case["text"], add_bos=False)
        stream = tok.stream()
        chunks = [stream.feed(t) for t in ids] + [stream.flush()]
        assert all("\ufffd" not in c for c in chunks)
        expected = b"".join(tok.token_to_piece(t) for t in ids).decode("utf-8")
        assert "".join(chunks) == expected


def test_pre_tokenizer_digit_grouping() -> None:
    """Hand-worked splits: Llama 3 groups digits by three, Qwen 2 one by one, GPT-2 whole runs."""
    llama3 = Tokenizer({**_meta("bpe-llama3")}).regexes
    qwen2 = Tokenizer({**_meta("bpe-qwen2")}).regexes
    default = Tokenizer({**_meta("bpe-default")}).regexes
    assert pre_tokenize("1234567 ab", llama3) == ["123", "456", "7", " ab"]
    assert pre_tokenize("123 ab", qwen2) == ["1", "2", "3", " ab"]
    assert pre_tokenize("12345 ab", default) == ["123", "45", " ab"]
    assert pre_tokenize("a  b\n\nc", llama3) == ["a", " ", " b", "\n\n", "c"]


def _meta(kind: str) -> dict[str, object]:
    v = build_vocab(kind)
    return {
        "tokenizer.ggml.model": v.model,
        "tokenizer.ggml.pre": v.pre,
        "tokenizer.ggml.tokens": v.tokens,
        "tokenizer.ggml.token_type": v.types,
        "tokenizer.ggml.merges": v.merges,
    }


# ----------------------------------------------------------------------------------------------
# Errors


def test_unsupported_tokenizers_raise_model_error() -> None:
    with pytest.raises(ModelError, match="tokenizer.ggml.model"):
        Tokenizer({**_meta("bpe-qwen2"), "tokenizer.ggml.model": "t5"})
    with pytest.raises(ModelError, match="tokenizer.ggml.pre"):
        Tokenizer({**_meta("bpe-qwen2"), "tokenizer.ggml.pre": "no-such-pre"})


def test_not_a_gguf_file(tmp_path: Path) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(b"not a gguf file at all, just text")
    with pytest.raises(GGUFError, match="x.gguf"):
        Tokenizer.from_gguf(path)


# ----------------------------------------------------------------------------------------------
# Random text: seeded sequences of awkward pieces, tokenized by llama.cpp when the goldens were
# recorded (testing.vocab.random_texts), replayed here


@pytest.mark.parametrize("name", NAMES)
def test_random_text_matches_llama_cpp(tokenizers: dict[str, Tokenizer], name: str) -> None:
    tok, cases = _tok(tokenizers, name), _golden(name)["random"]
    assert [c["text"] for c in cases[::2]] == random_texts(len(cases) // 2)  # same texts
    wrong = [
        (c["text"], c["special"])
        for c in cases
        if tok.encode(c["text"], parse_special=c["special"]) != c["ids"]
    ]
    assert not wrong, f"{len(wrong)} of {len(cases)} random texts differ, first: {wrong[0]!r}"
