"""A Jinja sandbox for chat templates, bounded in what it can reach, in size and in time.

A GGUF's ``tokenizer.chat_template`` is code written by whoever made the file.
We render it the way Hugging Face's ``apply_chat_template`` does
(``ImmutableSandboxedEnvironment``, ``trim_blocks``, ``lstrip_blocks``, ``loopcontrols``),
and close three holes that the stock sandbox leaves open:

1. **Reach.** The stock sandbox turns ``''.__class__`` into a silent empty string;
   here any unsafe attribute raises at once, so a probing template fails loudly.
2. **Size.** ``'x' * 10**9``, ``x ~ x`` doubled sixty times, ``'%999999999d' % 1``,
   ``s.center(10**9)``: the operators ``* + ** %`` and ``~``, every filter and every call
   are checked *before* they run. Their inputs may not weigh more than ``MAX_VALUE_CHARS``
   (``weight`` walks nested lists, which may repeat one big string many times), the few
   that multiply sizes (repeat, replace, center, indent, join, format) are estimated first,
   and every result is measured. The rendered text is capped at ``MAX_OUTPUT_CHARS``.
   ``bytes`` count like ``str``; ``%`` and ``format`` widths and precisions (``*`` and nested
   ``{:{}}`` included) are read before formatting; the template's own code is bounded
   (``MAX_MACROS``, ``MAX_TEMPLATE_NODES``, ``MAX_CODE_CHARS``) before Python compiles it.
3. **Time and total memory.** A template can still loop (``range`` is capped at 100 000 items,
   but loops nest), keep many values alive at once, or spend its time inside one C call.
   So templates are compiled and rendered in a separate worker process (``RenderWorker``)
   whose address space is capped at ``MAX_RENDER_MEMORY`` and which is killed at the
   deadline. It starts once and stays, so a chat turn pays a pipe round trip, not a start.

Every failure becomes ``ggufref.errors.TemplateError`` with a one-line message naming the limit.
"""

from __future__ import annotations

import atexit
import ctypes
import datetime as _dt
import json
import os
import pickle
import re
import resource
import select
import string
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ggufref.errors import TemplateError

# tag::limits[]
MAX_SOURCE_CHARS = 1_000_000  # real templates are 0.2-40 kB
MAX_OUTPUT_CHARS = 1_000_000  # a prompt longer than this is no prompt for our models
MAX_VALUE_CHARS = 1_000_000  # largest string (or list) one expression may build
MAX_POW_BITS = 4096  # largest integer ``a ** b`` may produce, in bits
MAX_FORMAT_WIDTH = 10_000  # largest field width or precision in % or {} formatting
MAX_MACROS = 1_000  # macros in one template (real ones define 0-10)
MAX_TEMPLATE_NODES = 20_000  # parsed syntax-tree nodes (real templates: 20-400)
MAX_CODE_CHARS = 8_000_000  # Python source Jinja generates, checked before compile()
MAX_RENDER_MEMORY = 768 * 2**20  # address space of the render worker process, in bytes
RENDER_SECONDS = 5.0  # wall-clock budget for compiling or rendering one template
# end::limits[]

# %-format conversion specs: flags, width (digits or *), precision (digits or *)
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.S)
_DIGITS = re.compile(r"\d+")
T = TypeVar("T")


class _Deadline(BaseException):
    """Raised inside the worker thread when the render runs out of time.

    A BaseException, so nothing between the template and ``run_with_deadline`` swallows it.
    """


# --- size checks -------------------------------------------------------------------------


def _size(x: Any) -> int:
    """Characters (str) or items (list/tuple) of ``x``; 0 for anything that cannot grow."""
    return len(x) if isinstance(x, str | bytes | bytearray | list | tuple) else 0


def _check_size(n: int, what: str) -> None:
    if n > MAX_VALUE_CHARS:
        raise TemplateError(
            f"chat template: {what} would build {n} items, limit is {MAX_VALUE_CHARS}"
        )


def weight(obj: Any, budget: int = MAX_VALUE_CHARS) -> int:
    """Roughly how many characters ``str(obj)`` or ``tojson(obj)`` would produce.

    Walks nested lists and dicts (which may hold the same big string many times) and stops
    as soon as the total passes ``budget``, so the walk itself is cheap.
    """
    total = 0
    stack = [obj]
    while stack and total <= budget:
        x = stack.pop()
        if isinstance(x, str | bytes | bytearray):
            total += len(x) + 2
        elif isinstance(x, list | tuple | set | frozenset):
            total += 2 + len(x)
            stack.extend(x)
        elif isinstance(x, dict):
            total += 2 + 2 * len(x)
            stack.extend(x.keys())
            stack.extend(x.values())
        else:
            total += 24
    return total


def _check_weight(values: Any, what: str) -> None:
    _check_size(weight(values), what)


def _width_error(found: Any) -> TemplateError:
    return TemplateError(
        f"chat template: format width or precision {found!r:.20} exceeds {MAX_FORMAT_WIDTH}"
    )


def _check_percent_format(fmt: str, args: Any) -> None:
    """Widths and precisions of ``fmt % args``; a ``*`` takes its width from ``args``."""
    star_args = list(args) if isinstance(args, tuple) else [args]
    for m in _PERCENT_SPEC.finditer(fmt):
        for part in (m.group(1), m.group(2)):
            if part == "*":
                width = star_args.pop(0) if star_args else 0
                if not isinstance(width, int) or abs(width) > MAX_FORMAT_WIDTH:
                    raise _width_error(width)
            elif part and int(part) > MAX_FORMAT_WIDTH:
                raise _width_error(part)
        if m.group(3) != "%" and star_args:
            star_args.pop(0)


def _check_brace_format(fmt: str) -> None:
    """Widths and precisions of ``fmt.format(...)``; nested ``{:{}}`` fields are refused
    (their width would come from the arguments; no chat template uses them)."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError as err:
        raise TemplateError(f"chat template: bad format string: {err}") from None
    for _, _, spec, _ in fields:
        if not spec:
            continue
        if "{" in spec:
            raise TemplateError("chat template: nested format fields ({:{}}) are not allowed")
        for digits in _DIGITS.findall(spec):
            if int(digits) > MAX_FORMAT_WIDTH:
                raise _width_error(digits)


def _format_size(fmt: str, args: Any, style: str = "%") -> int:
    """Upper bound for ``fmt % args`` or ``fmt.format(...)``: each field may hold all args,
    plus its width."""
    if style == "%":
        _check_percent_format(fmt, args)
    else:
        _check_brace_format(fmt)
    fields = fmt.count("%") + fmt.count("{")
    return len(fmt) + fields * (weight(args) + MAX_FORMAT_WIDTH)


def _check_binop(op: str, left: Any, right: Any) -> None:
    """Refuse ``left op right`` when its result would be too large, before computing it."""
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if _size(seq) and isinstance(n, int):
                _check_size(_size(seq) * max(n, 0), "repetition")
        if isinstance(left, int) and isinstance(right, int):  # squaring in a loop doubles bits
            bits = abs(left).bit_length() + abs(right).bit_length()
            if bits > MAX_POW_BITS:
                raise TemplateError(
                    f"chat template: a product of about {bits} bits, limit is {MAX_POW_BITS}"
                )
    elif op == "+":
        _check_size(_size(left) + _size(right), "concatenation")
    elif op == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        bits = max(abs(left).bit_length(), 1) * right
        if abs(left) > 1 and bits > MAX_POW_BITS:
            raise TemplateError(
                f"chat template: {left} ** {right} has about {bits} bits, limit is {MAX_POW_BITS}"
            )
    elif op == "%" and isinstance(left, str | bytes):
        fmt = left if isinstance(left, str) else left.decode("latin-1")
        _check_size(_format_size(fmt, right), "% formatting")


def _growth(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """Upper bound on the result size of the str methods and filters that multiply sizes.

    ``name`` is a str method (``center``, ``replace``, ``join``...) or a filter of the same
    meaning; ``value`` is the string (or, for ``join``, the items).
    """

    def arg(i: int, key: str, default: Any) -> Any:
        return args[i] if len(args) > i else kwargs.get(key, default)

    text = value if isinstance(value, str) else ""
    if name in ("center", "ljust", "rjust", "zfill"):
        width = arg(0, "width", 80)
        return max(len(text), width if isinstance(width, int) else 0)
    if name == "indent":
        width = arg(0, "width", 4)
        per_line = len(width) if isinstance(width, str) else int(width)
        return len(text) + (text.count("\n") + 1) * per_line
    if name == "replace":
        old, new = str(arg(0, "old", "")), str(arg(1, "new", ""))
        count = (len(text) + 1) if old == "" else text.count(old)
        return len(text) + count * len(new)
    if name == "expandtabs":
        return len(text) + text.count("\t") * int(arg(0, "tabsize", 8))
    if name == "wordwrap":
        width, wrap = int(arg(0, "width", 79)), str(arg(3, "wrapstring", "\n"))
        return len(text) + (len(text) // max(width, 1) + 1) * len(wrap)
    if name == "format":  # the filter: "%s"|format(x) is % formatting
        return _format_size(text, args if args else kwargs)
    if name in ("str.format", "format_map"):
        return _format_size(text, (args, kwargs), "{")
    if name == "translate":  # every character may become the longest replacement
        table = arg(0, "table", {})
        values = table.values() if isinstance(table, dict) else ()
        return len(text) * max([1, *(_size(v) for v in values)])
    if name == "join":
        if isinstance(value, str):  # str.join(items): the string is the separator
            items, sep = (args[0] if args else []), value
        else:  # the join filter: the value holds the items
            items, sep = (value or []), str(arg(0, "d", ""))
        return weight(items) + len(sep) * len(items)
    return 0


# --- filters and globals that templates expect -------------------------------------------


# tag::tojson[]
def tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """JSON as Hugging Face's chat templates expect it: no HTML escaping, UTF-8 kept as is.

    Jinja's built-in ``tojson`` escapes ``<``, ``>``, ``&`` and ``'`` for HTML, which would
    put ``\\u003c`` into prompts; transformers replaces it with plain ``json.dumps`` with
    these defaults, so we do too (``", "`` and ``": "`` separators, ``ensure_ascii=False``).
    """
    if indent is not None and (not isinstance(indent, int) or not 0 <= indent <= 32):
        raise TemplateError(f"chat template: tojson indent {indent!r} is not in 0..32")
    text = json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )
    _check_size(len(text), "tojson")
    return text


# end::tojson[]


def raise_exception(message: str) -> None:
    """The template's own way of refusing a conversation (e.g. roles out of order)."""
    raise TemplateError(f"chat template refused the messages: {message}")


def _bounded_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter: refuse huge inputs and multiplying arguments before it runs, and check
    the size of what it returns."""

    def check(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if name == "join" and not isinstance(value, str | list | tuple | dict):
            value = list(value)  # a generator: materialise once, measure, then join
        _check_args(name, value, args, kwargs)
        return value

    def plain(value: Any, *args: Any, **kwargs: Any) -> Any:
        value = check(value, args, kwargs)
        return _checked_result(name, original(value, *args, **kwargs))

    def with_context(first: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        value = check(value, args, kwargs)
        return _checked_result(name, original(first, value, *args, **kwargs))

    pass_arg = getattr(original, "jinja_pass_arg", None)  # context/environment come first
    if pass_arg is None:
        return plain
    with_context.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return with_context


def _check_args(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for a in (*args, *kwargs.values()):
        if isinstance(a, int) and abs(a) > MAX_VALUE_CHARS:
            raise TemplateError(
                f"chat template: {name} argument of {a.bit_length()} bits is larger than "
                f"{MAX_VALUE_CHARS}"
            )
    _check_weight((value, args, kwargs), f"{name} input")
    _check_size(_growth(name, value, args, kwargs), name)


def _checked_result(name: str, result: Any) -> Any:
    if isinstance(result, str | bytes | bytearray | list | tuple | dict):
        _check_weight(result, name)
    return result


# --- the environment -----------------------------------------------------------------------


class _BoundedCodeGenerator(CodeGenerator):
    """Compiles ``a ~ b`` to a size-checked join (the stock one calls ``str_join`` directly)."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """HF's chat-template environment, plus the reach and size bounds described above."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "+", "**", "%"})

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
        self.finalize = _finalize
        for name, fn in list(self.filters.items()):
            self.filters[name] = _bounded_filter(name, fn)
        self.filters["tojson"] = _bounded_filter("tojson", tojson)
        self.globals["raise_exception"] = raise_exception
        del self.globals["lipsum"]  # a text generator no chat template needs

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Parse, then refuse a template whose code would take long to generate or compile
        (tens of thousands of macros compile for minutes inside one C call)."""
        tree = super()._parse(source, name, filename)
        macros = sum(1 for _ in tree.find_all((nodes.Macro, nodes.CallBlock)))
        if macros > MAX_MACROS:
            raise TemplateError(f"chat template defines {macros} macros, limit is {MAX_MACROS}")
        count = sum(1 for _ in tree.find_all(nodes.Node))
        if count > MAX_TEMPLATE_NODES:
            raise TemplateError(
                f"chat template has {count} syntax nodes, limit is {MAX_TEMPLATE_NODES}"
            )
        return tree

    def _compile(self, source: str, filename: str) -> Any:
        if len(source) > MAX_CODE_CHARS:  # the Python code Jinja generated, before compile()
            raise TemplateError(
                f"chat template compiles to {len(source)} characters of code, "
                f"limit is {MAX_CODE_CHARS}"
            )
        return super()._compile(source, filename)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        # The stock sandbox returns an Undefined that prints as "", hiding the probe.
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r}")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def bounded_concat(self, parts: tuple[Any, ...]) -> str:
        _check_weight(parts, "concatenation (~)")
        return "".join(str(p) for p in parts)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        name = getattr(__obj, "__name__", type(__obj).__name__)
        # str.format reaches us wrapped by the sandbox; the string is on the wrapped method
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if name == "join" and isinstance(owner, str) and args:
            args = (list(args[0]), *args[1:])
        if name == "format" and isinstance(owner, str):
            name = "str.format"  # {} formatting, unlike the format filter
        _check_args(name, owner if isinstance(owner, str) else None, args, kwargs)
        return _checked_result(name, super().call(__context, __obj, *args, **kwargs))


def _finalize(value: Any) -> Any:
    """Called on every ``{{ value }}`` before it is turned into text."""
    _check_weight(value, "output value")
    return value


# --- running with a deadline ---------------------------------------------------------------


def _raise_in_thread(thread: threading.Thread) -> None:
    """Ask the interpreter to raise ``_Deadline`` in ``thread`` at its next bytecode."""
    if thread.ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(_Deadline)
        )


# tag::deadline[]
def run_with_deadline(fn: Callable[[], T], seconds: float = RENDER_SECONDS) -> T:
    """Run ``fn`` in a worker thread; TemplateError if it fails, escapes or runs out of time.

    Python cannot kill a thread, but it can make one raise: past the deadline we inject
    ``_Deadline`` into the worker, which stops any Jinja loop at its next step.
    """
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except _Deadline:
            box["error"] = TemplateError(f"chat template: gave up after {seconds:g} s")
        except BaseException as err:  # noqa: BLE001 - everything becomes one TemplateError
            box["error"] = err

    worker = threading.Thread(target=work, name="chat-template", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        _raise_in_thread(worker)
        worker.join(1.0)
        if worker.is_alive():  # stuck inside one C call; leave the daemon thread behind
            raise TemplateError(f"chat template: gave up after {seconds:g} s")
    if "error" in box:
        raise as_template_error(box["error"]) from box["error"]
    return box["value"]


# end::deadline[]


def as_template_error(err: BaseException) -> TemplateError:
    """One-line TemplateError for whatever went wrong while compiling or rendering."""
    if isinstance(err, TemplateError):
        return err
    if isinstance(err, SecurityError):
        return TemplateError(f"chat template tried to leave its sandbox: {err}")
    if isinstance(err, jinja2.TemplateSyntaxError):
        return TemplateError(f"chat template has a syntax error on line {err.lineno}: {err}")
    first_line = str(err).splitlines()[0] if str(err) else ""
    if isinstance(err, OverflowError | MemoryError | RecursionError):
        return TemplateError(f"chat template exceeded a limit: {type(err).__name__}: {first_line}")
    return TemplateError(f"chat template failed: {type(err).__name__}: {first_line}")


def render_bounded(template: jinja2.Template, context: dict[str, Any]) -> str:
    """Stream the template's output, stopping once it passes ``MAX_OUTPUT_CHARS``."""
    out: list[str] = []
    total = 0
    for chunk in template.generate(**context):
        total += len(chunk)
        if total > MAX_OUTPUT_CHARS:
            raise TemplateError(f"chat template output exceeds {MAX_OUTPUT_CHARS} characters")
        out.append(chunk)
    return "".join(out)


# --- the render worker: a process we can cap in memory and kill at the deadline -------------

_HEADER = struct.Struct("<Q")  # every message: its length, then pickle (to) or JSON (from)
MAX_CACHED_TEMPLATES = 16


class RenderWorker:
    """A child Python process that compiles and renders templates on request.

    Why a process: a thread cannot be stopped inside one long C call (compiling 35 000
    macros, one huge allocation), and memory can only be capped per process
    (``RLIMIT_AS``). The worker starts on first use and is restarted after it is killed.
    Requests go as pickle (we trust our own process); replies come back as JSON.
    """

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner = os.getpid()  # a forked child must not share our pipes: it starts its own
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[bytes]:
        # the directory holding the ggufref package: <root>/ggufref/chat/sandbox.py
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        return subprocess.Popen(
            [sys.executable, "-c", "from ggufref.chat.sandbox import worker_main; worker_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": path},
        )

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    # tag::deadline[]
    def request(self, message: tuple[Any, ...], seconds: float) -> str:
        """Send one request, wait at most ``seconds`` for the text; TemplateError otherwise.

        Past the deadline the worker is killed (SIGKILL stops C code too) and the next
        request starts a fresh one.
        """
        with self._lock:
            if self._owner != os.getpid():
                self._proc, self._owner = None, os.getpid()
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
            t0 = time.monotonic()
            try:
                proc.stdin.write(_HEADER.pack(len(data)) + data)
                proc.stdin.flush()
                reply = _read_message(proc.stdout.fileno(), t0 + seconds)
            except (BrokenPipeError, EOFError):
                reply = None
                why = self._died()
            except TimeoutError:
                self.stop()
                raise TemplateError(
                    f"chat template: gave up after {seconds:g} s (the render deadline, "
                    f"RENDER_SECONDS)"
                ) from None
            if reply is None:
                raise TemplateError(f"chat template: the render worker {why}")
            answer = json.loads(reply)
            if answer.get("restart"):  # it hit its memory cap: start clean next time
                self.stop()
        if "error" in answer:
            raise TemplateError(answer["error"])
        return str(answer["ok"])

    # end::deadline[]

    def _died(self) -> str:
        assert self._proc is not None
        code = self._proc.wait()
        self._proc = None
        if code < 0:
            return (
                f"was killed by signal {-code} (memory cap {MAX_RENDER_MEMORY >> 20} MiB, "
                "MAX_RENDER_MEMORY)"
            )
        return f"exited with status {code}"


def _read_message(fd: int, deadline: float) -> bytes:
    """One length-prefixed message from ``fd``; TimeoutError past ``deadline``, EOFError
    when the writer is gone."""
    buf = b""
    need = _HEADER.size
    header_done = False
    while len(buf) < need:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError
        chunk = os.read(fd, max(need - len(buf), 65536))
        if not chunk:
            raise EOFError
        buf += chunk
        if not header_done and len(buf) >= _HEADER.size:
            need = _HEADER.size + _HEADER.unpack_from(buf)[0]
            header_done = True
    return buf[_HEADER.size : need]


_WORKER = RenderWorker()
atexit.register(_WORKER.stop)


def render_in_worker(source: str, context: dict[str, Any] | None, seconds: float) -> str:
    """Compile ``source`` (and, with a context, render it) in the worker process.

    ``GGUFREF_RENDER_IN_PROCESS=1`` renders in this process instead (a thread with a
    deadline that cannot stop C code and no memory cap: for debugging only).
    """
    if os.environ.get("GGUFREF_RENDER_IN_PROCESS") == "1":
        return _render_here(source, context, seconds)
    try:
        return _WORKER.request(("render", source, context), seconds)
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        raise TemplateError(f"chat template: a value cannot be passed to it: {err}") from None


_HERE: dict[str, jinja2.Template] = {}


def _compiled(source: str) -> jinja2.Template:
    """The compiled template for ``source`` (a few are cached: a chat renders one per turn)."""
    template = _HERE.get(source)
    if template is None:
        template = BoundedSandbox().from_string(source)
        if len(_HERE) >= MAX_CACHED_TEMPLATES:
            _HERE.pop(next(iter(_HERE)))
        _HERE[source] = template
    return template


def _render_here(source: str, context: dict[str, Any] | None, seconds: float) -> str:
    def work() -> str:
        template = _compiled(source)
        return "" if context is None else render_bounded(template, _with_clock(context))

    return run_with_deadline(work, seconds)


def _with_clock(context: dict[str, Any]) -> dict[str, Any]:
    """``strftime_now`` for the template, reading the time the caller fixed (``now``)."""
    now = context.pop("__now__", None) or _dt.datetime.now()

    def strftime_now(fmt: str) -> str:
        if not isinstance(fmt, str) or len(fmt) > 100:
            raise TemplateError("chat template: strftime_now needs a short format string")
        return now.strftime(fmt)

    return {**context, "strftime_now": strftime_now}


def worker_main() -> None:
    """The worker's loop: read a request, answer with ``{"ok": text}`` or ``{"error": msg}``."""
    resource.setrlimit(resource.RLIMIT_AS, (MAX_RENDER_MEMORY, MAX_RENDER_MEMORY))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        answer: dict[str, Any]
        try:
            _, source, context = pickle.loads(stdin.read(_HEADER.unpack(header)[0]))
            template = _compiled(source)
            text = "" if context is None else render_bounded(template, _with_clock(context))
            answer = {"ok": text}
        except MemoryError:
            answer = {
                "error": f"chat template exceeded the memory cap of "
                f"{MAX_RENDER_MEMORY >> 20} MiB (MAX_RENDER_MEMORY)",
                "restart": True,
            }
        except BaseException as err:  # noqa: BLE001 - everything becomes one message
            answer = {"error": str(as_template_error(err))}
        data = json.dumps(answer).encode()
        stdout.write(_HEADER.pack(len(data)) + data)
        stdout.flush()
