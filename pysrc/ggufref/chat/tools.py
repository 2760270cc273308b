"""Tool calling: describe Python functions to the model, parse the calls it writes, run them.

Stage: ``generated text -> tools.py -> tool results -> template.py (next prompt)``.

1. ``ToolRegistry.register`` turns a typed, documented function into an OpenAI-style schema,
   which the chat template lists in the prompt.
2. ``parse_reply`` reads the model's text in the three formats small models write:
   Hermes/Qwen ``<tool_call>{json}</tool_call>``, Llama 3 bare JSON ``{"name", "parameters"}``,
   and Python-call lists ``[f(a=1), g(b="x")]`` (Gemma, Llama 3.2 "pythonic").
   Anything malformed becomes a message in ``ParsedReply.errors``, never an exception:
   the agent loop feeds errors back to the model so it can try again.
3. ``ToolRegistry.run`` validates arguments against the schema and calls the function.

Nothing the model writes is ever evaluated: JSON goes through ``json``, Python-call syntax
through ``ast.parse`` + ``ast.literal_eval`` on each argument.
The demo tools (a calculator, a confined directory lister) are at the end of this file.
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import os
import re
import select
import signal
import time
import types
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ggufref.errors import ToolCallError

# tag::limits[]
MAX_RESULT_CHARS = 4000  # a tool result longer than this is cut before going back in the prompt
MAX_ARGUMENT_CHARS = 10_000  # a call's arguments, as JSON, longer than this are refused unrun
TOOL_SECONDS = 5.0  # wall-clock budget of one built-in tool call (run in a child process)
# end::limits[]


@dataclass
class ToolCall:
    """One call the model asked for. ``arguments`` is already a dict."""

    name: str
    arguments: dict[str, Any]
    id: str = ""

    def to_message_dict(self) -> dict[str, Any]:
        """The OpenAI ``tool_calls`` entry for the assistant message."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass
class ParsedReply:
    """A model reply split into visible text, hidden reasoning and tool calls."""

    content: str
    reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# --- schemas from Python functions ---------------------------------------------------------

_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    dict: "object",
}


def _type_schema(hint: Any) -> dict[str, Any]:
    """JSON-schema fragment for a type hint (str, int, list[str], Literal[...], X | None)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    if origin is typing.Literal:
        return {"type": _JSON_TYPES.get(type(args[0]), "string"), "enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return _type_schema(rest[0]) if len(rest) == 1 else {}
    if origin in (list, tuple):
        return {"type": "array", **({"items": _type_schema(args[0])} if args else {})}
    if origin is dict:
        return {"type": "object"}
    return {}  # Any or unknown: no constraint


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {param: description}) from a Google ("Args:") or NumPy ("Parameters") docstring."""
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip():
            break
        summary.append(line.strip())
    params: dict[str, str] = {}
    section, current = None, None
    for i, line in enumerate(lines):
        stripped = line.strip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if stripped in ("Args:", "Arguments:", "Parameters:") or (
            stripped == "Parameters" and set(nxt) == {"-"}
        ):
            section, current = "params", None
            continue
        if section != "params" or set(stripped) == {"-"}:
            continue
        if stripped and not line.startswith(" ") and stripped.endswith(":"):
            section = None  # "Returns:" and friends end the parameter list
            continue
        google = re.match(r"^\s{0,8}(\w+)\s*(\([^)]*\))?:\s*(.*)$", line)
        numpy = re.match(r"^(\w+)\s*:\s*(.*)$", line)
        if google and not numpy:
            current = google.group(1)
            params[current] = google.group(3).strip()
        elif numpy:
            current = numpy.group(1)
            params[current] = ""
        elif stripped and current:
            params[current] = (params[current] + " " + stripped).strip()
        elif not stripped and section == "params" and current and params[current]:
            current = None
    return " ".join(summary), params


# tag::function_schema[]
def function_schema(fn: Callable[..., Any], name: str | None = None) -> dict[str, Any]:
    """OpenAI-style schema of ``fn`` from its signature, type hints and docstring."""
    summary, docs = _parse_docstring(fn.__doc__ or "")
    hints = typing.get_type_hints(fn)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for pname, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        prop = _type_schema(hints.get(pname, Any))
        if docs.get(pname):
            prop["description"] = docs[pname]
        properties[pname] = prop
        if param.default is inspect.Parameter.empty:
            required.append(pname)
    return {
        "type": "function",
        "function": {
            "name": name or fn.__name__,
            "description": summary,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


# end::function_schema[]


def _check_type(value: Any, schema: dict[str, Any], where: str) -> None:
    kind = schema.get("type")
    ok = {
        None: True,
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }.get(kind, True)
    if not ok:
        raise ToolCallError(f"{where}: expected {kind}, got {type(value).__name__} {value!r:.40}")
    if "enum" in schema and value not in schema["enum"]:
        raise ToolCallError(f"{where}: {value!r:.40} is not one of {schema['enum']}")
    if kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            _check_type(item, schema["items"], f"{where}[{i}]")


def validate_arguments(schema: dict[str, Any], arguments: Any) -> None:
    """Check ``arguments`` against a tool schema: an object, known keys, required keys, types."""
    fn = schema["function"]
    params = fn["parameters"]
    if not isinstance(arguments, dict):
        raise ToolCallError(f"{fn['name']}: arguments must be an object, got {arguments!r:.60}")
    unknown = sorted(set(arguments) - set(params["properties"]))
    if unknown:
        raise ToolCallError(f"{fn['name']}: unknown argument(s) {', '.join(unknown)}")
    missing = [k for k in params.get("required", []) if k not in arguments]
    if missing:
        raise ToolCallError(f"{fn['name']}: missing required argument(s) {', '.join(missing)}")
    for key, value in arguments.items():
        _check_type(value, params["properties"][key], f"{fn['name']}.{key}")


# --- the registry --------------------------------------------------------------------------


class ToolRegistry:
    """The only functions a model can reach. Register with ``registry.register(fn)`` or as
    a decorator ``@registry.register``; ``registry.schemas()`` goes to the chat template."""

    def __init__(self) -> None:
        self._tools: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {}
        self._timeouts: dict[str, float] = {}

    def register(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Add a tool. With ``timeout`` (seconds) each call runs in a child process that is
        killed at the deadline: the only bound that also stops long C-level work."""

        def add(f: Callable[..., Any]) -> Callable[..., Any]:
            schema = function_schema(f, name)
            self._tools[schema["function"]["name"]] = (f, schema)
            if timeout is not None:
                self._timeouts[schema["function"]["name"]] = timeout
            return f

        return add if fn is None else add(fn)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def names(self) -> list[str]:
        return list(self._tools)

    def schemas(self) -> list[dict[str, Any]]:
        return [schema for _, schema in self._tools.values()]

    def schema(self, name: str) -> dict[str, Any]:
        if name not in self._tools:
            have = ", ".join(self._tools) or "none"
            raise ToolCallError(f"unknown tool {name!r}; available: {have}")
        return self._tools[name][1]

    # tag::run[]
    def call(self, call: ToolCall) -> str:
        """Validate and run one call; ToolCallError for anything the model got wrong."""
        schema = self.schema(call.name)
        size = len(json.dumps(call.arguments, ensure_ascii=False, default=repr))
        if size > MAX_ARGUMENT_CHARS:  # checked before the tool sees them
            raise ToolCallError(
                f"{call.name}: arguments of {size} characters (limit {MAX_ARGUMENT_CHARS})"
            )
        validate_arguments(schema, call.arguments)
        fn = self._tools[call.name][0]
        if call.name in self._timeouts:
            text = call_in_child(fn, call.arguments, self._timeouts[call.name], call.name)
        else:
            text = _result_text(call.name, fn, call.arguments)
        if len(text) > MAX_RESULT_CHARS:
            text = text[:MAX_RESULT_CHARS] + f"... [cut at {MAX_RESULT_CHARS} characters]"
        return text

    def run(self, call: ToolCall) -> tuple[str, bool]:
        """``(content, ok)`` for the ``role: tool`` message: errors read ``error: ...``."""
        try:
            return self.call(call), True
        except ToolCallError as err:
            return f"error: {err}", False

    # end::run[]


def _result_text(name: str, fn: Callable[..., Any], arguments: dict[str, Any]) -> str:
    """Run one tool; its result as text, cut to ``MAX_RESULT_CHARS`` (plus one, so the caller
    sees that it was cut)."""
    try:
        result = fn(**arguments)
    except ToolCallError:
        raise
    except Exception as err:  # a tool failing is news for the model, not a crash
        raise ToolCallError(f"{name} failed: {type(err).__name__}: {err}") from err
    if not isinstance(result, str):
        try:
            result = json.dumps(result, ensure_ascii=False, default=repr)
        except (ValueError, TypeError, RecursionError) as err:
            raise ToolCallError(f"{name} returned something that is not JSON: {err}") from err
    return result[: MAX_RESULT_CHARS + 1]


# tag::call_in_child[]
def call_in_child(
    fn: Callable[..., Any], arguments: dict[str, Any], seconds: float, name: str
) -> str:
    """Run ``fn(**arguments)`` in a forked child and wait at most ``seconds``.

    A thread cannot be stopped inside one long C call (``10 ** 10 ** 8``, a regex that
    backtracks, a blocking read); a process can be killed. The child sends back one JSON
    message through a pipe, already cut to ``MAX_RESULT_CHARS``.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, report, exit without running the parent's cleanup
        try:
            os.close(read_end)
            try:
                message = {"ok": _result_text(name, fn, arguments)}
            except ToolCallError as err:
                message = {"error": str(err)}
            out = json.dumps(message).encode()
            while out:
                out = out[os.write(write_end, out) :]
        finally:
            os._exit(0)
    os.close(write_end)
    data: bytes | None = None
    try:
        data = _read_until(read_end, time.monotonic() + seconds)
    finally:
        os.close(read_end)
        if data is None:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if data is None:
        raise ToolCallError(f"{name} did not finish within {seconds:g} s")
    try:
        message = json.loads(data)
    except ValueError:
        raise ToolCallError(f"{name} ended without a result") from None
    if "error" in message:
        raise ToolCallError(message["error"])
    return str(message["ok"])


# end::call_in_child[]


def _read_until(fd: int, deadline: float) -> bytes | None:
    """Everything written to pipe ``fd`` until its writer closes it; None past ``deadline``."""
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


# --- parsing what the model wrote ----------------------------------------------------------

_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_PY_CALL_START = re.compile(r"^\[\s*[A-Za-z_][\w.]*\s*\(")
_FENCE_TAGS = ("tool_code", "python", "json")
_JSON_LITERAL_NAMES = {"true": True, "false": False, "null": None}

# Model output is untrusted input too: a reply can nest JSON 10 000 deep or write a
# 5000-digit number. These limits turn such calls into a parse error fed back to the model.
# tag::limits[]
MAX_CALL_CHARS = 100_000  # one tool call's JSON or Python text
MAX_JSON_DEPTH = 64  # nesting of [ and { in one call (real arguments nest 2-4 deep)
MAX_INT_DIGITS = 1000  # digits of one integer in a call (Python refuses > 4300 with ValueError)
# end::limits[]


class _CallTooBig(Exception):
    """A tool call over one of the limits above (becomes a message in ParsedReply.errors)."""


def json_depth(text: str, start: int = 0) -> int:
    """Deepest ``[``/``{`` nesting in ``text[start:]``, strings skipped; one pass, no recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text[start:]:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _CallTooBig(f"a number with {len(digits)} digits (limit {MAX_INT_DIGITS})")
    return int(digits)


_DECODER = json.JSONDecoder(parse_int=_bounded_int)


def decode_json(text: str, pos: int = 0) -> tuple[Any, int]:
    """``JSONDecoder.raw_decode`` within the size, depth and integer limits.

    Raises json.JSONDecodeError for bad JSON and _CallTooBig past a limit: never
    RecursionError or ValueError, whatever the text.
    """
    if len(text) - pos > MAX_CALL_CHARS:
        raise _CallTooBig(f"{len(text) - pos} characters (limit {MAX_CALL_CHARS})")
    depth = json_depth(text, pos)
    if depth > MAX_JSON_DEPTH:
        raise _CallTooBig(f"JSON nested {depth} deep (limit {MAX_JSON_DEPTH})")
    try:
        return _DECODER.raw_decode(text, pos)
    except (RecursionError, MemoryError) as err:  # belt and braces: the scan bounds both
        raise _CallTooBig(type(err).__name__) from None


# tag::split_reasoning[]
def split_reasoning(text: str) -> tuple[str, str | None]:
    """``(text without <think> blocks, reasoning or None)``.

    Handles a closing ``</think>`` with no opening tag (the prompt opened it) and an
    opening tag never closed (generation stopped while thinking).
    One left-to-right pass with ``str.find``: a reply of 20 000 ``<think>`` tags costs
    no more than its length (a lazy regex retried from every tag would be quadratic).
    """
    parts, kept, pos = [], [], 0
    while (start := text.find("<think>", pos)) >= 0:
        end = text.find("</think>", start + 7)
        if end < 0:  # no closing tag after this one: none after any later one either
            break
        kept.append(text[pos:start])
        parts.append(text[start + 7 : end].strip())
        pos = end + 8
    kept.append(text[pos:])
    rest = "".join(kept)
    if "</think>" in rest:
        head, _, rest = rest.partition("</think>")
        parts.insert(0, head.strip())
    if "<think>" in rest:
        rest, _, tail = rest.partition("<think>")
        parts.append(tail.strip())
    reasoning = "\n\n".join(p for p in parts if p)
    return rest.strip(), (reasoning or None)


# end::split_reasoning[]


def unfence(text: str) -> str | None:
    """The inside of a Markdown code fence ```` ```json ... ``` ```` filling all of ``text``
    (the language tag is optional), stripped; None when ``text`` is not one fence."""
    if len(text) < 6 or not (text.startswith("```") and text.endswith("```")):
        return None
    inner = text[3:-3]
    for tag in _FENCE_TAGS:
        if inner.startswith(tag):
            inner = inner[len(tag) :]
            break
    return inner.strip()


def _loads(text: str) -> Any:
    """``json.loads`` within the limits (trailing text is an error, as in json.loads)."""
    text = text.strip()
    obj, end = decode_json(text)
    if text[end:]:
        raise json.JSONDecodeError("Extra data", text, end)
    return obj


def _call_from_json(obj: Any) -> ToolCall:
    """A ToolCall from ``{"name", "arguments"|"parameters"}``, possibly OpenAI-wrapped."""
    if isinstance(obj, dict) and isinstance(obj.get("function"), dict):
        obj = obj["function"]
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise ToolCallError(f'a tool call needs a JSON object with a "name", got {obj!r:.80}')
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # some models double-encode
        try:
            args = _loads(args) if args.strip() else {}
        except json.JSONDecodeError as err:
            raise ToolCallError(f"{obj['name']}: arguments are not valid JSON: {err}") from err
        except _CallTooBig as err:
            raise ToolCallError(f"{obj['name']}: arguments are too large: {err}") from err
    if not isinstance(args, dict):
        raise ToolCallError(f"{obj['name']}: arguments must be a JSON object, got {args!r:.60}")
    return ToolCall(obj["name"], args)


def parse_hermes(text: str) -> ParsedReply:
    """``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, any number of them."""
    reply = ParsedReply(content=_TOOL_CALL_RE.sub("", text).strip())
    for body in _TOOL_CALL_RE.findall(text):
        try:
            reply.tool_calls.append(_call_from_json(_loads(body.strip())))
        except json.JSONDecodeError as err:
            reply.errors.append(f"<tool_call> is not valid JSON ({err.msg} at {err.pos})")
        except _CallTooBig as err:
            reply.errors.append(f"<tool_call> is too large: {err}")
        except ToolCallError as err:
            reply.errors.append(str(err))
    return reply


def parse_llama3_json(text: str) -> ParsedReply:
    """Bare JSON calls: ``{"name": .., "parameters": {..}}``, ``;``-separated, maybe after
    ``<|python_tag|>``."""
    body = text.strip().removeprefix("<|python_tag|>").strip()
    reply = ParsedReply(content="")
    pos = 0
    while pos < len(body):
        try:
            obj, pos = decode_json(body, pos)
            reply.tool_calls.append(_call_from_json(obj))
        except json.JSONDecodeError as err:
            reply.errors.append(f"tool call is not valid JSON ({err.msg} at {err.pos})")
            break
        except _CallTooBig as err:
            reply.errors.append(f"tool call is too large: {err}")
            break
        except ToolCallError as err:
            reply.errors.append(str(err))
        while pos < len(body) and body[pos] in " \t\r\n;":
            pos += 1
    return reply


def _literal(node: ast.expr) -> Any:
    """The value of one argument node: a Python literal, or JSON's true/false/null."""
    if isinstance(node, ast.Name) and node.id in _JSON_LITERAL_NAMES:
        return _JSON_LITERAL_NAMES[node.id]
    return ast.literal_eval(node)  # refuses names, calls, attributes, operators


# tag::parse_pythonic[]
def parse_pythonic(text: str) -> ParsedReply:
    """``[f(a=1), g(b="x")]``: parsed as an expression tree, never evaluated.

    Each call must be a plain name with keyword arguments whose values are literals.
    """
    reply = ParsedReply(content="")
    if len(text) > MAX_CALL_CHARS or json_depth(text) > MAX_JSON_DEPTH:
        reply.errors.append(
            f"tool call list is too large (limits: {MAX_CALL_CHARS} characters, "
            f"nesting {MAX_JSON_DEPTH})"
        )
        return reply
    try:
        with warnings.catch_warnings():  # "invalid decimal literal" would reach stderr
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        reply.errors.append(f"tool call list is not valid Python call syntax: {err}")
        return reply
    if not isinstance(tree, ast.List):
        reply.errors.append("tool calls must be a list: [name(arg=value), ...]")
        return reply
    for node in tree.elts:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            reply.errors.append(f"not a function call: {ast.unparse(node)[:80]}")
            continue
        name = node.func.id
        if node.args or any(k.arg is None for k in node.keywords):
            reply.errors.append(f"{name}: use keyword arguments only, like {name}(x=1)")
            continue
        try:
            args = {k.arg: _literal(k.value) for k in node.keywords if k.arg}
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            reply.errors.append(f"{name}: arguments must be literals (numbers, strings, lists)")
            continue
        reply.tool_calls.append(ToolCall(name, args))
    return reply


# end::parse_pythonic[]


# tag::parse_reply[]
def parse_reply(text: str, style: str = "auto") -> ParsedReply:
    """Split a model reply into content, reasoning and tool calls.

    ``style`` is the format the template taught ("hermes", "llama3", "pythonic") or "auto";
    when the taught format finds nothing, the other formats are tried too (small models
    drift between them).
    """
    visible, reasoning = split_reasoning(text)
    fenced = unfence(visible)
    candidate = visible if fenced is None else fenced
    looks = {
        "hermes": "<tool_call>" in visible,
        "llama3": candidate.startswith(("{", "<|python_tag|>")),
        "pythonic": bool(_PY_CALL_START.match(candidate)),
    }
    parsers = {"hermes": parse_hermes, "llama3": parse_llama3_json, "pythonic": parse_pythonic}
    reply = ParsedReply(content=visible)
    if looks.get(style):
        reply = parsers[style](visible if style == "hermes" else candidate)
    else:
        for other, hit in looks.items():
            if not hit:
                continue
            found = parsers[other](visible if other == "hermes" else candidate)
            # in a format the template did not teach, only clean calls count
            if style == "auto" or (found.tool_calls and not found.errors):
                reply = found
                break
    reply.reasoning = reasoning
    for i, call in enumerate(reply.tool_calls):
        call.id = call.id or f"call_{i}"
    return reply


# end::parse_reply[]


def tool_call_style(template_source: str) -> str:
    """Which call format a chat template teaches: "hermes", "llama3", "pythonic" or "auto"."""
    if "<tool_call>" in template_source:
        return "hermes"
    if "<|start_header_id|>" in template_source and '"parameters"' in template_source:
        return "llama3"
    if "<start_of_turn>" in template_source:
        return "pythonic"
    return "auto"


# --- built-in demo tools -------------------------------------------------------------------

# tag::limits[]
MAX_INT_BITS = 4096  # calculator integers stay below 2**4096 (about 1233 digits)
MAX_EXPRESSION_CHARS = 500
MAX_FACTORIAL = 200
MAX_ROUND_DIGITS = 400  # round(x, n): |n| past this would only build a huge power of ten
# end::limits[]
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _factorial(n: Any) -> int:
    if not isinstance(n, int) or not 0 <= n <= MAX_FACTORIAL:
        raise ToolCallError(f"calculator: factorial needs an integer in 0..{MAX_FACTORIAL}")
    return math.factorial(n)


def _round(x: Any, ndigits: Any = None) -> Any:
    """``round``, refusing digit counts whose power of ten would be huge before computing it
    (``round(1, -10**8)`` builds 10**100000000 with the interpreter lock held)."""
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int) or abs(ndigits) > MAX_ROUND_DIGITS:
        raise ToolCallError(
            f"calculator: round needs digits in -{MAX_ROUND_DIGITS}..{MAX_ROUND_DIGITS}"
        )
    return round(x, ndigits)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "abs": abs,
    "round": _round,
    "floor": math.floor,
    "ceil": math.ceil,
    "factorial": _factorial,
}


def _bounded(x: Any) -> Any:
    if isinstance(x, complex):  # (-8) ** 0.5
        raise ToolCallError("calculator: result is not a real number")
    if isinstance(x, int) and x.bit_length() > MAX_INT_BITS:
        raise ToolCallError(f"calculator: result has more than {MAX_INT_BITS} bits")
    if isinstance(x, float) and not math.isfinite(x):
        raise ToolCallError("calculator: result is not a finite number")
    return x


def _power(base: Any, exp: Any) -> Any:
    """``base ** exp``, refusing before computing anything that would be too large."""
    if isinstance(base, int) and isinstance(exp, int) and exp > 0 and abs(base) > 1:
        # base**exp has at least (bits(base) - 1) * exp bits; past the limit, refuse unseen
        if (abs(base).bit_length() - 1) * exp > MAX_INT_BITS:
            raise ToolCallError(f"calculator: {base} ** {exp} is too large")
    elif abs(exp) > 10_000:  # floats: math.pow would overflow or underflow anyway
        raise ToolCallError(f"calculator: exponent {exp} is too large")
    return base**exp


# tag::calculator_eval[]
def _eval_node(node: ast.AST) -> Any:
    """Evaluate an arithmetic expression tree: numbers, + - * / // % **, a few functions."""
    if isinstance(node, ast.Expression):
        return _eval_node(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        value = _eval_node(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        return _bounded(_power(_eval_node(node.left), _eval_node(node.right)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval_node(node.left), _eval_node(node.right)
        return _bounded(_BINOPS[type(node.op)](left, right))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _bounded(_FUNCTIONS[node.func.id](*[_eval_node(a) for a in node.args]))
    if isinstance(node, ast.Name):
        raise ToolCallError(f"calculator: unknown name {node.id!r}")
    if isinstance(node, ast.Attribute):
        raise ToolCallError("calculator: attribute access is not allowed")
    if isinstance(node, ast.Call):
        raise ToolCallError(f"calculator: only these functions: {', '.join(_FUNCTIONS)}")
    raise ToolCallError(f"calculator: {type(node).__name__} is not arithmetic")


# end::calculator_eval[]


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression and return the result.

    Args:
        expression: Arithmetic using numbers, + - * / // % ** and parentheses, plus
            sqrt, exp, log, log10, sin, cos, tan, abs, round, floor, ceil, factorial, pi, e.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolCallError(f"calculator: expression longer than {MAX_EXPRESSION_CHARS} chars")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as err:
        raise ToolCallError(f"calculator: not an expression: {expression!r:.60}") from err
    try:
        value = _eval_node(tree)
    except ZeroDivisionError as err:
        raise ToolCallError("calculator: division by zero") from err
    except OverflowError as err:
        raise ToolCallError("calculator: result is too large") from err
    except (ValueError, TypeError, RecursionError) as err:
        raise ToolCallError(f"calculator: {err}") from err
    return f"{value:.12g}" if isinstance(value, float) else str(value)


MAX_LISTED = 200


# tag::limits[]
MAX_PATH_CHARS = 1000  # a list_files path longer than this is refused before any system call
MAX_SYMLINKS = 40  # symbolic links followed in one path (Linux's own limit)
# end::limits[]
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class _Outside(Exception):
    """The path leaves the workspace."""


# tag::open_inside[]
def open_inside(base: str, path: str) -> int:
    """A file descriptor of directory ``path``, resolved inside ``base`` (a real path).

    Every component is opened relative to the one before (``dir_fd``) with ``O_NOFOLLOW``, so
    the directory we list is the one we checked: no one can swap a symlink in between. ``..``
    pops our own stack of descriptors, never the file system's; a symlink is read and its
    target walked the same way (an absolute target must lie under ``base``). Raises _Outside,
    or OSError when a component is missing or not a directory.
    """
    todo = _components(base, path)
    fds = [os.open(base, _DIR_FLAGS)]
    links = 0
    try:
        while todo:
            name = todo.pop(0)
            if name == "..":
                if len(fds) == 1:
                    raise _Outside(path)
                os.close(fds.pop())
                continue
            try:
                fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
            except OSError:
                target = os.readlink(name, dir_fd=fds[-1])  # OSError again: not a link
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(40, "too many levels of symbolic links") from None
                if target.startswith("/"):  # restart from the root
                    for fd in fds[1:]:
                        os.close(fd)
                    del fds[1:]
                todo[:0] = _components(base, target)
        fd = fds.pop()
        return fd
    finally:
        for fd in fds:
            os.close(fd)


# end::open_inside[]


def _components(base: str, path: str) -> list[str]:
    """The names to walk for ``path``: relative to the current directory, or, for an absolute
    path, relative to ``base`` (which it must lie under)."""
    if path.startswith("/"):
        norm = os.path.normpath(path)
        if norm != base and not norm.startswith(base.rstrip("/") + "/"):
            raise _Outside(path)
        path = norm[len(base) :]
    return [c for c in path.split("/") if c not in ("", ".")]


def make_list_files(root: str | os.PathLike[str]) -> Callable[..., str]:
    """A ``list_files`` tool that can only see ``root`` and what lies below it."""
    base = os.path.realpath(root)

    def list_files(path: str = ".") -> str:
        """List the files and directories in a directory of the workspace.

        Args:
            path: A directory inside the workspace, relative to it; "." (the default) is the
                workspace itself.
        """
        if len(path) > MAX_PATH_CHARS or "\0" in path:
            raise ToolCallError(f"list_files: the path is too long or holds a NUL ({len(path)})")
        try:
            fd = open_inside(base, path)
        except _Outside:
            raise ToolCallError(f"list_files: {path!r:.80} is outside the workspace") from None
        except OSError as err:
            why = err.strerror or type(err).__name__
            raise ToolCallError(
                f'list_files: {path!r:.80} is not a directory ({why}); "." is the workspace itself'
            ) from None
        entries = []
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    slash = "/" if entry.is_dir(follow_symlinks=False) else ""
                    entries.append(entry.name + slash)
                    if len(entries) > 100 * MAX_LISTED:  # a huge directory: stop reading
                        break
        finally:
            os.close(fd)
        entries.sort()
        more = len(entries) - MAX_LISTED
        lines = entries[:MAX_LISTED] + ([f"... and {more} more"] if more > 0 else [])
        return "\n".join(lines) if lines else "(empty directory)"

    return list_files


def builtin_registry(root: str | os.PathLike[str] = ".") -> ToolRegistry:
    """A registry with the demo tools: ``calculator`` and ``list_files`` confined to ``root``."""
    registry = ToolRegistry()
    registry.register(calculator, timeout=TOOL_SECONDS)
    registry.register(make_list_files(root), name="list_files", timeout=TOOL_SECONDS)
    return registry
