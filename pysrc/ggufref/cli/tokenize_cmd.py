"""``ggufref tokenize TEXT``: the token ids of a text and the piece of text each one stands for.

Only the tokenizer is built (from the file's ``tokenizer.*`` keys); no weights are touched.
Pieces are the bytes a token decodes to; a byte-fallback token holding part of a UTF-8
character shows as an escape such as ``\\xe2``.
"""

from __future__ import annotations

import argparse
import json

from ggufref.cli.common import add_model_arg, utf8_text
from ggufref.gguf_file import open_gguf
from ggufref.model_files import resolve_model
from ggufref.tokenizer import Tokenizer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenize", help="show the token ids and pieces of a text")
    add_model_arg(p)
    p.add_argument("text", type=utf8_text, help="the text to tokenize")
    p.add_argument("--no-bos", action="store_true", help="do not add the BOS token")
    p.add_argument(
        "--special",
        action="store_true",
        help="parse special-token text such as <start_of_turn> as one token",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"ids": [...], "pieces": [...]} as one JSON object',
    )
    p.set_defaults(func=run)


def piece_text(tok: Tokenizer, tid: int) -> str:
    """What token ``tid`` stands for, control tokens shown by name."""
    return tok.token_to_piece(tid, special=True).decode("utf-8", errors="backslashreplace")


def run(args: argparse.Namespace) -> int:
    f = open_gguf(resolve_model(args.model))  # validates the whole file, as the other commands do
    tok = Tokenizer.from_gguf(f)
    ids = tok.encode(args.text, add_bos=False if args.no_bos else None, parse_special=args.special)
    pieces = [piece_text(tok, i) for i in ids]
    if args.json:
        print(json.dumps({"ids": ids, "pieces": pieces, "n_tokens": len(ids)}, ensure_ascii=False))
        return 0
    width = len(str(max(ids, default=0)))
    for tid, piece in zip(ids, pieces, strict=True):
        print(f"{tid:>{width}}  {json.dumps(piece, ensure_ascii=False)}")
    print(f"{len(ids)} tokens")
    return 0
