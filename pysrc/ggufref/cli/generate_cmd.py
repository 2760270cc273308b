"""``ggufref generate -p PROMPT``: complete a prompt, streaming, then report speed and memory."""

from __future__ import annotations

import argparse
import json
import sys

from ggufref.cli.common import (
    REPEAT_PENALTY_RANGE,
    TEMPERATURE_RANGE,
    add_model_arg,
    add_threads_arg,
    add_weights_arg,
    non_negative_int,
    peak_rss_mb,
    positive_int,
    seed_int,
    unit_float,
    utf8_text,
    zero_or_in,
)
from ggufref.sampling import SamplerConfig


def add_sampling_args(p: argparse.ArgumentParser, temperature: float = 0.8) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument(
        "--temperature",
        type=zero_or_in(*TEMPERATURE_RANGE, "greedy"),
        default=temperature,
        help=f"0 = greedy (default {temperature})",
    )
    g.add_argument(
        "--top-k", type=non_negative_int, default=40, help="keep the k best tokens (0 = off)"
    )
    g.add_argument(
        "--top-p",
        type=unit_float,
        default=0.95,
        help="keep the smallest set with this much probability (1 = off)",
    )
    g.add_argument(
        "--min-p",
        type=unit_float,
        default=0.05,
        help="drop tokens below min-p x the best probability (0 = off)",
    )
    g.add_argument(
        "--repeat-penalty",
        type=zero_or_in(*REPEAT_PENALTY_RANGE, "off"),
        default=1.0,
        help="penalise the last 64 tokens (1 = off)",
    )
    g.add_argument(
        "--seed", type=seed_int, default=None, help="random seed (same seed, same tokens)"
    )


def sampler_from_args(args: argparse.Namespace) -> SamplerConfig:
    return SamplerConfig(
        temperature=args.temperature,
        top_k=max(0, args.top_k),
        top_p=min(1.0, args.top_p),
        min_p=args.min_p,
        repeat_penalty=args.repeat_penalty or 1.0,
        seed=args.seed,
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="complete a prompt (streams text, then prints timings)")
    add_model_arg(p)
    p.add_argument("-p", "--prompt", type=utf8_text, required=True, help="the text to continue")
    p.add_argument(
        "-n",
        "--n-predict",
        type=positive_int,
        default=64,
        dest="n",
        help="tokens to generate at most (default 64)",
    )
    p.add_argument(
        "--ctx",
        type=positive_int,
        default=None,
        help="context size (default: 1024 or the model's trained context if smaller)",
    )
    add_threads_arg(p)
    add_weights_arg(p)
    add_sampling_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument(
        "--top-logits",
        type=positive_int,
        default=0,
        metavar="K",
        help="with --json: the K best [token_id, logit] pairs of every step",
    )
    p.add_argument("--no-bos", action="store_true", help="do not add the BOS token")
    p.add_argument(
        "--special",
        action="store_true",
        help="parse special-token text such as <start_of_turn> in the prompt",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ggufref.generate import Engine

    engine = Engine(
        args.model,
        n_ctx=args.ctx,
        threads=args.threads,
        progress=not args.json,
        weights=args.weights,
    )
    ids = engine.encode(
        args.prompt, add_bos=False if args.no_bos else None, parse_special=args.special
    )

    def stream(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    gen = engine.generate(
        ids,
        args.n,
        sampler_from_args(args),
        on_text=None if args.json else stream,
        top_logits=args.top_logits if args.json else 0,
    )
    t = gen.timings
    if args.json:
        obj = {
            "prompt_tokens": gen.prompt_tokens,
            "tokens": gen.tokens,
            "text": gen.text,
            "stop_reason": gen.stop_reason,
            "timings": t.as_dict(),
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
        if args.top_logits:
            obj["top_logits"] = [[[i, round(v, 5)] for i, v in step] for step in gen.top_logits]
        print(json.dumps(obj, ensure_ascii=False))
        return 0
    sys.stdout.write("\n")
    print(
        f"\nload {t.load_s:.2f} s | prompt {t.prefill_tokens} tok, prefill "
        f"{t.prefill_tok_s:.1f} tok/s | {len(gen.tokens)} tok, decode {t.decode_tok_s:.1f} tok/s"
        f" | first token {t.first_token_s:.2f} s | peak RSS {peak_rss_mb():.0f} MiB",
        file=sys.stderr,
    )
    return 0
