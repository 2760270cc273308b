"""Fuzzing the text-facing paths: tokenizer metadata, the tool-call parser, chat templates.

Each target takes bytes and must end in one of its allowed outcomes; anything else (another
exception, a hang, a render worker past its memory cap) is a finding, saved under
``tests/data/fuzz_chat/`` so that ``tests/test_hostile_fuzz.py`` replays it forever.

    python tools/fuzz_chat.py --target toolcall --seconds 300
    python tools/fuzz_chat.py --target tokenizer --seconds 300
    python tools/fuzz_chat.py --target template --seconds 300
    python tools/fuzz_chat.py --replay                # every saved finding, every target

With atheris installed the search is coverage-guided (libFuzzer); without it, a mutational loop
over the seeds below (byte flips, splices, repeats of hostile fragments) runs instead.

- ``tokenizer``: the bytes choose a metadata dict (keys, types, values, lengths) and a text;
  allowed: ``ModelError`` at load or encode, else ids in range that decode.
- ``toolcall``: the bytes are a model reply, parsed in every style; allowed: any ParsedReply.
- ``template``: the bytes are a chat template (or, after a ``G``, choices among well-formed
  hostile pieces), rendered on a short conversation; allowed: the text or ``TemplateError``,
  within ``HANG_S`` and with the worker under ``MAX_RENDER_MEMORY``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = ROOT / "tests" / "data" / "fuzz_chat"
sys.path.append(str(ROOT / "pysrc"))  # after PYTHONPATH / an installed ggufref

HANG_S = 10.0  # an input that takes longer is a finding

# --- targets ----------------------------------------------------------------------------------


def _provider(data: bytes) -> random.Random:
    """A deterministic source of choices drawn from the input (a FuzzedDataProvider)."""
    return random.Random(hashlib.sha256(data).digest())


_KEYS = [
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_space_prefix",
]
_WORDS = ["a", "b", "ab", "<s>", "</s>", "<0x41>", "<|im_end|>", "Ġ", "▁a", "", " ", "\x00", "é"]


def _value(r: random.Random, n: int) -> Any:
    kind = r.randrange(9)
    if kind == 0:
        return None
    if kind == 1:
        return r.choice([True, False, 0, 1, -1, n, n - 1, 2**40, 2.5, float("nan")])
    if kind == 2:
        return r.choice(_WORDS + ["gpt2", "llama", "llama3", "default", "qwen2"])
    size = r.choice([0, 1, n - 1, n, n + 1])
    if kind == 3:
        return [r.choice(_WORDS) + str(i) for i in range(size)]
    if kind == 4:
        return [r.randrange(-2, 8) for _ in range(size)]
    if kind == 5:
        return [r.choice([0.0, -1.5, 1e30, float("inf")]) for _ in range(size)]
    if kind == 6:
        return [f"{r.choice(_WORDS)} {r.choice(_WORDS)}" for _ in range(size)]
    if kind == 7:
        return [r.choice([1, "x", None, 2.0]) for _ in range(size)]
    return r.choice([{}, (), b"bytes"])


def run_tokenizer(data: bytes) -> str:
    from ggufref.errors import ModelError
    from ggufref.tokenizer import Tokenizer

    r = _provider(data)
    n = r.randrange(1, 12)
    tokens = list(dict.fromkeys(r.choice(_WORDS) + str(i) for i in range(n)))
    meta: dict[str, Any] = {
        "tokenizer.ggml.model": r.choice(["llama", "gpt2", "bert", 5]),
        "tokenizer.ggml.tokens": tokens,
    }
    for key in r.sample(_KEYS, r.randrange(len(_KEYS))):
        value = _value(r, len(tokens))
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    text = data.decode("utf-8", "replace")[:200]
    try:
        tok = Tokenizer(meta)
        ids = tok.encode(text, parse_special=r.random() < 0.5)
    except ModelError:
        return "refused"
    if not all(0 <= i < tok.vocab_size for i in ids):
        raise AssertionError(f"token id out of range in {ids[:20]}")
    tok.decode(ids, special=True)
    return "ok"


def run_toolcall(data: bytes) -> str:
    from ggufref.chat.tools import parse_reply

    text = data.decode("utf-8", "replace")
    calls = 0
    for style in ("auto", "hermes", "llama3", "pythonic"):
        reply = parse_reply(text, style)
        calls += len(reply.tool_calls)
    return "calls" if calls else "no calls"


def run_template(data: bytes) -> str:
    from ggufref.chat import sandbox as chat_sandbox
    from ggufref.chat.template import ChatTemplate
    from ggufref.errors import TemplateError

    # half the inputs are read as template text, half as choices among well-formed pieces
    # (mutated text is mostly a syntax error, which reaches no limit)
    source = data[1:].decode("utf-8", "replace") if data[:1] != b"G" else _grammar(data)
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "hi <|im_end|>"},
        {"role": "assistant", "content": "ok"},
    ]
    try:
        ChatTemplate(source, timeout=HANG_S / 2).render(messages)
        outcome = "rendered"
    except TemplateError:
        outcome = "refused"
    proc = chat_sandbox._WORKER._proc
    if proc is not None:
        peak = _vm_hwm(proc.pid)
        if peak > chat_sandbox.MAX_RENDER_MEMORY:
            raise AssertionError(f"render worker peaked at {peak} bytes")
    return outcome


_PIECES = [
    "{{ 'x' * N }}",
    "{% set ns.v = ns.v ~ ns.v %}",
    "{% set ns.v = ns.v * N %}",
    "{% for i in range(N) %}",
    "{% endfor %}",
    "{{ '%*d' % (N, 1) }}",
    "{{ ns.v|center(N) }}",
    "{{ ns.v.encode() * N }}",
    "{{ '{:>N}'.format(1) }}",
    "{{ ns.v.replace('a', ns.v) }}",
    "{{ [ns.v] * N }}",
    "{{ (ns.v ~ loop) }}",
    "{{ ns.v.translate({97: ns.v}) }}",
    "{% set ns.n = ns.n * ns.n %}",
    "{{ range(N)|map('center', N)|list|length }}",
    "{% macro m(k) %}{% if k %}{{ m(k - 1) }}{% endif %}{% endmacro %}{{ m(N) }}",
    "{% for m in messages %}{{ m.content * N }}{% endfor %}",
    "{{ cycler(ns.v, ns.v).next() }}",
]
_SIZES = [0, 1, 7, 100, 10_000, 99_999, 1_000_001, 3_000_000_000, -5]


def _grammar(data: bytes) -> str:
    r = _provider(data)
    body = "".join(
        r.choice(_PIECES).replace("N", str(r.choice(_SIZES))) for _ in range(r.randrange(1, 9))
    )
    open_loops = body.count("{% for") - body.count("{% endfor")
    head = "{% set ns = namespace(v='a' * 1000, n=3) %}"
    return head + body + "{% endfor %}" * max(open_loops, 0)


def _vm_hwm(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1]) * 1024


TARGETS: dict[str, Callable[[bytes], str]] = {
    "tokenizer": run_tokenizer,
    "toolcall": run_toolcall,
    "template": run_template,
}

# --- seeds and mutations ------------------------------------------------------------------------

SEEDS: dict[str, list[bytes]] = {
    "tokenizer": [b"hello world", "héllo <|im_end|> <s>".encode(), b"\xff\xfe", b"a" * 64],
    "toolcall": [
        b'<tool_call>{"name": "calculator", "arguments": {"expression": "1+1"}}</tool_call>',
        b'{"name": "f", "parameters": {"a": [1, {"b": null}]}}; {"name": "g"}',
        b'[calculator(expression="2*3"), list_files(path=".")]',
        b'<think>hmm</think>```json\n{"name": "f", "arguments": {}}\n```',
        b"</think>answer<think>unfinished",
    ],
    "template": [
        b"G0",
        b"G1",
        b"T{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
        b"{% endfor %}<|im_start|>assistant\n",
        b"T{% set ns = namespace(x='a') %}{% for i in range(20) %}{% set ns.x = ns.x ~ ns.x %}"
        b"{% endfor %}{{ ns.x|length }}",
        b"T{{ '%*d' % (5, 1) }}{{ '{:>8}'.format('x') }}{{ 'ab'.encode() * 3 }}",
        b"T{% macro m(n) %}{% if n %}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(50) }}",
    ],
}
FRAGMENTS: dict[str, list[bytes]] = {
    "tokenizer": [b"<|im_end|>", b"\xe2\x96\x81", b"<0x", b"\x00", b" " * 30],
    "toolcall": [b'{"a":', b"[", b"9" * 50, b"<think>", b"```", b"<tool_call>", b"(", b"\\"],
    "template": [
        b"{{ 'x' * 999999 }}",
        b"{% for i in range(99999) %}",
        b"{% endfor %}",
        b"{{ '%*d' % (99999999, 1) }}",
        b"{{ ns.x.encode() * 1000 }}",
        b"{% macro q() %}{% endmacro %}",
        b"{{ range(100)|map('center', 99999)|list|length }}",
        b"{{ (3 ** 3000) * (3 ** 3000) }}",
        b"{{ ''.__class__ }}",
    ],
}


def mutate(data: bytes, which: str, r: random.Random, max_len: int) -> bytes:
    buf = bytearray(data)
    for _ in range(r.randrange(1, 4)):
        op = r.randrange(5)
        at = r.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(at, len(buf) - 1)] = r.randrange(256)
        elif op == 1:
            frag = r.choice(FRAGMENTS[which])
            buf[at:at] = frag * r.choice([1, 1, 2, 10, 100])
        elif op == 2 and buf:
            end = min(len(buf), at + r.randrange(1, 64))
            del buf[at:end]
        elif op == 3:
            other = r.choice(SEEDS[which])
            cut = r.randrange(len(other) + 1)
            buf[at:] = other[cut:]
        else:
            buf[at:at] = buf[at : at + r.randrange(1, 32)] * r.randrange(1, 50)
    return bytes(buf[:max_len])


# --- running -------------------------------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.runs = 0
        self.outcomes: dict[str, int] = {}
        self.findings: dict[str, Path] = {}


def check(which: str, data: bytes, stats: Stats, save: bool = True) -> None:
    """Run one input; record its outcome, or save it as a finding."""
    stats.runs += 1
    t0 = time.monotonic()
    try:
        outcome = TARGETS[which](data)
        if time.monotonic() - t0 > HANG_S:
            raise TimeoutError(f"took {time.monotonic() - t0:.1f} s")
    except Exception as err:  # noqa: BLE001 - every other exception is a finding
        where = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
        site = f"{Path(where.filename).name}:{where.lineno}" if where else "?"
        key = f"{type(err).__name__} at {site}: {str(err)[:100]}"
        if key not in stats.findings:
            path = FINDINGS / f"{which}-{hashlib.sha256(data).hexdigest()[:16]}"
            if save:
                FINDINGS.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            stats.findings[key] = path
            print(f"\nNEW FINDING ({which}) {key}\n  saved {path}", file=sys.stderr)
        outcome = "finding"
    stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1


def fuzz_loop(which: str, seconds: float, max_len: int, seed: int = 0) -> Stats:
    """Mutational fuzzing without coverage feedback (atheris absent)."""
    r = random.Random(seed)
    corpus = list(SEEDS[which])
    stats = Stats()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data = mutate(r.choice(corpus), which, r, max_len)
        check(which, data, stats)
        if len(corpus) < 500 and r.random() < 0.05:
            corpus.append(data)
    return stats


def fuzz_atheris(which: str, seconds: float, max_len: int) -> None:
    import atheris

    with atheris.instrument_imports():
        import ggufref.chat.sandbox  # noqa: F401
        import ggufref.chat.template  # noqa: F401
        import ggufref.chat.tools  # noqa: F401
        import ggufref.tokenizer  # noqa: F401
    stats = Stats()
    t0 = time.monotonic()

    def target(data: bytes) -> None:
        check(which, data, stats)
        if time.monotonic() - t0 > seconds:
            report(which, stats, time.monotonic() - t0)
            raise SystemExit(0)

    atheris.Setup([sys.argv[0], f"-max_len={max_len}", "-timeout=60"], target)
    atheris.Fuzz()


def report(which: str, stats: Stats, elapsed: float) -> None:
    print(
        f"{which}: {stats.runs} inputs in {elapsed:.0f} s; outcomes {stats.outcomes}; "
        f"{len(stats.findings)} distinct findings",
        file=sys.stderr,
    )
    for key, path in stats.findings.items():
        print(f"  {key}\n    {path}", file=sys.stderr)


def replay(paths: list[Path]) -> int:
    stats = Stats()
    for p in paths:
        which = p.name.split("-", 1)[0]
        if which in TARGETS:
            check(which, p.read_bytes(), stats, save=False)
    report("replay", stats, 0.0)
    return 1 if stats.findings else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=sorted(TARGETS), default="toolcall")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--max-len", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--replay", action="store_true", help="run every saved finding once")
    args = ap.parse_args()
    if args.replay:
        return replay(sorted(FINDINGS.glob("*")) if FINDINGS.is_dir() else [])
    try:
        import atheris  # noqa: F401
    except ImportError:
        t0 = time.monotonic()
        stats = fuzz_loop(args.target, args.seconds, args.max_len, args.seed)
        report(args.target, stats, time.monotonic() - t0)
        return 1 if stats.findings else 0
    fuzz_atheris(args.target, args.seconds, args.max_len)
    return 0


if __name__ == "__main__":
    sys.exit(main())
