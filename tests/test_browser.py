"""The built HTML book in a real headless Chromium, with the network blocked.

Every page must load without console errors, typeset all of its math with the book's own MathJax, request nothing
outside 127.0.0.1, load every image and give each a description, link only to targets that exist, and list every
chapter in its sidebar. At a desktop width (1280 px) and a phone width (390 px), every display equation must show
whole or scroll within its box: one whose content is wider than its box, in a box that hides the overflow, fails.
A screenshot of each page at each width, and the equations' measurements, are kept under `_build/screenshots/`.

The session fixture runs the README's build command first (incremental, so it costs seconds after a build). The
test needs the Debian `chromium` (or any `chromium` on PATH): without one it skips, except under CI, where it fails.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import toc_pages

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
BUILD = [str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "-W", "-n", "--keep-going"]
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


PAGES = [*toc_pages(), "genindex", "search"]


def chromium() -> str:
    """The Chromium executable, or skip (fail under CI) when there is none."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "no Chromium found on PATH (install the Debian package: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def built() -> Path:
    """Build the book with the README's command (incremental: seconds after a build); return `_build/html`."""
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


WAIT_FOR_MATH = """async () => {
  if (!document.querySelector('.math.notranslate')) return 'no math';
  const t0 = Date.now();
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
    if (Date.now() - t0 > 20000) return 'MathJax did not start';
    await new Promise(r => setTimeout(r, 50));
  }
  await MathJax.startup.promise;
  await document.fonts.ready;
  return 'typeset';
}"""

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


@pytest.mark.parametrize("page", PAGES)
def test_page(site: str, browser: object, page: str) -> None:
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
        fits = equations_at_each_width(tab, page)
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
        clipped = [f"{width}: {problem}" for width, fit in fits.items() for problem in fit["problems"]]
        assert not clipped, f"{page}: equations that do not fit: {clipped}"
    finally:
        tab.close()


def equations_at_each_width(tab: object, page: str) -> dict[str, dict]:
    """At each width of WIDTHS: measure the display equations (EQUATION_FIT) and keep a screenshot; save both."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    name = page.replace("/", "__")
    fits = {}
    for label, (width, height) in WIDTHS.items():
        tab.set_viewport_size({"width": width, "height": height})  # type: ignore[attr-defined]
        tab.wait_for_timeout(200)  # type: ignore[attr-defined]
        fits[label] = tab.evaluate(EQUATION_FIT)  # type: ignore[attr-defined]
        suffix = "" if label == "desktop" else f"@{width}"
        tab.screenshot(path=str(SHOTS / f"{name}{suffix}.png"), full_page=True)  # type: ignore[attr-defined]
    tab.set_viewport_size({"width": WIDTHS["desktop"][0], "height": WIDTHS["desktop"][1]})  # type: ignore[attr-defined]
    (SHOTS / f"{name}.equations.json").write_text(json.dumps(fits, indent=1) + "\n")
    return fits


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
