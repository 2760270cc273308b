"""Hostile chat templates (issue 14, classes 1 and 2): limits that hold before the allocation.

A model file's author picks the template, so every multiplier below is theirs. Each bomb must
end as a one-line TemplateError naming the limit that fired, within 10 s, while the render
worker stays under its address-space cap (``MAX_RENDER_MEMORY``) and this process does not grow.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ggufref.chat import sandbox as chat_sandbox
from ggufref.chat.sandbox import (
    MAX_FORMAT_WIDTH,
    MAX_MACROS,
    MAX_RENDER_MEMORY,
    MAX_TEMPLATE_NODES,
    RenderWorker,
)
from ggufref.chat.template import ChatTemplate
from ggufref.errors import TemplateError

MIB = 2**20

# name -> (template, words the error must contain)
BOMBS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bytes repetition": ("{{ (('a'.encode()) * 3000000000)|length }}", ("repetition",)),
    "bytes concatenation": (
        "{% set b = ('x' * 600000).encode() %}{{ (b + b)|length }}",
        ("concatenation",),
    ),
    "% star width": ("{{ '%*d' % (3000000000, 1) }}", (str(MAX_FORMAT_WIDTH),)),
    "% precision": ("{{ '%.3000000000f' % 1.0 }}", (str(MAX_FORMAT_WIDTH),)),
    "format nested width": ("{{ '{:{}}'.format(1, '3000000000') }}", ("nested",)),
    "format width": ("{{ '{:>99999}'.format(1) }}", (str(MAX_FORMAT_WIDTH),)),
    "format filter star": ("{{ '%*s'|format(3000000000, 'a') }}", ("format",)),
    "format filter star width": ("{{ '%*s'|format(99999, 'a') }}", (str(MAX_FORMAT_WIDTH),)),
    "translate": (
        "{% set big = 'x' * 999990 %}{{ big.translate({120: big})|length }}",
        ("translate",),
    ),
    "int squaring": (
        "{% set ns = namespace(x=3) %}{% for i in range(40) %}"
        "{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x > 0 }}",
        ("bits",),
    ),
    "900 live strings in set": (
        "".join(f"{{% set a{i} = 'x' * 999000 ~ '{i}' %}}" for i in range(900)),
        ("MAX_RENDER_MEMORY",),
    ),
    "900 live bytes in set": (
        "".join(f"{{% set b{i} = ('x' * 999000 ~ '{i}').encode() %}}" for i in range(900)),
        ("MAX_RENDER_MEMORY",),
    ),
    "live strings in a mapped list": (
        "{{ range(3000)|map('center', 999000)|list|length }}",
        ("MAX_RENDER_MEMORY",),
    ),
    "live strings in namespace": (
        "{% set ns = namespace() %}"
        + "".join(f"{{% set ns.a{i} = 'x' * 999000 ~ '{i}' %}}" for i in range(900)),
        ("MAX_RENDER_MEMORY",),
    ),
    "cycler of live strings": (
        "{% set c = cycler(" + ",".join(["'x' * 999000 ~ loop"] * 900) + ") %}{{ c.next() }}",
        ("MAX_RENDER_MEMORY",),
    ),
    "35000 empty macros": ("{%macro m()%}{%endmacro%}" * 35_000, ("macros", str(MAX_MACROS))),
    "call blocks": (
        "{% macro m() %}{{ caller() }}{% endmacro %}"
        + "{% call m() %}x{% endcall %}" * (MAX_MACROS + 1),
        ("macros",),
    ),
    "many nodes": ("{{x}}" * MAX_TEMPLATE_NODES, ("syntax nodes",)),
    "nested loops": (
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        ("gave up", "RENDER_SECONDS"),
    ),
}


def _own_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("name", list(BOMBS))
def test_template_bombs_are_refused_in_time_and_memory(name: str) -> None:
    source, words = BOMBS[name]
    peak_before = _own_peak_mib()
    start = time.monotonic()
    with pytest.raises(TemplateError) as info:
        ChatTemplate(source, timeout=5.0).render([{"role": "user", "content": "hi"}])
    assert time.monotonic() - start < 10.0
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    assert _own_peak_mib() - peak_before < 200  # the work happened in the worker, not here


def test_the_worker_runs_under_its_memory_cap() -> None:
    worker = RenderWorker()
    try:
        assert worker.request(("render", "{{ 1 + 1 }}", {}), 10.0) == "2"
        assert worker._proc is not None
        limits = Path(f"/proc/{worker._proc.pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max address space"))
        assert str(MAX_RENDER_MEMORY) in line
        assert MAX_RENDER_MEMORY <= 1024 * MIB
    finally:
        worker.stop()


def test_the_deadline_kills_the_worker_and_the_next_render_works() -> None:
    """A kill stops any work, C calls included; the next request gets a fresh worker."""
    worker = RenderWorker()
    try:
        loop = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
        worker.request(("render", "{{ 1 }}", {}), 10.0)
        assert worker._proc is not None
        old_pid = worker._proc.pid
        start = time.monotonic()
        with pytest.raises(TemplateError, match="gave up after 0.3 s"):
            worker.request(("render", loop, {}), 0.3)
        assert time.monotonic() - start < 3.0
        assert not Path(f"/proc/{old_pid}").exists()  # killed and reaped
        assert worker.request(("render", "{{ 6 * 7 }}", {}), 10.0) == "42"
        assert worker._proc.pid != old_pid
    finally:
        worker.stop()


def test_a_memory_error_restarts_the_worker() -> None:
    worker = RenderWorker()
    try:
        bomb = BOMBS["900 live strings in set"][0]
        with pytest.raises(TemplateError, match="MAX_RENDER_MEMORY"):
            worker.request(("render", bomb, {}), 10.0)
        assert worker._proc is None  # stopped: the next request starts clean
        assert worker.request(("render", "{{ 'ok' }}", {}), 10.0) == "ok"
    finally:
        worker.stop()


def test_common_render_stays_cheap() -> None:
    """The chat REPL renders every turn: after the first, a render is a pipe round trip.
    (Bounded loosely by CPU time of this process, which does not see the worker's work.)"""
    template = ChatTemplate.builtin("chatml")
    messages = [{"role": "user", "content": f"message {i}"} for i in range(20)]
    template.render(messages)
    t0 = time.process_time()
    for _ in range(50):
        template.render(messages)
    assert time.process_time() - t0 < 2.0


def test_limits_leave_real_templates_alone() -> None:
    """Widths up to the limit and ordinary formatting still render."""
    t = ChatTemplate(
        "{{ '%5.2f|%-4s|%%' % (3.14159, 'ab') }} {{ '{:>6}|{:.3}'.format('x', 2.5) }} "
        "{{ '%*d' % (4, 7) }} {{ 'ab'.translate({97: 'AA'}) }} {{ ('x' * 3).encode()|length }}"
    )
    assert t.render([]) == " 3.14|ab  |%      x|2.5    7 AAb 3"


# --- fuzz: random small templates stay within the limits -----------------------------------

PIECES = [
    "{{ 'x' * %d }}",
    "{%% set ns.v = ns.v ~ ns.v %%}",
    "{%% for i in range(%d) %%}",
    "{%% endfor %%}",
    "{{ '%%*d' %% (%d, 1) }}",
    "{{ ns.v|center(%d) }}",
    "{{ (ns.v * %d)|length }}",
    "{{ ns.v.encode() * %d }}",
    "{{ '{:>%d}'.format(1) }}",
    "{{ ns.v.replace('a', ns.v) }}",
    "{{ [ns.v] * %d }}",
]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(st.sampled_from(PIECES), st.integers(0, 10**10)),
        min_size=1,
        max_size=8,
    )
)
def test_fuzzed_templates_stay_within_time_and_memory(parts: list[tuple[str, int]]) -> None:
    body = "".join(p % n if "%d" in p else p for p, n in parts)
    opened = body.count("{% for") - body.count("{% endfor")
    source = "{% set ns = namespace(v='a' * 1000) %}" + body + "{% endfor %}" * max(opened, 0)
    start = time.monotonic()
    try:
        ChatTemplate(source, timeout=3.0).render([])
    except TemplateError as err:
        assert "\n" not in str(err)
    assert time.monotonic() - start < 10.0
    assert chat_sandbox._WORKER._proc is None or _worker_peak_mib() < 1024


def _worker_peak_mib() -> float:
    proc = chat_sandbox._WORKER._proc
    assert proc is not None
    try:
        status = Path(f"/proc/{proc.pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1]) / 1024


def test_source_and_generated_code_are_bounded_before_compile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(TemplateError, match="characters, limit is"):
        ChatTemplate("x" * (chat_sandbox.MAX_SOURCE_CHARS + 1))
    # the generated-code check runs in whichever process compiles: here, in this one
    monkeypatch.setattr(chat_sandbox, "MAX_CODE_CHARS", 2_000)
    with pytest.raises(TemplateError, match="characters of code"):
        chat_sandbox.BoundedSandbox().from_string("{{ a }}" * 200)
    chat_sandbox.BoundedSandbox().from_string("{{ a }}")  # small templates still compile


def test_a_forked_child_gets_its_own_worker() -> None:
    """After os.fork the child must not talk over the parent's pipes."""
    import os

    template = ChatTemplate.builtin("chatml")
    template.render([{"role": "user", "content": "parent"}])
    pid = os.fork()
    if pid == 0:  # the child: render, then exit with 0 only if the text is right
        try:
            ok = "child" in template.render([{"role": "user", "content": "child"}])
        finally:
            chat_sandbox._WORKER.stop()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert "parent" in template.render([{"role": "user", "content": "parent"}])
