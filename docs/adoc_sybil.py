"""Doc tests for the AsciiDoc pages: a small AsciiDoc lexer on top of Sybil's parsers.

Sybil reads reST and Markdown; this module teaches it the one AsciiDoc construct the pages test,
a source listing:

    [source,python]            [source,c]                  [source,python,test=fragment]
    ----                       ----                        ----
    >>> 1 + 1                  include::example$...[]      include::example$pysrc/...[tag=x]
    2                          ----                        ----
    ----

What happens to a block (the rules, also on the page how-to/run-doc-tests.adoc):

* ``include::example$PATH[tag=NAME]`` lines are expanded as Antora does: the file under
  ``docs/modules/ROOT/examples/``, only the tagged region, every tag directive line removed
  (nested tags are stripped, not kept). A missing file, a missing tag or an unclosed tag fails.
* Python whose text starts with ``>>>`` is a doctest; each ``>>>`` example is one test, and all
  examples of a page share one namespace, in page order (flags ELLIPSIS, NORMALIZE_WHITESPACE,
  NUMBER; numpy prints as in 1.25 with 4 digits while the page runs; the working directory is
  the repository root).
* Other Python is run as code in the page's namespace.
* C that defines ``main`` is compiled with ``gcc -std=gnu11 -Wall -Wextra -Werror -Icsrc`` and
  run; it must exit 0 (it proves its claims with ``_Static_assert`` and ``assert``).
* ``test=fragment`` marks an excerpt that cannot run on its own (a method, a struct, a kernel):
  Python is compiled (syntax and indentation), and for C every file the excerpt comes from is
  compiled with ``gcc -fsyntax-only -Wall -Wextra -Werror``, so the code shown is code that
  builds. ``test=skip`` marks a block that is deliberately not tested. A C block that neither
  defines ``main`` nor carries a mark is an error.
"""

from __future__ import annotations

import ast
import doctest
import os
import re
import subprocess
import tempfile
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sybil import Document, Example, Lexeme, Region, Sybil
from sybil.evaluators.doctest import NUMBER
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.abstract import AbstractCodeBlockParser
from sybil.parsers.abstract.codeblock import PythonDocTestOrCodeBlockParser
from sybil.parsers.abstract.lexers import LexingException

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "modules" / "ROOT" / "examples"
CSRC = ROOT / "csrc"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | NUMBER
MODES = ("run", "fragment", "skip")

# ---------------------------------------------------------------------------- the lexer

# An attribute line [source,LANG,...], an optional .Title line, then a ---- delimited body.
BLOCK = re.compile(
    r"^\[source,(?P<lang>[\w+-]+)(?P<attrs>[^\]\n]*)\]\n(?:\.[^\n]*\n)?----\n(?P<body>.*?)^----$",
    re.MULTILINE | re.DOTALL,
)
INCLUDE = re.compile(r"^include::example\$(?P<target>[^\[\s]+)\[(?P<attrs>[^\]]*)\]$")
TAG_LINE = re.compile(r"\b(?P<kind>tag|end)::(?P<name>\S+?)\[\](?=$|\s)")


class AsciiDocSourceLexer:
    """Yields one Region per [source,LANG] listing, with the text Antora would show."""

    def __call__(self, document: Document) -> Iterable[Region]:
        for m in BLOCK.finditer(document.text):
            attrs = dict(re.findall(r",\s*(\w+)=([\w-]+)", m.group("attrs")))
            mode = attrs.get("test", "")
            if mode and mode not in MODES:
                raise LexingException(f"{document.path}: test={mode}, expected one of {MODES}")
            text, sources = expand(m.group("body"), document.path)
            lexemes = {
                "arguments": m.group("lang"),
                "mode": mode,
                "sources": sources,
                "source": Lexeme(text, offset=0, line_offset=0),
            }
            yield Region(m.start("body"), m.end("body"), lexemes=lexemes)


def expand(body: str, where: str) -> tuple[str, list[Path]]:
    """Replace each include::example$...[] line by the file's text (or its tagged regions)."""
    out: list[str] = []
    sources: list[Path] = []
    for line in body.splitlines(keepends=True):
        m = INCLUDE.match(line.rstrip("\n"))
        if not m:
            out.append(line)
            continue
        path = EXAMPLES / m.group("target")
        if not path.is_file():
            raise LexingException(f"{where}: include target example${m.group('target')} not found")
        attrs = dict(a.split("=", 1) for a in m.group("attrs").split(",") if "=" in a)
        tags = [t for t in re.split(r"[;,]", attrs.get("tags", attrs.get("tag", ""))) if t]
        text = path.read_text(encoding="utf-8")
        text = tagged_region(text, tags, f"{where}: example${m.group('target')}") if tags else text
        if "indent" in attrs:
            text = textwrap.indent(textwrap.dedent(text), " " * int(attrs["indent"]))
        out.append(text if text.endswith("\n") else text + "\n")
        sources.append(path.resolve())
    return "".join(out), sources


def tagged_region(text: str, tags: list[str], where: str) -> str:
    """The lines inside any of `tags`, without tag directive lines, as Asciidoctor selects them."""
    stack: list[str] = []
    keep: list[str] = []
    found: set[str] = set()
    for n, line in enumerate(text.splitlines(keepends=True), 1):
        directives = list(TAG_LINE.finditer(line))
        if directives:
            for d in directives:
                if d.group("kind") == "tag":
                    stack.append(d.group("name"))
                    found.add(d.group("name"))
                elif not stack or stack[-1] != d.group("name"):
                    raise LexingException(f"{where}: line {n}: mismatched end::{d.group('name')}[]")
                else:
                    stack.pop()
            continue
        if any(t in stack for t in tags):
            keep.append(line)
    if stack:
        raise LexingException(f"{where}: unclosed tag::{stack[-1]}[]")
    missing = [t for t in tags if t not in found]
    if missing:
        raise LexingException(f"{where}: tag {missing[0]!r} not found")
    return "".join(keep)


# ---------------------------------------------------------------------------- evaluators


def compile_python_fragment(example: Example) -> None:
    """An excerpt must parse: as a module, or (a function body with `return`) inside a def."""
    source = textwrap.dedent(example.parsed)
    try:
        ast.parse(source)
    except SyntaxError:
        ast.parse("async def _excerpt():\n" + textwrap.indent(source, "    "))


def _gcc(args: list[str], cwd: Path) -> None:
    proc = subprocess.run(
        ["gcc", "-std=gnu11", "-Wall", "-Wextra", "-Werror", f"-I{CSRC}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode:
        raise AssertionError(f"gcc {' '.join(args)} failed:\n{proc.stderr}")


def evaluate_c(example: Example) -> None:
    mode = example.region.lexemes["mode"]
    text: str = example.parsed
    if mode == "fragment":
        for src in example.region.lexemes["sources"]:
            lang = ["-x", "c"] if src.suffix == ".h" else []
            _gcc(["-fsyntax-only", *lang, str(src)], src.parent)
        return
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "example.c").write_text(text, encoding="utf-8")
        _gcc(["-O1", "example.c", "-o", "example", "-lm"], Path(tmp))
        proc = subprocess.run(["./example"], cwd=tmp, capture_output=True, text=True, timeout=60)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"C example exited {proc.returncode}:\n{output}"


# ---------------------------------------------------------------------------- parsers


class _CodeBlocks(AbstractCodeBlockParser):
    def __init__(self, language: str, evaluator: Any = None) -> None:
        super().__init__([AsciiDocSourceLexer()], language, evaluator)


class PythonBlockParser(PythonDocTestOrCodeBlockParser):
    """Doctests per >>> example, other blocks as code (or fragments), skips dropped."""

    codeblock_parser_class = _CodeBlocks

    def __init__(self) -> None:
        super().__init__(doctest_optionflags=FLAGS)
        self.run_code = PythonEvaluator()

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in self.codeblock_parser(document):
            mode, sources = region.lexemes["mode"], region.lexemes["sources"]
            if mode == "skip":
                continue
            if region.parsed.startswith(">>>"):
                if sources:
                    raise LexingException(f"{document.path}: write >>> examples on the page")
                for sub in self.doctest_parser(region.parsed, document.path):
                    sub.adjust(region, region.parsed)
                    yield sub
                continue
            region.evaluator = compile_python_fragment if mode == "fragment" else self.run_code
            yield region


class CBlockParser:
    def __init__(self) -> None:
        self.blocks = _CodeBlocks("c", evaluate_c)

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in self.blocks(document):
            mode = region.lexemes["mode"]
            if mode == "skip":
                continue
            if not mode and not re.search(r"\bint\s+main\s*\(", region.parsed):
                raise LexingException(
                    f"{document.path}: a [source,c] block without main() needs test=fragment "
                    "or test=skip"
                )
            yield region


# ---------------------------------------------------------------------------- per page


def setup_page(namespace: dict[str, Any]) -> None:
    """numpy prints as 1.25 did (no np.float32(...) reprs); paths are relative to the repo root."""
    import numpy as np

    namespace["_saved_printoptions"] = np.get_printoptions()
    namespace["_saved_cwd"] = os.getcwd()
    np.set_printoptions(legacy="1.25", precision=4, suppress=True)
    os.chdir(ROOT)


def teardown_page(namespace: dict[str, Any]) -> None:
    import numpy as np

    saved = namespace.get("_saved_printoptions")
    if saved is not None:
        np.set_printoptions(**saved)
    if "_saved_cwd" in namespace:
        os.chdir(namespace["_saved_cwd"])
    namespace.clear()  # drop the page's models and memory maps


def make_sybil(path: str = ".", patterns: tuple[str, ...] = ("*.adoc",)) -> Sybil:
    return Sybil(
        parsers=[PythonBlockParser(), CBlockParser()],
        patterns=list(patterns),
        path=path,
        setup=setup_page,
        teardown=teardown_page,
    )
