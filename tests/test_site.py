"""The documentation site: it builds without warnings, and what it builds is whole.

Builds the site once per session with docker/build-docs.sh (the same script the Dockerfile
runs), then checks the navigation, every internal link and anchor, the Mermaid diagrams, the
docs' own rules (no pasted code over three lines, a "Check it yourself" on every explanation
page), and loads two pages in headless Chromium (tests/site_check.mjs).

Run: pytest -m site tests/test_site.py   (needs node + npm, Chromium, the DejaVu fonts)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "docs" / "modules" / "ROOT"
PAGES = MODULE / "pages"
GENERATED = MODULE / "partials" / "generated"
SITE = ROOT / "build" / "site"
COMPONENT = SITE / "ggufref"
SHOTS = ROOT / "build" / "screenshots"
MIN_PAGES = 25
MIN_DIAGRAMS = 14
MAX_PASTED_LINES = 3
MIN_DIAGRAM_TEXT_PX = 11.0  # every diagram's smallest text, at a 1280 px wide window


@pytest.fixture(scope="session")
def site() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed to build the site (apt-get install nodejs npm)")
    proc = subprocess.run(
        [str(ROOT / "docker" / "build-docs.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"site build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return SITE


def source_pages() -> set[str]:
    return {p.relative_to(PAGES).as_posix() for p in PAGES.rglob("*.adoc")}


def nav_targets() -> list[str]:
    text = (MODULE / "nav.adoc").read_text(encoding="utf-8")
    return re.findall(r"xref:([^\[#]+\.adoc)", text)


def html_files(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


class _Links(HTMLParser):
    """Collects ids, and href/src values with the tag they came from."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []
        self.mermaid_imgs: list[str] = []
        self._in_mermaid = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "div" and "mermaid" in a.get("class", "").split():
            self._in_mermaid = 1
        for key in ("href", "src"):
            if key in a:
                self.links.append((tag, a[key]))
        if tag == "img" and self._in_mermaid:
            self.mermaid_imgs.append(a.get("src", ""))
            self._in_mermaid = 0


def parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text(encoding="utf-8"))
    return p


# ---------------------------------------------------------------------------- the build


def test_build_has_no_warnings(site: Path) -> None:
    log = (ROOT / "build" / "antora.log").read_text(encoding="utf-8")
    bad = [ln for ln in log.splitlines() if re.search(r'"level":"(warn|error|fatal)"', ln)]
    assert bad == []


def test_enough_pages(site: Path) -> None:
    pages = source_pages()
    assert len(pages) >= MIN_PAGES, f"{len(pages)} pages, want >= {MIN_PAGES}"
    for rel in pages:
        html = COMPONENT / rel.replace(".adoc", ".html")
        assert html.is_file(), f"{rel} was not published as {html}"


# ---------------------------------------------------------------------------- navigation


def test_every_nav_entry_has_a_page() -> None:
    missing = [t for t in nav_targets() if t not in source_pages()]
    assert missing == []


def test_every_page_is_in_the_nav() -> None:
    orphans = sorted(source_pages() - set(nav_targets()))
    assert orphans == []


def test_nav_has_no_duplicates() -> None:
    targets = nav_targets()
    assert len(targets) == len(set(targets))


# ---------------------------------------------------------------------------- links


def test_every_internal_link_and_anchor_resolves(site: Path) -> None:
    parsed = {path: parse(path) for path in html_files(site)}
    broken = []
    for path, page in parsed.items():
        for tag, url in page.links:
            parts = urlsplit(url)
            if parts.scheme or url.startswith("//") or url.startswith("mailto:"):
                continue
            target = path if not parts.path else (path.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{path.relative_to(site)}: <{tag}> {url}")
            elif parts.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else parse(target).ids
                if parts.fragment not in ids:
                    broken.append(f"{path.relative_to(site)}: <{tag}> {url} (no such anchor)")
    assert broken == []


def test_no_unresolved_xrefs(site: Path) -> None:
    # Antora renders an unresolved xref as a link with class "unresolved" (and warns).
    bad = [p.name for p in html_files(site) if 'class="unresolved"' in p.read_text("utf-8")]
    assert bad == []


# ---------------------------------------------------------------------------- diagrams


def diagram_sources() -> list[str]:
    """The source of every [mermaid] block in pages and partials."""
    blocks = []
    for adoc in MODULE.rglob("*.adoc"):
        lines = adoc.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if re.match(r"^\[mermaid[,\]]", line) and lines[i + 1] in ("....", "----"):
                end = lines.index(lines[i + 1], i + 2)
                blocks.append("\n".join(lines[i + 2 : end]))
    return blocks


def test_every_mermaid_block_became_an_svg(site: Path) -> None:
    sources = diagram_sources()
    assert len(set(sources)) >= MIN_DIAGRAMS, (
        f"{len(set(sources))} diagrams, want >= {MIN_DIAGRAMS}"
    )
    svgs = {}
    for path in html_files(COMPONENT):
        page = parse(path)
        for src in page.mermaid_imgs:
            svg = (path.parent / src).resolve()
            assert svg.is_file(), f"{path.name}: diagram {src} missing"
            svgs[svg.name] = svg
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"<pre>\s*(flowchart|sequenceDiagram|graph)\b", text), path.name
    assert len(svgs) == len(set(sources)), "one SVG per distinct diagram"
    for name, svg in svgs.items():
        head = svg.read_text(encoding="utf-8")[:2000]
        assert head.startswith("<svg"), name
        assert 'width="100%"' not in head, f"{name}: stretched width"
        assert "<foreignObject" not in svg.read_text(encoding="utf-8"), f"{name}: HTML labels"


# ---------------------------------------------------------------------------- docs rules


def delimited_blocks(text: str, fence: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line == fence:
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def test_no_pasted_code_longer_than_three_lines() -> None:
    # Code longer than three lines must be an include:: of a tagged region of a tested file, or
    # a listing the doc tests run: [source,python] or [source,c] without test=skip
    # (docs/adoc_sybil.py; tests/test_docs.py checks the same rule without building the site).
    # Generated partials are rendered from committed data (tests/test_docs_gen.py checks them).
    bad = []
    for adoc in MODULE.rglob("*.adoc"):
        if GENERATED in adoc.parents:
            continue
        lines = adoc.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line != "----" or sum(1 for ln in lines[:i] if ln == "----") % 2:
                continue  # not an opening fence
            end = lines.index("----", i + 1)
            attrs = next((ln for ln in reversed(lines[:i]) if not ln.startswith(".")), "")
            pasted = [ln for ln in lines[i + 1 : end] if not ln.startswith("include::")]
            tested = re.match(r"^\[source,(python|c)\b", attrs) and "test=skip" not in attrs
            if len(pasted) > MAX_PASTED_LINES and not tested:
                bad.append(f"{adoc.relative_to(MODULE)}: {len(pasted)} pasted lines")
    assert bad == []


def test_explanation_pages_end_with_check_it_yourself() -> None:
    for adoc in sorted((PAGES / "explanation").glob("*.adoc")):
        text = adoc.read_text(encoding="utf-8")
        tail = text[text.rfind("\n== ") :]
        assert tail.startswith("\n== Check it yourself"), f"{adoc.name}: last section is not it"
        assert re.search(r"^\$ pytest tests/test_\w+\.py", tail, flags=re.M), adoc.name


def test_sections_have_explicit_ids() -> None:
    missing = []
    for adoc in PAGES.rglob("*.adoc"):
        lines = adoc.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if re.match(r"^={2,4} ", line) and not re.match(r"^\[#[\w-]+\]$", lines[i - 1]):
                missing.append(f"{adoc.relative_to(PAGES)}: {line}")
    assert missing == []


# ---------------------------------------------------------------------------- provenance

# A number followed by a unit of size, speed or time: a measured figure, unless it comes from a
# generated partial (rendered from a committed results file) or an attribute those define.
MEASURE = re.compile(
    r"(?<![\w.{-])(\d[\d,]*(?:\.\d+)?(?:\s*[–-]\s*\d[\d,]*(?:\.\d+)?)?)\s?"
    r"(tok/s|tokens/s|tokens per second|GB/s|MB/s|GiB|MiB|KiB|GB|MB|kB|KB|ms|µs|ns|s|seconds)\b"
)
# Logit differences are measured too (a count of logits, such as the vocabulary, is not).
LOGIT_GAP = re.compile(r"(?<![\w.{-])\d+\.\d+(?:\s*[–-]\s*\d+\.\d+)?\s?logits\b")
# Constants, not measurements: (page, text) pairs a reader could check with a calculator.
ALLOWED_NUMBERS: set[tuple[str, str]] = set()


def hand_typed_measurements(text: str, where: str) -> list[str]:
    found = []
    in_listing = False
    for n, line in enumerate(text.splitlines(), 1):
        if line == "----":  # listings are code or commands, run by the doc tests
            in_listing = not in_listing
            continue
        if in_listing or line.startswith("//") or line.startswith("include::"):
            continue
        for m in [*MEASURE.finditer(line), *LOGIT_GAP.finditer(line)]:
            if (where, m.group(0)) not in ALLOWED_NUMBERS:
                found.append(f"{where}:{n}: {m.group(0)!r}")
    return found


def test_no_hand_typed_measurements() -> None:
    bad = []
    for adoc in sorted(MODULE.rglob("*.adoc")):
        if GENERATED in adoc.parents:
            continue
        rel = adoc.relative_to(MODULE).as_posix()
        bad += hand_typed_measurements(adoc.read_text(encoding="utf-8"), rel)
    assert bad == [], "type no measured figure into a page; render it with `ggufref docs-gen`"


@pytest.mark.parametrize(
    "line",
    [
        "llama.cpp decodes at 42–45 tokens/s here.",
        "about 4.5 GB/s on one core",
        "a peak RSS of about 490 MB",
        "Load takes about 0.5 s.",
        "prefill 1064 tok/s",
        "a top-2 gap of only 0.03 logits",
    ],
)
def test_the_measurement_scan_catches_typed_figures(line: str) -> None:
    assert hand_typed_measurements(line, "x.adoc") != []


@pytest.mark.parametrize(
    "line",
    [
        "the {token-embd-mb} MB output matrix",
        "Q4_K is `2 + 2 + 12 + 128 = 144` bytes, 4.5 bits per weight",
        "layers 5, 11 and 17 are global",
        "the tokens and the top-5 logits",
        "one row became 262,144 logits",
    ],
)
def test_the_measurement_scan_lets_attributes_and_constants_pass(line: str) -> None:
    assert hand_typed_measurements(line, "x.adoc") == []


def test_home_page_links_to_the_why_page_and_its_callout(site: Path) -> None:
    home = (COMPONENT / "index.html").read_text(encoding="utf-8")
    assert 'href="why.html"' in home
    assert "admonitionblock important" in home
    why = (COMPONENT / "why.html").read_text(encoding="utf-8")
    assert "seed" in why and "tok/s" in why


# ---------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="session")
def browser_check(site: Path) -> dict:
    """tests/site_check.mjs once per session: page checks, screenshots, diagram text sizes."""
    proc = subprocess.run(
        ["node", str(ROOT / "tests" / "site_check.mjs"), str(site), str(SHOTS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"site_check.mjs printed no result:\n{proc.stdout}\n{proc.stderr}"
    return {**json.loads(lines[-1]), "returncode": proc.returncode}


def test_every_diagram_is_legible_at_1280_px(browser_check: dict) -> None:
    diagrams = browser_check["diagrams"]
    assert len({d["svg"] for d in diagrams}) >= MIN_DIAGRAMS, "diagrams were not measured"
    small = [
        f"{d['page']} #{d['id']}: {d['rendered']} px (natural width {d['natural']}, "
        f"shown {d['shown']})"
        for d in diagrams
        if not d["rendered"] >= MIN_DIAGRAM_TEXT_PX
    ]
    assert small == []


def test_a_diagram_opens_full_size_on_click(browser_check: dict) -> None:
    zoom = browser_check["zoom"]
    assert zoom["opened"], "no lightbox after clicking a diagram"
    assert zoom["width"] >= zoom["natural"] - 1, zoom
    assert zoom["closed"], "Escape did not close the lightbox"


def test_search_finds_units_and_recipe_names(browser_check: dict) -> None:
    hits = dict(browser_check["searches"])
    assert hits.pop("zzqqxxnonsense") == 0, "the hit count cannot tell a miss from a hit"
    assert set(hits) >= {"tok/s", "Q4_K_M", "GB/s", "super-block"}
    assert {q: n for q, n in hits.items() if n < 1} == {}


def test_pages_load_in_headless_chromium(browser_check: dict) -> None:
    result = browser_check
    proc_returncode = result["returncode"]
    problems = {r["name"]: r["problems"] for r in result["results"] if r["problems"]}
    assert problems == {}
    assert proc_returncode == 0
    by_name = {r["name"]: r for r in result["results"]}
    assert by_name["index"]["diagrams"] >= 1
    assert by_name["k-quants"]["toc"] >= 5, "the page TOC was not built"
    assert by_name["index"]["searchHits"] >= 1
    for name in ("index", "k-quants", "why", "tool-calling"):
        assert Path(by_name[name]["screenshot"]).stat().st_size > 10_000
    assert by_name["index"]["admonitionLabels"] == ["Important"]


def test_every_tagged_listing_names_its_source_file(site: Path) -> None:
    missing = []
    for adoc in sorted(PAGES.rglob("*.adoc")):
        text = adoc.read_text(encoding="utf-8")
        wanted = re.findall(r"^include::example\$([^\[]+)\[tag=([\w-]+)\]$", text, flags=re.M)
        html = (COMPONENT / adoc.relative_to(PAGES)).with_suffix(".html").read_text("utf-8")
        for path, tag in wanted:
            if f"Source: <code>{path}</code>, tag <code>{tag}</code>" not in html:
                missing.append(f"{adoc.relative_to(PAGES)}: {path} tag {tag}")
    assert missing == []


# ---------------------------------------------------------------------------- failure paths


def test_mermaid_syntax_error_fails_the_build(tmp_path: Path) -> None:
    """A one-page site with a broken diagram: the build must fail, naming the page and the error."""
    for name in ("antora-playbook.yml", "package.json", "package-lock.json"):
        shutil.copy2(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "docker", tmp_path / "docker")
    shutil.copytree(ROOT / "docs" / "ui", tmp_path / "docs" / "ui")
    shutil.copytree(ROOT / "docs" / "lib", tmp_path / "docs" / "lib")
    shutil.copy2(ROOT / "docs" / "antora.yml", tmp_path / "docs" / "antora.yml")
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules")
    pages = tmp_path / "docs" / "modules" / "ROOT" / "pages"
    pages.mkdir(parents=True)
    (pages.parent / "nav.adoc").write_text("* xref:index.adoc[Home]\n", encoding="utf-8")
    broken = "= Broken\n\n[mermaid,id=bad,alt=bad]\n....\nflowchart LR\n  a --> b -->\n....\n"
    (pages / "index.adoc").write_text(broken, encoding="utf-8")
    proc = subprocess.run(
        [str(tmp_path / "docker" / "build-docs.sh")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "docs/modules/ROOT/pages/index.adoc" in out
    assert "Parse error" in out
