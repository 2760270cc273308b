"""Byte-level BPE (``tokenizer.ggml.model = gpt2``), as llama.cpp does it.

Three steps turn a text fragment into ids:

1. **Pre-tokenize**: split the text into words with the model's regexes (``tokenizer.ggml.pre``
   names them). llama.cpp runs the GPT-2 and Llama 3 regexes as hand-written scanners and the
   others through ``std::regex`` on a *collapsed* text, where every non-ASCII character is
   replaced by one byte standing for its Unicode category; we do the same, so corner cases
   (combining marks, digits of other scripts) split exactly as in llama.cpp.
2. **Byte-encode**: each word's UTF-8 bytes become printable characters (GPT-2's byte map), so
   the vocabulary holds only printable strings (a space is ``Ġ``, a newline ``Ċ``).
3. **Merge**: repeatedly merge the adjacent pair with the lowest merge rank (ties: leftmost).
"""

from __future__ import annotations

import functools
import heapq
import re
import unicodedata
from collections.abc import Mapping

# ----------------------------------------------------------------------------------------------
# The byte map


# tag::byte_map[]
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map.

    Bytes that are printable Latin-1 map to themselves; the other 68 (control characters,
    space, 0x7F-0xA0, 0xAD) map to U+0100 onwards, in byte order: space -> 'Ġ' (U+0120).
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(0x100 + n)
            n += 1
    return table


# end::byte_map[]

BYTE_TO_CHAR: dict[int, str] = byte_to_unicode()
CHAR_TO_BYTE: dict[str, int] = {c: b for b, c in BYTE_TO_CHAR.items()}
# bytes.translate() table: byte b -> the UTF-8 of its printable stand-in (fast byte-encoding).
_ENCODE_TABLE = {b: c for b, c in BYTE_TO_CHAR.items()}


def byte_encode(word: str) -> str:
    """The printable stand-in string of `word`'s UTF-8 bytes."""
    return "".join([_ENCODE_TABLE[b] for b in word.encode("utf-8")])


# ----------------------------------------------------------------------------------------------
# Character classes, as llama.cpp's unicode tables define them

# Unicode White_Space (what the `regex` module's \s matches, from which llama.cpp's table is made).
WHITESPACE = frozenset(
    [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B)]
    + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)


@functools.lru_cache(maxsize=65536)
def char_class(ch: str) -> str:
    """'L' letter, 'N' number, 'P' punctuation, 'S' symbol, 'M' mark, 'Z' separator, 'C' other.

    'C' includes unassigned code points, as in llama.cpp (its table comes from \\p{C}).
    """
    return unicodedata.category(ch)[0]


def _is_letter(ch: str) -> bool:
    return char_class(ch) == "L"


def _is_number(ch: str) -> bool:
    return char_class(ch) == "N"


def _is_space(ch: str) -> bool:
    return ord(ch) in WHITESPACE


def _lower(ch: str) -> str:
    return ch.lower()[:1] or ch


# ----------------------------------------------------------------------------------------------
# Pre-tokenizer regexes (as llama.cpp lists them per tokenizer.ggml.pre)

GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
LLAMA3_RE = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_RE = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
DEFAULT_RES = [r"[\p{P}\$\+<=>\^~\|]+", GPT2_RE, r"\p{N}+", r"[0-9][0-9][0-9]"]


# name in tokenizer.ggml.pre -> (regexes, clean_spaces, ignore_merges, add_bos default)
PRE_TOKENIZERS: dict[str, tuple[list[str], bool, bool, bool]] = {
    "default": (DEFAULT_RES, True, False, False),
    "qwen2": ([QWEN2_RE], False, False, False),
    "deepseek-r1-qwen": ([QWEN2_RE], False, False, False),
    "stablelm2": ([QWEN2_RE], True, False, False),
    "megrez": ([QWEN2_RE], True, False, False),
    "dbrx": ([LLAMA3_RE], True, False, False),
    "smaug-bpe": ([LLAMA3_RE], True, False, False),
    **{
        name: ([LLAMA3_RE], True, True, True)
        for name in ("llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "lfm2")
    },
    **{name: ([GPT2_RE], True, False, False) for name in ("gpt-2", "phi-2", "mpt", "olmo")},
}


# ----------------------------------------------------------------------------------------------
# The hand-written scanners (llama.cpp's unicode_regex_split_custom_*)


# tag::llama3_split[]
def split_llama3(text: str, start: int, end: int) -> list[int]:
    """Word lengths for text[start:end] under the Llama 3 regex (see LLAMA3_RE)."""

    def at(i: int) -> str:  # "" outside the fragment: no class matches it
        return text[i] if start <= i < end else ""

    lengths: list[int] = []
    pos = start
    while pos < end:
        first = pos
        c = text[pos]
        nxt = at(pos + 1)
        if c == "'" and nxt and _lower(nxt) in "stmd":  # 's 't 'm 'd (any case)
            pos += 2
        elif c == "'" and nxt and _lower(nxt) + _lower(at(pos + 2)) in ("re", "ve", "ll"):
            pos += 3
        elif c not in "\r\n" and not _is_number(c) and (_is_letter(c) or (nxt and _is_letter(nxt))):
            pos += 1  # [^\r\n\p{L}\p{N}]?\p{L}+  (the optional lead, or the first letter)
            while at(pos) and _is_letter(text[pos]):
                pos += 1
        elif _is_number(c):  # \p{N}{1,3}: runs of digits cut every three
            pos += 1
            while pos - first < 3 and at(pos) and _is_number(text[pos]):
                pos += 1
        elif _is_other(c if c != " " else nxt):  # ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            pos += 1 if c != " " else 2
            while at(pos) and _is_other(text[pos]):
                pos += 1
            while at(pos) in ("\r", "\n"):
                pos += 1
        else:
            pos = _split_spaces(text, pos, end, newline_rule=True)
        lengths.append(pos - first)
    return lengths


# end::llama3_split[]


def split_gpt2(text: str, start: int, end: int) -> list[int]:
    """Word lengths for text[start:end] under the GPT-2 regex (see GPT2_RE)."""

    def at(i: int) -> str:
        return text[i] if start <= i < end else ""

    lengths: list[int] = []
    pos = start
    while pos < end:
        first = pos
        c = text[pos]
        nxt = at(pos + 1)
        head = nxt if c == " " else c  # the class test looks past one leading space
        if c == "'" and nxt and nxt in "stmd":
            pos += 2
        elif c == "'" and nxt and nxt + at(pos + 2) in ("re", "ve", "ll"):
            pos += 3
        elif head and (_is_letter(head) or _is_number(head) or _is_other(head)):
            same = _is_letter if _is_letter(head) else _is_number if _is_number(head) else _is_other
            pos += 1 if c != " " else 2
            while at(pos) and same(text[pos]):
                pos += 1
        else:
            pos = _split_spaces(text, pos, end, newline_rule=False)
        lengths.append(pos - first)
    return lengths


def _is_other(ch: str) -> bool:
    """[^\\s\\p{L}\\p{N}]: any character that is not whitespace, a letter or a number."""
    return bool(ch) and not (_is_space(ch) or _is_letter(ch) or _is_number(ch))


def _split_spaces(text: str, pos: int, end: int, newline_rule: bool) -> int:
    """End of the whitespace word at pos: \\s*[\\r\\n]+ (Llama 3 only), \\s+(?!\\S), \\s+."""
    n = 0
    last_newline = -1
    while pos + n < end and _is_space(text[pos + n]):
        if text[pos + n] in "\r\n":
            last_newline = pos + n + 1
        n += 1
    if newline_rule and last_newline > 0:
        return last_newline
    if n > 1 and pos + n < end:  # leave the last space to the word that follows
        return pos + n - 1
    if n > 0:
        return pos + n
    return pos + 1  # nothing matched: the character is a word of its own


# ----------------------------------------------------------------------------------------------
# The other regexes, on collapsed text (llama.cpp's unicode_regex_split fallback)

# Category -> (stand-in character in the collapsed text, the ASCII members of the category).
_COLLAPSE = {
    "N": ("\xd1", "0-9"),
    "L": ("\xd2", "A-Za-z"),
    "P": ("\xd3", r"!-#%-*,-/:-;?-@\[-\]_{}"),
    "M": ("\xd4", ""),
    "S": ("\xd5", r"\$\+<->\^`\|"),
}


def collapse_text(text: str) -> str:
    """One character per code point: ASCII kept, non-ASCII whitespace -> \\v, else a category
    stand-in (\\xd1 number, \\xd2 letter, \\xd3 punctuation, \\xd4 mark, \\xd5 symbol, \\xd0 other).
    """
    out = []
    for ch in text:
        if ch < "\x80":
            out.append(ch)
        elif ord(ch) in WHITESPACE:
            out.append("\x0b")
        else:
            out.append(_COLLAPSE.get(char_class(ch), ("\xd0", ""))[0])
    return "".join(out)


@functools.cache
def collapse_regex(expr: str) -> re.Pattern[str]:
    r"""Compile `expr` for the collapsed text: \p{X} becomes X's stand-in plus X's ASCII members.

    re.ASCII makes \s mean [ \t\n\r\f\v], as in std::regex's C locale.
    """
    out = []
    inside = False
    i = 0
    while i < len(expr):
        ch = expr[i]
        if ch == "\\" and expr.startswith("\\p{", i):
            cat = expr[i + 3]
            body = "".join(_COLLAPSE[cat])
            out.append(body if inside else f"[{body}]")
            i = expr.index("}", i) + 1
            continue
        if ch == "\\":  # keep escapes (\s, \r, \[ ...) whole
            out.append(expr[i : i + 2])
            i += 2
            continue
        if ch == "[":
            inside = True
        elif ch == "]":
            inside = False
        out.append(ch)
        i += 1
    return re.compile("".join(out), re.ASCII)


def _split_regex(expr: str, text: str, collapsed: str, start: int, end: int) -> list[int]:
    """Lengths of the matches of `expr` in text[start:end] and of the gaps between them."""
    subject = collapsed[start:end] if "\\p{" in expr else text[start:end]
    lengths = []
    done = 0
    for m in collapse_regex(expr).finditer(subject):
        if m.start() > done:
            lengths.append(m.start() - done)
        lengths.append(m.end() - m.start())
        done = m.end()
    if done < end - start:
        lengths.append(end - start - done)
    return lengths


# tag::pre_tokenize[]
def pre_tokenize(text: str, regexes: list[str]) -> list[str]:
    """Split `text` into words: each regex further splits the pieces the previous one left."""
    lengths = [len(text)]
    collapsed = collapse_text(text) if any("\\p{" in r for r in regexes) else text
    for expr in regexes:
        split: list[int] = []
        start = 0
        for n in lengths:
            if expr == LLAMA3_RE:
                split += split_llama3(text, start, start + n)
            elif expr == GPT2_RE:
                split += split_gpt2(text, start, start + n)
            else:
                split += _split_regex(expr, text, collapsed, start, start + n)
            start += n
        lengths = split
    words = []
    start = 0
    for n in lengths:
        words.append(text[start : start + n])
        start += n
    return words


# end::pre_tokenize[]


# ----------------------------------------------------------------------------------------------
# The merge


# tag::bpe_merge[]
def bpe_merge(word: str, ranks: Mapping[str, int]) -> list[str]:
    """Merge the byte-encoded `word` by rank: lowest rank first, leftmost on ties."""
    sym = list(word)  # sym[i]: current text of symbol i; "" once merged into its left neighbour
    n = len(sym)
    nxt = list(range(1, n + 1))
    prv = list(range(-1, n - 1))
    if n:
        nxt[-1] = -1
    heap: list[tuple[int, int, int, str]] = []

    def push(left: int, right: int) -> None:
        if left >= 0 and right >= 0:
            a = sym[left]
            # llama.cpp splits a merge line at its first space after the first character, so
            # a left symbol with a space past its first character has no merge
            rank = None if " " in a[1:] else ranks.get(a + " " + sym[right])
            if rank is not None:
                heapq.heappush(heap, (rank, left, right, sym[left] + sym[right]))

    for i in range(1, n):
        push(i - 1, i)
    while heap:
        _, left, right, merged = heapq.heappop(heap)
        if not sym[left] or not sym[right] or sym[left] + sym[right] != merged:
            continue  # stale: a neighbour changed since this pair was pushed
        sym[left] = merged
        sym[right] = ""
        nxt[left] = nxt[right]
        if nxt[left] >= 0:
            prv[nxt[left]] = left
        push(prv[left], left)
        push(left, nxt[left])
    return [s for s in sym if s]


# end::bpe_merge[]


def parse_merges(merges: list[str]) -> dict[str, int]:
    """tokenizer.ggml.merges ("left right", by rank) -> {"left right": rank}; first one wins.

    The lines themselves are the keys: bpe_merge looks up left + " " + right, which is the line
    of that merge as llama.cpp splits it (at the first space after the first character; a left
    symbol with a space past that has no merge, which bpe_merge checks). Built at C speed (a
    151k-merge vocabulary in ~10 ms): later entries of the reversed list overwrite earlier ones,
    so the first of duplicate lines keeps its rank.
    """
    return dict(zip(reversed(merges), range(len(merges) - 1, -1, -1), strict=True))
