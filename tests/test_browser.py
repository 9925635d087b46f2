"""The built HTML book in a real headless Chromium, with the network blocked.

Every page must load without console errors, typeset all of its math with the book's own MathJax, request nothing
outside 127.0.0.1, load every image and give each a description, link only to targets that exist, and list every
chapter in its sidebar. At a desktop width (1280 px) and a phone width (390 px), with every dropdown and collapsed
cell opened, every display equation must show whole or scroll within its box: one whose content is wider than its box,
in a box that hides the overflow, fails. At both widths no heading (h1-h3) may be wider than the text column, and no
inline formula may be cut by a box that hides its overflow or reach past the text column. A screenshot of each page at
each width (as a reader first sees it, dropdowns closed) and the equations' measurements are kept under
`_build/screenshots/`.

The pages a student studies from (the intro and the chapters, not the reference pages) share two budgets, measured at
1280 px with the page as it opens: the non-empty lines of code-cell input a reader sees (collapsed `hide-input` cells
do not count), at most CODE_LINES_BUDGET; and the code or output blocks (`pre`) that scroll sideways, at most
SIDEWAYS_BUDGET. The numbers of every page are written to `_build/screenshots/pages.json`.

The session fixture runs the README's build command first (incremental, so it costs seconds after a build). With
`VAE_BOOK_SITE` set to a built `html` folder (e.g. one built with `--path-output`), the tests check that folder
instead, build nothing, and keep the screenshots beside it (`<folder>/../screenshots`). The test needs the Debian
`chromium` (or any `chromium` on PATH): without one it skips, except under CI, where it fails.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import chromium, toc_pages

from scripts.pdf import ARGS, WAIT_FOR_MATH  # the PDF edition's Chromium flags and wait for MathJax

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("VAE_BOOK_SITE") or ROOT / "_build" / "html").resolve()
SHOTS = HTML.parent / "screenshots"
BUILD = [str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "-W", "-n", "--keep-going"]
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


PAGES = [*toc_pages(), "genindex", "search"]
# The pages a student studies from share the code budgets; the reference pages (and genindex, search) do not.
REFERENCE_PAGES = {"book/further_reading", "book/reproducibility", "book/references"}
CONTENT_PAGES = [page for page in toc_pages() if page not in REFERENCE_PAGES]
CODE_LINES_BUDGET = 600
SIDEWAYS_BUDGET = 10


@pytest.fixture(scope="session")
def built() -> Path:
    """Build the book with the README's command (incremental: seconds after a build); return `_build/html`.

    With `VAE_BOOK_SITE` set, build nothing and return that folder, which must hold a built book."""
    if os.environ.get("VAE_BOOK_SITE"):
        assert (HTML / "index.html").is_file(), f"VAE_BOOK_SITE={HTML} holds no built book (no index.html)"
        return HTML
    done = subprocess.run(BUILD, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"book build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return HTML


@pytest.fixture(scope="session")
def site(built: Path) -> Iterator[str]:
    """Serve `_build/html` on 127.0.0.1; yield the base URL."""
    chromium()
    handler = functools.partial(QuietHandler, directory=str(HTML))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def browser(site: str) -> Iterator[object]:
    """A fresh headless Chromium profile whose every request outside 127.0.0.1 is aborted and recorded."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []

    def route(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        if urllib.parse.urlsplit(url).hostname == "127.0.0.1":
            route.continue_()  # type: ignore[attr-defined]
        else:
            outside.append(url)
            route.abort()  # type: ignore[attr-defined]

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=chromium(), headless=True, args=ARGS, viewport={"width": 1280, "height": 900}
        )
        context.route("**/*", route)
        context.outside = outside  # type: ignore[attr-defined]
        try:
            yield context
        finally:
            context.close()


MATH_PROBLEMS = """() => {
  const problems = [];
  document.querySelectorAll('.math.notranslate').forEach((el, i) => {
    if (!el.querySelector('mjx-container'))
      problems.push(`untypeset .math #${i}: ${el.textContent.slice(0, 80)}`);
  });
  document.querySelectorAll('mjx-merror, [data-mjx-error]').forEach(el =>
    problems.push(`MathJax error: ${el.getAttribute('data-mjx-error') || el.textContent.slice(0, 80)}`));
  document.querySelectorAll('mjx-container [style*="color: red"]').forEach(el =>
    problems.push(`undefined macro: ${el.textContent}`));
  const clone = document.body.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, textarea, .highlight').forEach(el => el.remove());
  const text = clone.textContent;
  for (const raw of ['$$', '\\\\[', '\\\\(', '\\\\begin{'])
    if (text.includes(raw)) problems.push(`raw TeX left in the page: ${raw}`);
  // a TeX command outside any formula, e.g. a link whose text is a heading's formula, printed as "\\log p"
  clone.querySelectorAll('mjx-container').forEach(el => el.remove());
  const command = clone.textContent.match(/\\\\[a-zA-Z]{2,}[^\\s]{0,30}/);
  if (command) problems.push(`TeX printed as text: ${command[0]}`);
  return problems;
}"""

# Every display equation, measured where it sits. Walking from the typeset formula out to the text column, no box that
# hides its overflow may be narrower (or shorter) than the formula, and the first box that scrolls must reach all of
# it and itself fit in the column; with no box that scrolls, the formula must fit in the column. Rectangles, not
# scrollWidth: a flex row-reverse box such as the theme's `div.math` does not count what it cuts on its right.
EQUATION_FIT = """() => {
  const column = document.querySelector('article.bd-article') || document.querySelector('article');
  const result = {equations: 0, scrolling: 0, widest: 0, problems: []};
  if (!column) return result;
  const col = column.getBoundingClientRect();
  const hides = v => v === 'hidden' || v === 'clip';
  const scrolls = v => v === 'auto' || v === 'scroll';
  const tag = el => `<${el.tagName.toLowerCase()} class="${el.className}">`;
  column.querySelectorAll('mjx-container[display="true"]').forEach(box => {
    result.equations += 1;
    const formula = box.querySelector('mjx-math') || box;
    const what = `${box.closest('[id]') ? '#' + box.closest('[id]').id : ''} ` +
      `${(box.querySelector('mjx-assistive-mml') || box).textContent.trim().slice(0, 60)}`;
    const f = formula.getBoundingClientRect();
    result.widest = Math.max(result.widest, f.width / Math.max(box.clientWidth, 1));
    if (box.scrollWidth > box.clientWidth + 1) result.scrolling += 1;
    let shown = f;
    for (let el = formula.parentElement; el && el !== column.parentElement; el = el.parentElement) {
      const style = getComputedStyle(el);
      const r = el.getBoundingClientRect();
      const left = r.left + el.clientLeft, top = r.top + el.clientTop;
      const right = left + el.clientWidth, bottom = top + el.clientHeight;
      if (scrolls(style.overflowX)) {
        if (f.left < left - 1)
          result.problems.push(`clipped: ${Math.round(left - f.left)} px of formula left of ${tag(el)}, ` +
            `which scrolls only to the right: ${what}`);
        shown = r;
        break;
      }
      if (hides(style.overflowX) && (f.left < left - 1 || f.right > right + 1)) {
        result.problems.push(`clipped: ${Math.round(f.width)} px of formula in a ${el.clientWidth} px ` +
          `${tag(el)} that hides its overflow: ${what}`);
        return;
      }
      if (hides(style.overflowY) && (f.top < top - 2 || f.bottom > bottom + 2)) {
        result.problems.push(`cut vertically: ${Math.round(f.height)} px of formula in a ${el.clientHeight} px ` +
          `${tag(el)}: ${what}`);
        return;
      }
    }
    if (shown.left < col.left - 1 || shown.right > col.right + 1)
      result.problems.push(`sticks out of the ${Math.round(col.width)} px column ` +
        `(${Math.round(shown.left - col.left)} to ${Math.round(shown.right - col.left)} px): ${what}`);
  });
  result.widest = Math.round(result.widest * 100) / 100;
  return result;
}"""

# After a resize the theme's columns slide to their new widths (a CSS transition of about 0.15 s): wait until the text
# column and the page have kept one size for ten frames.
SETTLE = """async () => {
  const column = document.querySelector('article.bd-article') || document.body;
  let last = '', same = 0;
  for (let i = 0; i < 600 && same < 10; i++) {
    await new Promise(r => requestAnimationFrame(r));
    const r = column.getBoundingClientRect();
    const now = `${r.left} ${r.width} ${document.documentElement.clientWidth} ${document.documentElement.scrollHeight}`;
    same = now === last ? same + 1 : 0;
    last = now;
  }
  return same >= 10;
}"""

# Every dropdown (sphinx-design's `details.sd-dropdown`, the exercises' solutions) and every collapsed cell (myst-nb's
# `details.hide`) opened, so that the checks see what they hold; CLOSE_AGAIN closes what OPEN_ALL opened.
OPEN_ALL = """async () => {
  document.querySelectorAll('details:not([open])').forEach(d => { d.open = true; d.dataset.openedByTest = ''; });
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return document.querySelectorAll('[data-opened-by-test]').length;
}"""
CLOSE_AGAIN = """() => document.querySelectorAll('[data-opened-by-test]').forEach(d => {
  d.open = false;
  delete d.dataset.openedByTest;
})"""

# The page as it opens (dropdowns and collapsed cells closed): the non-empty lines of code-cell input a reader sees
# (and, not budgeted, of literal blocks such as `literalinclude` listings), and every shown `pre` (code, output or
# literal block) whose text is wider than its box, so that it scrolls sideways.
CODE_AND_BLOCKS = r"""() => {
  const column = document.querySelector('article.bd-article') || document.querySelector('article');
  const result = {code_lines: 0, code_cells: 0, collapsed_code_lines: 0, listing_lines: 0, sideways: []};
  if (!column) return result;
  const shown = el => !el.closest('details:not([open])') && el.checkVisibility();
  const lines = el => el.textContent.split('\n').filter(line => line.trim());
  column.querySelectorAll('div.cell_input pre').forEach(pre => {
    const n = lines(pre).length;
    if (shown(pre)) { result.code_lines += n; result.code_cells += 1; } else result.collapsed_code_lines += n;
  });
  column.querySelectorAll('pre').forEach(pre => {
    if (!shown(pre)) return;
    if (!pre.closest('div.cell')) result.listing_lines += lines(pre).length;
    if (pre.scrollWidth <= pre.clientWidth + 1) return;
    const kind = pre.closest('div.cell_input') ? 'code' : pre.closest('div.cell_output') ? 'output' : 'literal';
    const longest = lines(pre).reduce((a, b) => (b.length > a.length ? b : a), '');
    const section = pre.closest('section[id]');
    result.sideways.push({kind, section: section ? section.id : '', chars: longest.length,
      hidden_px: pre.scrollWidth - pre.clientWidth, line: longest.trim().slice(0, 100)});
  });
  return result;
}"""

# Headings and inline formulas (run with everything opened). A heading (h1-h3) must fit its box and the text column.
# An inline formula is walked out to the text column like a display equation in EQUATION_FIT: a box that hides its
# overflow must hold it whole, the first box that scrolls must reach all of it, and what shows must lie in the column.
LAYOUT = r"""() => {
  const column = document.querySelector('article.bd-article') || document.querySelector('article');
  const result = {headings: 0, inline_math: 0, problems: []};
  if (!column) return result;
  const col = column.getBoundingClientRect();
  const edge = Math.min(col.right, document.documentElement.clientWidth);
  const hides = v => v === 'hidden' || v === 'clip';
  const scrolls = v => v === 'auto' || v === 'scroll';
  const tag = el => `<${el.tagName.toLowerCase()} class="${el.className}">`;
  column.querySelectorAll('h1, h2, h3').forEach(h => {
    if (!h.checkVisibility()) return;
    result.headings += 1;
    const text = [...h.childNodes].filter(n => !(n.classList && n.classList.contains('headerlink')))
      .map(n => n.textContent).join('').trim();
    const r = h.getBoundingClientRect();
    if (h.scrollWidth > h.clientWidth + 1 || r.right > edge + 1)
      result.problems.push(`heading wider than the column: ${h.scrollWidth} px of ` +
        `<${h.tagName.toLowerCase()}> "${text}" in ${h.clientWidth} px`);
  });
  const tex = new Map();
  const doc = window.MathJax && MathJax.startup && MathJax.startup.document;
  if (doc && doc.math) for (const item of doc.math) tex.set(item.typesetRoot, item.math);
  column.querySelectorAll('mjx-container:not([display="true"])').forEach(box => {
    if (!box.checkVisibility()) return;
    result.inline_math += 1;
    const formula = box.querySelector('mjx-math') || box;
    const f = formula.getBoundingClientRect();
    const section = box.closest('section[id]');
    const source = (tex.get(box) || box.textContent).replace(/\s+/g, ' ').trim();
    const what = `${section ? '#' + section.id : ''} $${source.slice(0, 160)}$`;
    let shown = f;
    for (let el = formula.parentElement; el && el !== column.parentElement; el = el.parentElement) {
      const style = getComputedStyle(el);
      const r = el.getBoundingClientRect();
      const left = r.left + el.clientLeft, right = left + el.clientWidth;
      if (scrolls(style.overflowX)) {
        if (f.left < left - 1) {
          result.problems.push(`inline formula cut: ${Math.round(left - f.left)} px of it left of ${tag(el)}, ` +
            `which scrolls only to the right: ${what}`);
          return;
        }
        shown = r;
        break;
      }
      if (hides(style.overflowX) && (f.left < left - 1 || f.right > right + 1)) {
        result.problems.push(`inline formula cut: ${Math.round(Math.max(f.right - right, left - f.left))} px ` +
          `of its ${Math.round(f.width)} px hidden by ${tag(el)}: ${what}`);
        return;
      }
    }
    if (shown.left < col.left - 1 || shown.right > edge + 1)
      result.problems.push(`inline formula reaches ${Math.round(shown.right - edge)} px past the ` +
        `${Math.round(col.width)} px column: ${what}`);
  });
  return result;
}"""

IMAGES = """async () => {
  const imgs = [...document.images];
  imgs.forEach(img => img.loading = 'eager');
  await Promise.all(imgs.map(img => img.decode().catch(() => null)));
  return imgs.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.getAttribute('src'));
}"""

FIGURES = r"""() => {
  const problems = [];
  document.querySelectorAll('article img').forEach(img => {
    const alt = (img.getAttribute('alt') || '').trim();
    const src = img.getAttribute('src') || '';
    if (!alt || alt === src || /\.(png|jpe?g|svg|gif)$/i.test(alt)) problems.push(`image without alt text: ${src}`);
    if (img.closest('.cell_output') && !img.closest('figure')) problems.push(`output image outside a figure: ${src}`);
  });
  document.querySelectorAll('article figure').forEach(fig => {
    const caption = fig.querySelector('figcaption');
    if (!caption || !caption.textContent.trim()) problems.push(`figure without caption: ${fig.id}`);
    const imgs = [...fig.querySelectorAll('img')];
    if (!imgs.length) problems.push(`figure without an image: ${fig.id}`);
    imgs.forEach(img => {
      const words = (img.getAttribute('alt') || '').trim().split(/\s+/).filter(Boolean).length;
      if (words < 4) problems.push(`figure ${fig.id}: alt text of ${words} words does not describe the image`);
    });
  });
  return problems;
}"""

LINKS = "() => [...document.querySelectorAll('a[href]')].map(a => a.href)"
SIDEBAR = "() => [...document.querySelectorAll('nav.bd-docs-nav a.reference.internal')].map(a => a.href)"


def page_url(site: str, page: str) -> str:
    return urllib.parse.urljoin(site, f"{page}.html")


@functools.cache
def ids_in(path: Path) -> frozenset[str]:
    return frozenset(re.findall(r'\bid="([^"]+)"', path.read_text(errors="replace")))


def broken_links(site: str, links: list[str]) -> list[str]:
    """Internal links whose file is missing under `_build/html`, or whose #anchor is not on the target page."""
    broken = []
    for link in links:
        if not link.startswith(site):
            continue
        parts = urllib.parse.urlsplit(link)
        rel = urllib.parse.unquote(parts.path[len(urllib.parse.urlsplit(site).path) :]) or "index.html"
        target = HTML / rel
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(link)
        elif parts.fragment and target.suffix == ".html" and urllib.parse.unquote(parts.fragment) not in ids_in(target):
            broken.append(link)
    return broken


@pytest.fixture(scope="session")
def measurements() -> dict[str, dict]:
    """What `measure_at_each_width` found on each page visited in this session, by page name."""
    return {}


@pytest.mark.parametrize("page", PAGES)
def test_page(site: str, browser: object, measurements: dict[str, dict], page: str) -> None:
    errors: list[str] = []
    tab = browser.new_page()  # type: ignore[attr-defined]
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        response = tab.goto(page_url(site, page), wait_until="load")
        assert response is not None and response.ok, f"{page}: HTTP {response and response.status}"
        state = tab.evaluate(WAIT_FOR_MATH)
        assert state in ("no math", "typeset"), f"{page}: {state}"
        missing_images = tab.evaluate(IMAGES)
        measurements[page] = measured = measure_at_each_width(tab, page)
        assert not errors, f"{page}: console errors: {errors}"
        problems = tab.evaluate(MATH_PROBLEMS)
        assert not problems, f"{page}: {problems}"
        assert not missing_images, f"{page}: images that did not load: {missing_images}"
        assert not (figures := tab.evaluate(FIGURES)), f"{page}: {figures}"
        assert not browser.outside, f"requests outside 127.0.0.1: {sorted(set(browser.outside))}"  # type: ignore[attr-defined]
        assert not (bad := broken_links(site, tab.evaluate(LINKS))), f"{page}: broken internal links: {bad}"
        if (ROOT / f"{page}.ipynb").exists():
            links = set(tab.evaluate(LINKS))
            for suffix in (".ipynb", ".md"):
                source = urllib.parse.urljoin(site, f"_sources/{page}{suffix}")
                assert source in links, f"{page}: no download link to its {suffix} source"
        sidebar = {link.split("#")[0] for link in tab.evaluate(SIDEBAR)}
        missing = [p for p in toc_pages()[1:] if page_url(site, p) not in sidebar]
        assert not missing, f"{page}: sidebar lacks {missing}"
        clipped = [f"{width}: {problem}" for width, fit in measured["fits"].items() for problem in fit["problems"]]
        assert not clipped, f"{page}: equations that do not fit: {clipped}"
        wide = [f"{width}: {problem}" for width, found in measured["layout"].items() for problem in found["problems"]]
        assert not wide, f"{page}: headings or inline formulas that do not fit: {wide}"
    finally:
        tab.close()


def measure_at_each_width(tab: object, page: str) -> dict[str, dict]:
    """Measure a loaded page; keep its screenshots and the equations' measurements.

    At 1280 px as the page opens, its code and sideways-scrolling blocks (CODE_AND_BLOCKS). At each width of WIDTHS,
    a screenshot as the page opens; then, with every dropdown and collapsed cell open (OPEN_ALL), the display
    equations (EQUATION_FIT) and the headings and inline formulas (LAYOUT); then they are closed again."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    name = page.replace("/", "__")
    measured: dict[str, dict] = {"fits": {}, "layout": {}}
    for label, (width, _) in WIDTHS.items():
        resize(tab, label)
        if label == "desktop":
            measured["code"] = tab.evaluate(CODE_AND_BLOCKS)  # type: ignore[attr-defined]
        suffix = "" if label == "desktop" else f"@{width}"
        tab.screenshot(path=str(SHOTS / f"{name}{suffix}.png"), full_page=True)  # type: ignore[attr-defined]
        tab.evaluate(OPEN_ALL)  # type: ignore[attr-defined]
        measured["fits"][label] = tab.evaluate(EQUATION_FIT)  # type: ignore[attr-defined]
        measured["layout"][label] = tab.evaluate(LAYOUT)  # type: ignore[attr-defined]
        tab.evaluate(CLOSE_AGAIN)  # type: ignore[attr-defined]
    resize(tab, "desktop")
    (SHOTS / f"{name}.equations.json").write_text(json.dumps(measured["fits"], indent=1) + "\n")
    return measured


def resize(tab: object, label: str) -> None:
    """Set the viewport to WIDTHS[label] and wait for the layout to settle (SETTLE)."""
    width, height = WIDTHS[label]
    tab.set_viewport_size({"width": width, "height": height})  # type: ignore[attr-defined]
    assert tab.evaluate(SETTLE), f"the layout did not settle at {width} px"  # type: ignore[attr-defined]


def visit(browser: object, site: str, page: str) -> dict[str, dict]:
    """Load a page, wait for its math and measure it (`measure_at_each_width`), for a test that needs no more."""
    tab = browser.new_page()  # type: ignore[attr-defined]
    try:
        tab.goto(page_url(site, page), wait_until="load")
        assert tab.evaluate(WAIT_FOR_MATH) in ("no math", "typeset"), page
        return measure_at_each_width(tab, page)
    finally:
        tab.close()


def test_code_a_reader_sees_fits_the_budget(site: str, browser: object, measurements: dict[str, dict]) -> None:
    """Over the intro and the chapters, at 1280 px as each page opens: at most CODE_LINES_BUDGET non-empty lines of
    code input shown, and at most SIDEWAYS_BUDGET code or output blocks that scroll sideways. Uses test_page's
    measurements (visiting the pages it did not measure) and writes every measured page's numbers to `pages.json`."""
    for page in CONTENT_PAGES:
        if page not in measurements:
            measurements[page] = visit(browser, site, page)
    pages = {}
    for page, measured in measurements.items():
        code = measured["code"]
        pages[page] = {
            "counted": page in CONTENT_PAGES,
            "code_lines": code["code_lines"],
            "code_cells": code["code_cells"],
            "collapsed_code_lines": code["collapsed_code_lines"],
            "listing_lines": code["listing_lines"],
            "sideways": len(code["sideways"]),
            "sideways_blocks": code["sideways"],
            **{
                f"{width}_problems": measured["fits"][width]["problems"] + measured["layout"][width]["problems"]
                for width in WIDTHS
            },
        }
    lines = sum(pages[page]["code_lines"] for page in CONTENT_PAGES)
    sideways = sum(pages[page]["sideways"] for page in CONTENT_PAGES)
    report = {
        "budgets": {"code_lines": CODE_LINES_BUDGET, "sideways": SIDEWAYS_BUDGET},
        "totals": {"code_lines": lines, "sideways": sideways},
        "pages": {page: pages[page] for page in sorted(pages, key=lambda p: PAGES.index(p) if p in PAGES else 99)},
    }
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "pages.json").write_text(json.dumps(report, indent=1) + "\n")
    table = "\n".join(f"  {p}: {pages[p]['code_lines']} lines, {pages[p]['sideways']} sideways" for p in CONTENT_PAGES)
    assert lines <= CODE_LINES_BUDGET and sideways <= SIDEWAYS_BUDGET, (
        f"{lines} lines of code shown (budget {CODE_LINES_BUDGET}) and {sideways} blocks that scroll sideways "
        f"(budget {SIDEWAYS_BUDGET}) over the intro and the chapters; see {SHOTS / 'pages.json'}:\n{table}"
    )


WIDE = r"""async () => {
  const host = document.querySelector('article.bd-article section') || document.querySelector('article');
  const div = document.createElement('div');
  div.className = 'math notranslate nohighlight';
  div.id = 'a-wide-formula';
  div.textContent = '\\[' + Array.from({length: 60}, (_, i) => `a_{${i}}`).join(' + ') + '\\]';
  host.appendChild(div);
  await MathJax.typesetPromise([div]);
  return div.querySelector('mjx-container') !== null;
}"""


def test_the_fit_check_catches_a_clipped_equation(site: str, browser: object) -> None:
    """A formula wider than a phone scrolls within its box; hide the box's overflow and the check reports it."""
    page = next(p for p in toc_pages() if "q1_3" in p)
    tab = browser.new_page()  # type: ignore[attr-defined]
    try:
        tab.set_viewport_size({"width": WIDTHS["phone"][0], "height": WIDTHS["phone"][1]})
        tab.goto(page_url(site, page), wait_until="load")
        assert tab.evaluate(WAIT_FOR_MATH) == "typeset"
        before = tab.evaluate(EQUATION_FIT)
        assert tab.evaluate(WIDE), "the wide formula was not typeset"
        scrolling = tab.evaluate(EQUATION_FIT)
        assert scrolling["equations"] == before["equations"] + 1 and not scrolling["problems"], scrolling
        assert scrolling["scrolling"] > before["scrolling"] and scrolling["widest"] > 2, scrolling
        for overflow, where in (("hidden", "mjx-container"), ("visible", 'div class="math')):
            # the box itself hides the overflow; or it does not scroll, and the theme's div.math cuts it
            tab.evaluate(
                f"() => {{ document.querySelector('#a-wide-formula mjx-container').style.overflow = '{overflow}'; }}"
            )
            clipped = tab.evaluate(EQUATION_FIT)["problems"]
            assert len(clipped) == 1 and clipped[0].startswith("clipped:") and f"<{where}" in clipped[0], clipped
    finally:
        tab.close()


# Planted at the end of a page's first section: a code cell shown and one collapsed, a listing, an output and a block
# in a closed dropdown too wide for the column, a heading with a word wider than a phone, and one long inline formula
# in each of: a paragraph (the theme's `span.math` cuts what does not fit), a closed dropdown, a bare paragraph
# (nothing cuts it, it reaches past the column) and a box that scrolls (it shows whole).
PLANT = r"""async () => {
  const host = document.querySelector('article.bd-article section') || document.querySelector('article');
  const long = Array.from({length: 40}, (_, i) => `a_{${i}}`).join(' + ');
  const wide = '#'.repeat(300);
  const math = `<span class="math notranslate nohighlight">\\(${long}\\)</span>`;
  const div = document.createElement('div');
  div.id = 'planted';
  div.innerHTML = `
    <div class="cell"><div class="cell_input"><pre>x = 1\n\ny = 2\n  z = 3\n</pre></div></div>
    <div class="cell"><details class="hide above-input"><summary>Show code cell source</summary>
      <div class="cell_input"><pre>a = 1\nb = 2\n</pre></div></details>
      <div class="cell_output"><pre>${wide}</pre></div></div>
    <pre>a listing\nof two lines</pre>
    <details><summary>More</summary><pre>${wide}</pre></details>
    <h2>Reparameterizationreparameterizationreparameterization</h2>
    <p id="in-a-paragraph">In a paragraph ${math}.</p>
    <details class="sd-dropdown" id="in-a-dropdown"><summary>Solution</summary><p>${math}</p></details>
    <p id="bare">\\(${long}\\)</p>
    <div id="scrolls" style="overflow-x: auto"><p>\\(${long}\\)</p></div>`;
  host.appendChild(div);
  await MathJax.typesetPromise([div]);
  return div.querySelectorAll('mjx-container').length;
}"""


def test_the_layout_checks_catch_wide_code_headings_and_cut_formulas(site: str, browser: object) -> None:
    """Planted code, blocks, a heading and inline formulas (PLANT) change the counts and problems they should."""
    page = next(p for p in toc_pages() if "q1_3" in p)
    tab = browser.new_page()  # type: ignore[attr-defined]
    try:
        tab.goto(page_url(site, page), wait_until="load")
        assert tab.evaluate(WAIT_FOR_MATH) == "typeset"
        resize(tab, "desktop")
        code = tab.evaluate(CODE_AND_BLOCKS)
        resize(tab, "phone")
        tab.evaluate(OPEN_ALL)
        layout = tab.evaluate(LAYOUT)
        tab.evaluate(CLOSE_AGAIN)
        resize(tab, "desktop")
        assert tab.evaluate(PLANT) == 4, "the planted formulas were not typeset"

        planted = tab.evaluate(CODE_AND_BLOCKS)
        assert planted["code_lines"] == code["code_lines"] + 3, (code, planted)
        assert planted["code_cells"] == code["code_cells"] + 1, (code, planted)
        assert planted["collapsed_code_lines"] == code["collapsed_code_lines"] + 2, (code, planted)
        assert planted["listing_lines"] == code["listing_lines"] + 2, (code, planted)
        new = planted["sideways"][len(code["sideways"]) :]
        assert [(b["kind"], b["chars"]) for b in new] == [("output", 300)], planted["sideways"]

        resize(tab, "phone")
        assert tab.evaluate(OPEN_ALL) >= 1
        found = tab.evaluate(LAYOUT)
        assert found["headings"] == layout["headings"] + 1 and found["inline_math"] == layout["inline_math"] + 4
        new = [problem for problem in found["problems"] if problem not in layout["problems"]]
        assert len(new) == 4, new
        assert new[0].startswith("heading wider than the column") and "Reparameterization" in new[0], new
        assert all(p.startswith("inline formula cut:") and 'span class="math' in p for p in new[1:3]), new
        assert new[3].startswith("inline formula reaches") and "$a_{0} + a_{1} +" in new[3], new
        tab.evaluate(CLOSE_AGAIN)
        resize(tab, "desktop")
        assert tab.evaluate(CODE_AND_BLOCKS) == planted, "CLOSE_AGAIN did not close what OPEN_ALL opened"
    finally:
        tab.close()


def test_index_redirects_to_the_book(site: str, browser: object) -> None:
    tab = browser.new_page()  # type: ignore[attr-defined]
    try:
        tab.goto(urllib.parse.urljoin(site, "index.html"))
        tab.wait_for_url(page_url(site, toc_pages()[0]), timeout=10000)
    finally:
        tab.close()


def test_every_page_is_checked(site: str) -> None:
    """The pages checked above are all the HTML pages the build made."""
    built = {p.relative_to(HTML).with_suffix("").as_posix() for p in HTML.rglob("*.html")}
    built = {p for p in built if not p.startswith(("_static/", "_sources/", "reports/"))}
    assert built <= {*PAGES, "index"}, f"pages not checked: {sorted(built - {*PAGES, 'index'})}"


REMOTE = re.compile(
    r"""<script[^>]*\ssrc=["']https?://|<link[^>]*\shref=["']https?://[^>]*>|url\(\s*["']?https?://|@import\s+["']?https?://""",
    re.IGNORECASE,
)


def test_no_remote_assets_in_the_build(built: Path) -> None:
    """No page or stylesheet names a script, style or font on another host (the browser test also watches requests)."""
    offenders = []
    for path in [*built.rglob("*.html"), *built.rglob("*.css")]:
        for match in REMOTE.finditer(path.read_text(errors="replace")):
            tag = match.group(0)
            if "<link" in tag.lower() and not re.search(r"rel=[\"'](stylesheet|preload|icon|modulepreload)", tag):
                continue
            offenders.append(f"{path.relative_to(built)}: {tag[:120]}")
    assert not offenders, "remote assets:\n" + "\n".join(offenders[:20])
