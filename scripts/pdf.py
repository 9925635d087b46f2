"""Print the whole book to one PDF, with the headless Chromium the browser test uses.

Usage: .venv/bin/python scripts/pdf.py [--out _build/pdf/book.pdf] [--no-build]

The route is that of Jupyter Book's `pdfhtml` builder, without its download of a browser: build the single-page HTML
(`jupyter-book build . --builder singlehtml`, into `_build/singlehtml/`), open it from disk in the Debian `chromium`
driven by Playwright (no request leaves the machine), wait until MathJax has typeset every equation and every image
has loaded, and print it on A4 pages with page numbers. Before printing, the page is arranged as a book: a title page
and a table of contents with page numbers, then the introduction, then each part of `_toc.yml` with its chapters
(the single-page HTML inlines the chapters where the introduction lists them). `book/_static/print.css` styles the
pages: no navigation, buttons or search, code and outputs wrapped, figures and tables within the column, exercises'
solutions open, collapsed input cells left out. A table or display equation wider than the column is scaled down to
fit it. The contents' page numbers are read from a first printout's links, then the book is printed again with them,
and the outline (the PDF's bookmarks: parts, chapters, sections) gets the headings' own text.

Before printing, the script fails when an equation is left untypeset, an image or a file of the build is missing, or
the page asks for anything outside the build. What would still stick out of the column, and TeX left in the text
outside code (a cross-reference to a heading with math shows its source), is reported as a warning; the report, with
the page count and timings, is written as `book.json` beside the PDF. The PDF is written to a temporary file beside
its destination and renamed into place.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import yaml

from vae_core.io import atomic_write, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
SINGLEHTML = ROOT / "_build" / "singlehtml"
DEFAULT_OUT = ROOT / "_build" / "pdf" / "book.pdf"
PRINT_CSS = ROOT / "book" / "_static" / "print.css"
FALLBACK_CHROMIUM = Path("/usr/bin/chromium")  # where Debian puts it, should PATH lack /usr/bin
BUILD = ["build", ".", "--builder", "singlehtml", "-W", "-n", "--keep-going"]
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A4 with 16 mm margins at the sides and room for the page number below; the layout is measured at the same width.
MARGIN_MM = {"top": 16, "bottom": 20, "left": 16, "right": 16}
A4_MM = (210, 297)
PX_PER_MM = 96 / 25.4
COLUMN_PX = round((A4_MM[0] - MARGIN_MM["left"] - MARGIN_MM["right"]) * PX_PER_MM)
PAGE_PX = round((A4_MM[1] - MARGIN_MM["top"] - MARGIN_MM["bottom"]) * PX_PER_MM)
FOOTER = (
    '<div style="width: 100%; font-size: 9px; color: #555; text-align: center; font-family: sans-serif;">'
    '<span class="pageNumber"></span> / <span class="totalPages"></span></div>'
)
TIMEOUT_MS = 120_000
# pypdf warns that Chromium's trailer undercounts the objects; the file reads fine.
logging.getLogger("pypdf").setLevel(logging.ERROR)
# The theme's search asks for the index that the singlehtml builder does not write; search is not printed.
NOT_BUILT = ("/searchindex.js",)


class PdfError(Exception):
    """A step of making the PDF failed; the message says which and what to do."""


def chromium() -> str:
    """The Chromium executable (the Debian package's `chromium`), or a PdfError saying how to install it."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if FALLBACK_CHROMIUM.is_file():
        return str(FALLBACK_CHROMIUM)
    raise PdfError("no Chromium found on PATH: install the Debian package with `apt-get install chromium`")


def build_singlehtml() -> None:
    """Build the single-page HTML with the book's checks (warnings as errors, nitpicky); incremental after a build."""
    jb = Path(sys.executable).parent / "jupyter-book"
    command = [str(jb) if jb.exists() else "jupyter-book", *BUILD]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise PdfError("jupyter-book is not installed: .venv/bin/pip install -r requirements.txt") from exc
    if done.returncode != 0:
        log = (done.stdout + done.stderr)[-6000:]
        raise PdfError(f"the single-page build failed ({' '.join(command)}):\n{log}")


def book_settings() -> dict:
    """The book's title and author (`_config.yml`), its root page and its parts with their pages (`_toc.yml`)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    parts = toc.get("parts") or [{"caption": "", "chapters": toc.get("chapters", [])}]
    return {
        "title": config.get("title", ""),
        "author": config.get("author", ""),
        "root": toc["root"],
        "toc": [{"caption": p.get("caption", ""), "pages": [c["file"] for c in p["chapters"]]} for p in parts],
    }


def entry_page(root: str) -> tuple[Path, Path]:
    """The single-page HTML, copied to the top of `_build/singlehtml/`; return (copy, original).

    Sphinx's singlehtml builder writes the root page at `book/intro.html` but names its assets and links as if the
    page sat at the top of the output (`_static/...`, `_images/...`), so it is opened from a copy there."""
    page = SINGLEHTML / f"{root}.html"
    if not page.is_file():
        raise PdfError(f"no single-page HTML at {page}: run scripts/pdf.py without --no-build")
    copy = SINGLEHTML / "_pdf.html"
    atomic_write_text(copy, page.read_text())
    copy.chmod(0o644)
    return copy, page


WAIT_FOR_MATH = """async () => {
  if (!document.querySelector('.math.notranslate')) return 'no math';
  const t0 = Date.now();
  while (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) {
    if (Date.now() - t0 > 60000) return 'MathJax did not start';
    await new Promise(r => setTimeout(r, 50));
  }
  await MathJax.startup.promise;
  await document.fonts.ready;
  return 'typeset';
}"""

IMAGES = """async () => {
  const imgs = [...document.images];
  imgs.forEach(img => img.loading = 'eager');
  await Promise.all(imgs.map(img => img.decode().catch(() => null)));
  return {count: imgs.length,
          figures: new Set([...document.querySelectorAll('article img')].map(img => img.src)).size,
          missing: imgs.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.getAttribute('src'))};
}"""

MATH_PROBLEMS = r"""() => {
  const problems = [];
  document.querySelectorAll('.math.notranslate').forEach((el, i) => {
    if (!el.querySelector('mjx-container'))
      problems.push(`untypeset equation #${i}: ${el.textContent.slice(0, 80)}`);
  });
  document.querySelectorAll('mjx-merror, [data-mjx-error]').forEach(el =>
    problems.push(`MathJax error: ${el.getAttribute('data-mjx-error') || el.textContent.slice(0, 80)}`));
  const clone = document.querySelector('article').cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, textarea, .highlight').forEach(el => el.remove());
  const text = clone.textContent;
  for (const raw of ['$$', '\\[', '\\(', '\\begin{'])
    if (text.includes(raw)) problems.push(`raw TeX left in the page: ${raw}`);
  return problems;
}"""

# TeX commands in the text outside code and typeset math: a cross-reference to a heading with math in it shows the
# heading's TeX source, which MathJax does not see (it has no delimiters).
RAW_TEX = r"""() => {
  const found = [];
  const walker = document.createTreeWalker(document.querySelector('article'), NodeFilter.SHOW_TEXT, {
    acceptNode: node => node.parentElement.closest('pre, code, .highlight, mjx-container, script, style, .math')
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const match = node.textContent.match(/\\[A-Za-z]+/);
    if (match) {
      const section = node.parentElement.closest('section[id]');
      found.push(`${match[0]} in "${node.textContent.trim().slice(0, 80)}"${section ? ' in #' + section.id : ''}`);
    }
  }
  return found;
}"""

# Arrange the single page as a book. The chapters come inlined where the introduction lists them (its
# `tableofcontents`), one `.toctree-wrapper` per part of `_toc.yml`, each chapter a `span#document-<page>` and its
# `section`, with headings two levels down (h3 for a chapter's title). They move behind the introduction, each part
# under its caption, with headings one level up (a part is h1, a chapter h2), so the PDF's outline reads part,
# chapter, section. A title page and the contents (the parts of `_toc.yml`, each chapter titled by its first heading)
# open the book; the same contents stand where the introduction listed the chapters.
ARRANGE = r"""({title, author, original, toc}) => {
  const article = document.querySelector('article.bd-article') || document.querySelector('article');
  const problems = [];
  document.documentElement.dataset.theme = 'light';
  document.documentElement.dataset.mode = 'light';
  document.title = title;

  // Links into the page itself become fragments (the singlehtml names the page as `book/intro.html#...`), and a
  // link to a chapter's `#document-<page>` marker goes to the chapter's section, where its page starts.
  const sectionOf = {};
  article.querySelectorAll('span[id^="document-"]').forEach(span => {
    const section = span.nextElementSibling;
    if (section && section.tagName === 'SECTION' && section.id) sectionOf[span.id] = section.id;
  });
  document.querySelectorAll('a[href]').forEach(a => {
    const url = new URL(a.getAttribute('href'), location.href);
    if (url.protocol !== 'file:') return;
    const page = url.href.split('#')[0];
    if (page !== original && page !== location.href.split('#')[0]) return;
    let id = decodeURIComponent(url.hash.slice(1));
    if (sectionOf[id]) id = sectionOf[id];
    a.setAttribute('href', '#' + (id || ''));
  });

  // Exercises' solutions print open.
  document.querySelectorAll('details.sd-dropdown').forEach(d => { d.open = true; });

  // The parts of `_toc.yml` and their chapters, titled by their first heading.
  const parts = toc.map(part => ({
    caption: part.caption,
    chapters: part.pages.map(name => {
      const id = `document-${name}`;
      const section = sectionOf[id] ? document.getElementById(sectionOf[id]) : null;
      const heading = section ? section.querySelector('h1, h2, h3, h4, h5, h6') : null;
      if (!heading) problems.push(`no chapter ${name} in the page (is the build older than _toc.yml?)`);
      return {id, title: heading ? heading.textContent.replace(/#$/, '').trim() : name};
    }),
  }));

  const intro = article.querySelector(':scope > section') || article.querySelector('section');
  const introTitle = intro ? intro.querySelector('h1') : null;
  if (!intro || !introTitle) problems.push('no introduction (the first section with an h1)');
  else intro.classList.add('pdf-intro');

  const retag = (el, level) => {
    const h = document.createElement('h' + level);
    for (const attr of el.attributes) h.setAttribute(attr.name, attr.value);
    while (el.firstChild) h.appendChild(el.firstChild);
    el.replaceWith(h);
    return h;
  };

  const wrappers = [...article.querySelectorAll('.toctree-wrapper')]
    .filter(w => w.querySelector(':scope > span[id^="document-"]'));
  const firstWrapper = wrappers[0];
  const listPlace = document.createElement('div');
  listPlace.className = 'pdf-toc-inline';
  if (firstWrapper) firstWrapper.before(listPlace);
  let anchor = intro;
  wrappers.forEach((wrapper, i) => {
    const first = wrapper.querySelector(':scope > span[id^="document-"]').id;
    const part = parts.find(p => p.chapters.some(c => c.id === first || c.id === sectionOf[first]));
    if (!part) problems.push(`no part of the contents holds ${first}`);
    const section = document.createElement('section');
    section.className = 'pdf-part';
    section.id = `pdf-part-${i + 1}`;
    const heading = document.createElement('h1');
    heading.className = 'pdf-part-title';
    heading.textContent = part ? part.caption : '';
    section.appendChild(heading);
    section.appendChild(wrapper);
    if (part) part.id = section.id;
    anchor.after(section);
    anchor = section;
    wrapper.querySelectorAll('h3, h4, h5, h6').forEach(h => retag(h, Number(h.tagName[1]) - 1));
    wrapper.querySelectorAll(':scope > span[id^="document-"] + section').forEach(s => s.classList.add('pdf-chapter'));
  });
  if (wrappers.length !== parts.length)
    problems.push(`${wrappers.length} groups of chapters in the page, ${parts.length} parts in _toc.yml`);

  const contentsList = () => {
    const ol = document.createElement('ol');
    ol.className = 'pdf-toc';
    const entry = (id, text) => {
      const li = document.createElement('li');
      li.className = 'pdf-toc-entry';
      const a = document.createElement('a');
      a.href = '#' + id;
      const t = document.createElement('span');
      t.className = 'pdf-toc-title';
      t.textContent = text;
      const leader = document.createElement('span');
      leader.className = 'pdf-toc-leader';
      const page = document.createElement('span');
      page.className = 'pdf-toc-page';
      page.dataset.target = id;
      a.append(t, leader, page);
      li.appendChild(a);
      return li;
    };
    if (intro && introTitle) ol.appendChild(entry(intro.id, introTitle.textContent.replace(/#$/, '').trim()));
    parts.forEach(part => {
      const li = document.createElement('li');
      li.className = 'pdf-toc-part';
      const caption = document.createElement('span');
      caption.textContent = part.caption;
      const inner = document.createElement('ol');
      part.chapters.forEach(c => inner.appendChild(entry(sectionOf[c.id] || c.id, c.title)));
      li.append(caption, inner);
      ol.appendChild(li);
    });
    return ol;
  };

  const front = document.createElement('div');
  front.className = 'pdf-front';
  const cover = document.createElement('section');
  cover.className = 'pdf-cover';
  const coverTitle = document.createElement('p');
  coverTitle.className = 'pdf-cover-title';
  coverTitle.textContent = title;
  const coverAuthor = document.createElement('p');
  coverAuthor.className = 'pdf-cover-author';
  coverAuthor.textContent = author;
  cover.append(coverTitle, coverAuthor);
  const contents = document.createElement('nav');
  contents.className = 'pdf-contents';
  contents.id = 'pdf-contents';
  const contentsTitle = document.createElement('h1');
  contentsTitle.textContent = 'Contents';
  contents.append(contentsTitle, contentsList());
  front.append(cover, contents);
  article.prepend(front);
  listPlace.appendChild(contentsList());

  const targets = [...new Set([...document.querySelectorAll('.pdf-toc-page')].map(s => s.dataset.target))];
  targets.forEach(id => { if (!document.getElementById(id)) problems.push(`contents entry without target: ${id}`); });
  return {problems, parts: parts.map(p => ({caption: p.caption, chapters: p.chapters.map(c => c.title)})), targets};
}"""

# Display equations and tables wider than their box are scaled down to fit it (measured with print styles at the
# page's width); a table's text and math shrink together, to no less than half their size.
SHRINK_WIDE = """() => {
  let shrunk = 0;
  document.querySelectorAll('article table').forEach(table => {
    const room = (table.parentElement || table).clientWidth;
    for (let i = 0; i < 4 && room > 0 && table.getBoundingClientRect().width > room + 0.5; i++) {
      const size = parseFloat(table.style.fontSize) || 100;
      const next = Math.max(50, Math.floor(size * room / table.getBoundingClientRect().width * 0.98 * 10) / 10);
      if (next >= size) break;
      table.style.fontSize = `${next}%`;
      if (i === 0) shrunk += 1;
    }
  });
  document.querySelectorAll('article mjx-container[display="true"]').forEach(box => {
    const formula = box.querySelector('mjx-math') || box;
    const room = (box.parentElement || box).clientWidth;
    const width = formula.getBoundingClientRect().width;
    if (room > 0 && width > room) {
      const size = parseFloat(box.style.fontSize) || 100;
      box.style.fontSize = `${Math.floor(size * room / width * 0.98 * 10) / 10}%`;
      shrunk += 1;
    }
  });
  return shrunk;
}"""

# Blocks of code or output shorter than a third of a page are kept whole (print.css: `.pdf-keep`).
KEEP_SHORT_BLOCKS = """(limit) => {
  let kept = 0;
  const blocks = 'article .cell_input, article .cell_output, article div[class*="highlight-"]';
  document.querySelectorAll(blocks).forEach(el => {
    const h = el.getBoundingClientRect().height;
    if (h > 0 && h < limit) { el.classList.add('pdf-keep'); kept += 1; }
  });
  return kept;
}"""

# Whatever still sticks out of the text column, or hides part of its content in a scroll box, at the page's width.
OVERFLOW = """() => {
  const article = document.querySelector('article.bd-article') || document.querySelector('article');
  const col = article.getBoundingClientRect();
  const problems = [];
  const name = el => `<${el.tagName.toLowerCase()}${el.id ? ' id=' + el.id : ''} class="${el.className}">`;
  const where = el => { const s = el.closest('section[id]'); return s ? ` in #${s.id}` : ''; };
  const selector = 'pre, table, img, figure, mjx-container[display="true"], .cell_output, .cell_input, div.math';
  article.querySelectorAll(selector).forEach(el => {
    if (!el.getClientRects().length) return;  // not displayed (a collapsed input cell)
    const r = el.getBoundingClientRect();
    if (r.right > col.right + 1 || r.left < col.left - 1)
      problems.push(`${name(el)}${where(el)} sticks out of the ${Math.round(col.width)} px column ` +
        `(${Math.round(r.left - col.left)} to ${Math.round(r.right - col.left)} px)`);
    else if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible')
      problems.push(`${name(el)}${where(el)} hides ${el.scrollWidth - el.clientWidth} px of its content`);
  });
  return problems;
}"""

FILL_PAGES = """(pages) => {
  document.querySelectorAll('.pdf-toc-page').forEach(span => {
    const page = pages[span.dataset.target];
    span.textContent = page === undefined ? '' : String(page);
  });
}"""


HEADINGS = """() => [...document.querySelectorAll('article :is(h1, h2, h3, h4, h5, h6)')]
  .filter(h => h.getClientRects().length)
  .map(h => h.textContent.replace(/#$/, '').replace(/\\s+/g, ' ').trim())"""


def pdf_options() -> dict:
    """Chromium's print settings: A4, the margins, backgrounds, a page-number footer and the headings' outline."""
    return {
        "format": "A4",
        "margin": {side: f"{mm}mm" for side, mm in MARGIN_MM.items()},
        "print_background": True,
        "display_header_footer": True,
        "header_template": "<span></span>",
        "footer_template": FOOTER,
        "outline": True,
        "tagged": True,
    }


def target_pages(pdf: bytes, targets: list[str]) -> dict[str, int]:
    """The page (from 1) on which each of `targets` (element ids the contents link to) starts in `pdf`."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(pdf))
    found = {}
    for name, dest in reader.named_destinations.items():
        key = urllib.parse.unquote(str(name).lstrip("/"))
        if key in targets:
            found[key] = reader.get_destination_page_number(dest) + 1
    return found


def squash(text: str) -> str:
    return "".join(text.split()).casefold()


def retitle_outline(pdf: bytes, headings: list[str]) -> tuple[bytes, int]:
    """Give the PDF's outline (bookmarks) the headings' own text; return the PDF and the number of titles fixed.

    Chromium names an outline entry after the text it laid out for the heading; for a heading right after a forced
    page break (every chapter's title) it repeats the first line and drops the space at a line break ("1.2 Why...1.2
    Why..."). Each entry is matched, in order, to the heading whose text it ends with."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import NameObject, TextStringObject

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    outlines = writer.root_object.get("/Outlines")
    if outlines is None:
        return pdf, 0
    wanted = [(h, squash(h)) for h in headings]
    position = 0
    fixed = 0

    def walk(item) -> None:
        nonlocal position, fixed
        while item is not None:
            item = item.get_object()
            title = squash(str(item.get("/Title", "")))
            for k in range(position, len(wanted)):
                text, key = wanted[k]
                if key and title.endswith(key) and key.startswith(title[: len(title) - len(key)]):
                    if str(item["/Title"]) != text:
                        item[NameObject("/Title")] = TextStringObject(text)
                        fixed += 1
                    position = k + 1
                    break
            if "/First" in item:
                walk(item["/First"])
            item = item.get("/Next")

    walk(outlines.get("/First"))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue(), fixed


def open_book(page, url: str, outside: list[str], errors: list[str]) -> dict:
    """Load the page; wait for MathJax and the images; fail on anything missing. Return the images' counts."""
    page.goto(url, wait_until="load")
    state = page.evaluate(WAIT_FOR_MATH)
    if state not in ("typeset", "no math"):
        raise PdfError(f"equations were not typeset: {state}")
    images = page.evaluate(IMAGES)
    problems = [f"image did not load: {src}" for src in images["missing"]]
    problems += page.evaluate(MATH_PROBLEMS)
    problems += [f"missing or failed: {e}" for e in errors]
    problems += [f"asked for something outside the build: {u}" for u in sorted(set(outside))]
    if problems:
        raise PdfError("the page is not ready to print:\n  " + "\n  ".join(problems[:30]))
    return {"images": images["count"], "figures": images["figures"]}


def print_book(page, targets: list[str]) -> tuple[bytes, dict[str, int], int]:
    """Print twice: once to find the page of each contents entry, then with those numbers filled in.

    Return the PDF, the entries' pages and the number of outline titles fixed."""
    first = page.pdf(**pdf_options())
    pages = target_pages(first, targets)
    if missing := [t for t in targets if t not in pages]:
        raise PdfError(f"the printout has no destination for the contents' entries {missing}")
    page.evaluate(FILL_PAGES, pages)
    final = page.pdf(**pdf_options())
    if (again := target_pages(final, targets)) != pages:
        moved = {t: (pages[t], again.get(t)) for t in pages if again.get(t) != pages[t]}
        raise PdfError(f"the contents' page numbers moved when they were filled in: {moved}")
    final, fixed = retitle_outline(final, page.evaluate(HEADINGS))
    return final, pages, fixed


def render(out: Path, settings: dict, log) -> dict:
    """Open the single-page HTML in Chromium, check and arrange it, print it to `out`; return a report."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright
    from pypdf import PdfReader

    executable = chromium()
    copy, original = entry_page(settings["root"])
    report: dict = {}
    errors: list[str] = []
    outside: list[str] = []
    t0 = time.monotonic()

    def route(route) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    def failed(request) -> None:
        if not request.url.endswith(NOT_BUILT):
            errors.append(f"{request.url}: {request.failure}")

    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=executable, headless=True, args=ARGS)
        except PlaywrightError as exc:
            raise PdfError(f"Chromium ({executable}) did not start: {exc}") from exc
        try:
            context = browser.new_context(viewport={"width": COLUMN_PX, "height": PAGE_PX}, color_scheme="light")
            context.set_default_timeout(TIMEOUT_MS)
            context.route("**/*", route)
            page = context.new_page()
            page.on("requestfailed", failed)
            page.on("pageerror", lambda exc: errors.append(f"script error: {exc}"))
            report |= open_book(page, copy.as_uri(), outside, errors)
            report["equations"] = page.evaluate("() => document.querySelectorAll('article mjx-container').length")
            arranged = page.evaluate(ARRANGE, {**settings, "original": original.as_uri()})
            if arranged["problems"]:
                raise PdfError("could not arrange the book:\n  " + "\n  ".join(arranged["problems"]))
            report["parts"] = arranged["parts"]
            page.add_style_tag(content=PRINT_CSS.read_text())
            page.emulate_media(media="print")
            page.evaluate("() => document.fonts.ready")
            report["scaled_down"] = page.evaluate(SHRINK_WIDE)
            report["kept_whole"] = page.evaluate(KEEP_SHORT_BLOCKS, PAGE_PX / 3)
            report["overflow"] = page.evaluate(OVERFLOW)
            report["raw_tex"] = page.evaluate(RAW_TEX)
            for problem in report["overflow"]:
                log(f"warning: {problem}")
            for problem in report["raw_tex"]:
                log(f"warning: TeX source left in the text: {problem}")
            t1 = time.monotonic()
            report["load_seconds"] = round(t1 - t0, 1)
            final, pages, report["outline_titles_fixed"] = print_book(page, arranged["targets"])
            report["print_seconds"] = round(time.monotonic() - t1, 1)
        except PlaywrightError as exc:
            raise PdfError(f"Chromium failed: {exc}") from exc
        finally:
            browser.close()

    report["pages"] = len(PdfReader(io.BytesIO(final)).pages)
    report["contents"] = {t: pages[t] for t in arranged["targets"]}
    atomic_write(out, lambda tmp: tmp.write_bytes(final))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the PDF to write (default: %(default)s)")
    parser.add_argument(
        "--no-build", action="store_true", help="print the existing _build/singlehtml/ without building it first"
    )
    args = parser.parse_args(argv)
    out = args.out.resolve()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    start = time.monotonic()
    try:
        chromium()
        if not args.no_build:
            log("building the single-page HTML (jupyter-book build . --builder singlehtml) ...")
            build_singlehtml()
        report = {"build_seconds": round(time.monotonic() - start, 1)}
        log("printing with Chromium ...")
        report |= render(out, book_settings(), log)
    except PdfError as exc:
        log(f"error: {exc}")
        return 1
    report["seconds"] = round(time.monotonic() - start, 1)
    atomic_write_text(out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    log(f"wrote {out} ({report['pages']} pages) in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
