"""SentencePiece-style encoding (``tokenizer.ggml.model = llama``), as llama.cpp does it.

The text arrives with spaces already replaced by ``▁`` (U+2581). Every Unicode character starts
as its own symbol; then, repeatedly, the adjacent pair whose concatenation is the vocabulary
token with the highest score is merged (ties: the leftmost pair). What cannot be merged and is
not a token falls back to byte tokens ``<0xNN>``, one per UTF-8 byte.

This is not SentencePiece's unigram Viterbi search: it is the BPE-style bigram merge that
llama.cpp's ``llm_tokenizer_spm`` runs, and for a vocabulary whose scores are BPE merge ranks
(Llama 2, Gemma) it gives the same ids.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence

from ggufref.errors import ModelError


# tag::spm_merge[]
def spm_encode(
    text: str,
    token_to_id: Mapping[str, int],
    scores: Sequence[float],
    byte_fallback: Sequence[int | None],
) -> list[int]:
    """Token ids for `text` (spaces already escaped as ▁).

    `byte_fallback[b]` is the id of ``<0xNN>`` for byte b (None if the vocabulary lacks it).
    """
    n = len(text)
    if n == 0:
        return []
    sym = list(text)  # sym[i]: current text of symbol i; "" once merged into its left neighbour
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prv = list(range(-1, n - 1))
    # Max-heap by score via negation; ties pop the smallest left index first.
    heap: list[tuple[float, int, int, int]] = []

    def push(left: int, right: int) -> None:
        if left < 0 or right < 0:
            return
        tid = token_to_id.get(sym[left] + sym[right])
        if tid is not None:
            heapq.heappush(heap, (-scores[tid], left, right, len(sym[left]) + len(sym[right])))

    for i in range(1, n):
        push(i - 1, i)
    while heap:
        _, left, right, size = heapq.heappop(heap)
        # Stale entry: one side was merged away or grew since this pair was pushed.
        if not sym[left] or not sym[right] or len(sym[left]) + len(sym[right]) != size:
            continue
        sym[left] += sym[right]
        sym[right] = ""
        nxt[left] = nxt[right]
        if nxt[left] >= 0:
            prv[nxt[left]] = left
        push(prv[left], left)
        push(left, nxt[left])

    out: list[int] = []
    i = 0
    while i != -1:
        tid = token_to_id.get(sym[i])
        if tid is not None:
            out.append(tid)
        else:  # a character outside the vocabulary: its UTF-8 bytes
            out.extend(_bytes_to_ids(sym[i], byte_fallback))
        i = nxt[i]
    return out


# end::spm_merge[]


def _bytes_to_ids(piece: str, byte_fallback: Sequence[int | None]) -> list[int]:
    ids = []
    for b in piece.encode("utf-8"):
        tid = byte_fallback[b]
        if tid is None:
            raise ModelError(f"the vocabulary has no byte token <0x{b:02X}> for {piece!r}")
        ids.append(tid)
    return ids
