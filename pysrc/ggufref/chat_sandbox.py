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
3. **Time.** A template can still loop (``range`` is capped at 100 000 items, but loops nest).
   ``run_with_deadline`` renders in a worker thread and, past the deadline, raises an
   exception inside that thread (``PyThreadState_SetAsyncExc``) so the loop stops.

Every failure becomes ``ggufref.errors.TemplateError`` with a one-line message.
"""

from __future__ import annotations

import ctypes
import json
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ggufref.errors import TemplateError

MAX_SOURCE_CHARS = 1_000_000  # real templates are 0.2-40 kB
MAX_OUTPUT_CHARS = 1_000_000  # a prompt longer than this is no prompt for our models
MAX_VALUE_CHARS = 1_000_000  # largest string (or list) one expression may build
MAX_POW_BITS = 4096  # largest integer ``a ** b`` may produce, in bits
MAX_FORMAT_WIDTH = 10_000  # largest field width in % or {} formatting
RENDER_SECONDS = 5.0  # wall-clock budget for compiling or rendering one template

_WIDTH_RE = re.compile(r"\d{6,}")  # a run of 6+ digits in a format spec is a width bomb
T = TypeVar("T")


class _Deadline(BaseException):
    """Raised inside the worker thread when the render runs out of time.

    A BaseException, so nothing between the template and ``run_with_deadline`` swallows it.
    """


# --- size checks -------------------------------------------------------------------------


def _size(x: Any) -> int:
    """Characters (str) or items (list/tuple) of ``x``; 0 for anything that cannot grow."""
    return len(x) if isinstance(x, str | list | tuple) else 0


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
        if isinstance(x, str):
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


def _check_format_string(fmt: Any) -> None:
    if isinstance(fmt, str) and _WIDTH_RE.search(fmt):
        raise TemplateError(
            f"chat template: format string has a field width above {MAX_FORMAT_WIDTH}"
        )


def _format_size(fmt: str, args: Any) -> int:
    """Upper bound for ``fmt % args`` or ``fmt.format(...)``: each field may hold all args."""
    _check_format_string(fmt)
    fields = fmt.count("%") + fmt.count("{")
    return len(fmt) + fields * weight(args)


def _check_binop(op: str, left: Any, right: Any) -> None:
    """Refuse ``left op right`` when its result would be too large, before computing it."""
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if _size(seq) and isinstance(n, int):
                _check_size(_size(seq) * max(n, 0), "repetition")
    elif op == "+":
        _check_size(_size(left) + _size(right), "concatenation")
    elif op == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
        bits = max(abs(left).bit_length(), 1) * right
        if abs(left) > 1 and bits > MAX_POW_BITS:
            raise TemplateError(
                f"chat template: {left} ** {right} has about {bits} bits, limit is {MAX_POW_BITS}"
            )
    elif op == "%" and isinstance(left, str):
        _check_size(_format_size(left, right), "% formatting")


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
    if name in ("format", "format_map"):
        return _format_size(text, (args, kwargs))
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
            raise TemplateError(f"chat template: {name} argument {a} is too large")
    _check_weight((value, args, kwargs), f"{name} input")
    _check_size(_growth(name, value, args, kwargs), name)


def _checked_result(name: str, result: Any) -> Any:
    if isinstance(result, str | list | tuple):
        _check_size(len(result), name)
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
