"""The PDF edition: `scripts/pdf.py` prints Jupyter Book's single-page HTML with the headless Chromium.

The session fixture runs the README's command (into a temporary folder), then the tests read the PDF with pypdf:
every chapter of `_toc.yml` is in it, titled as its source's first `# ` heading, listed in the contents with the page
it starts on, and in the outline (bookmarks); every page carries its number; no TeX source reaches the text outside
the printed code (MathJax typeset every equation); the page count is near the one measured; nothing sticks out of
the text column. Like `tests/test_browser.py`, the tests need the Debian `chromium`: without it they skip, except
under CI, where they fail.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from contextlib import redirect_stderr
from pathlib import Path

import pytest
from helpers import chromium, toc_pages, toc_parts

from scripts import pdf as script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "pdf.py"
# Measured: 143 to 148 A4 pages (as chapters changed) for the book of 17 pages in _toc.yml; a chapter adds 5 to 20.
MEASURED_PAGES = 145
PAGE_RANGE = (int(0.7 * MEASURED_PAGES), int(1.5 * MEASURED_PAGES))
# TeX that MathJax turns into glyphs: in the PDF's text it can only come from printed code.
TEX = re.compile(
    r"\$\$|\\\(|\\\)|\\\[|\\\]|\\(?:mathcal|mathbb|mathrm|operatorname|frac|begin|end|sum|prod|int|left|right|sqrt"
    r"|mid|log|exp|nabla|partial|mu|sigma|phi|theta|epsilon|varepsilon|alpha|beta|lambda|cdot|le|ge|approx|text)\b"
)


def plain(text: str) -> str:
    """Text without whitespace, in one case, with straight quotes (Sphinx prints ' as ’)."""
    text = text.translate(str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"'}))
    return "".join(text.split()).casefold()


def title_of(page: str) -> str:
    """The first `# ` heading of a page of `_toc.yml`: its jupytext `.md` (or Markdown) source, else its notebook."""
    md = ROOT / f"{page}.md"
    if md.exists():
        lines = md.read_text().splitlines()
    else:
        notebook = json.loads((ROOT / f"{page}.ipynb").read_text())
        lines = [
            line.rstrip("\n")
            for cell in notebook["cells"]
            if cell["cell_type"] == "markdown"
            for line in cell["source"]
        ]
    in_code = False
    for line in lines:
        if line.startswith(("```", "~~~")):
            in_code = not in_code
        elif not in_code and line.startswith("# "):
            return line[2:].strip()
    raise AssertionError(f"{page} has no '# ' title")


def printed_code() -> str:
    """The code cells of every page's source, squeezed by `plain` (the PDF may wrap a long line)."""
    code = []
    for page in toc_pages():
        md = ROOT / f"{page}.md"
        if md.exists():
            code += re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", md.read_text(), flags=re.S | re.M)
    return plain("\n".join(code))


@pytest.fixture(scope="session")
def book(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The README's PDF command, run once per session into a temporary folder: the PDF's pages' text, its outline
    (title, page, depth) and the script's report."""
    chromium()
    from pypdf import PdfReader

    out = tmp_path_factory.mktemp("pdf") / "book.pdf"
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"scripts/pdf.py failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    reader = PdfReader(out)
    outline: list[tuple[str, int, int]] = []

    def walk(items: list, depth: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, depth + 1)
            else:
                outline.append((str(item.title), reader.get_destination_page_number(item) + 1, depth))

    walk(reader.outline, 0)
    return {
        "path": out,
        "texts": [page.extract_text() for page in reader.pages],
        "outline": outline,
        "report": json.loads(out.with_suffix(".json").read_text()),
        "images": sum(
            1
            for page in reader.pages
            for xobject in (page.get("/Resources", {}).get("/XObject", {}) or {}).values()
            if xobject.get_object().get("/Subtype") == "/Image"
        ),
    }


def test_every_chapter_is_in_the_contents_and_the_outline(book: dict) -> None:
    """Each page of `_toc.yml` starts, under its title, on the page the contents give it; the outline names it."""
    texts = book["texts"]
    contents = plain(texts[0] + texts[1])
    assert "contents" in contents[:200], "no contents at the start"
    chapters = {plain(title): page for title, page, depth in book["outline"] if depth <= 1}
    for page in toc_pages():
        title = title_of(page)
        assert plain(title) in chapters, f"{page}: no outline entry {title!r} in {[t for t, _, _ in book['outline']]}"
        start = chapters[plain(title)]
        assert plain(title) in plain(texts[start - 1]), f"{page}: page {start} does not show {title!r}"
        assert plain(title) + str(start) in contents, f"{page}: the contents do not list {title!r} on page {start}"
    for caption, _ in toc_parts()[1:]:
        assert plain(caption) in contents, f"the contents lack the part {caption!r}"
        assert (caption, 0) in {(title, depth) for title, _, depth in book["outline"]}, f"no outline entry {caption}"


def test_every_chapter_title_is_in_the_text(book: dict) -> None:
    text = plain("\n".join(book["texts"]))
    missing = [title_of(page) for page in toc_pages() if plain(title_of(page)) not in text]
    assert not missing, f"chapter titles missing from the PDF: {missing}"


def test_page_count_is_near_the_measured_one(book: dict) -> None:
    pages = len(book["texts"])
    assert PAGE_RANGE[0] <= pages <= PAGE_RANGE[1], f"{pages} pages, expected {PAGE_RANGE} (measured {MEASURED_PAGES})"


def test_every_page_is_numbered(book: dict) -> None:
    n = len(book["texts"])
    unnumbered = [i for i, text in enumerate(book["texts"], 1) if not re.search(rf"(?<!\d){i} / {n}(?!\d)", text)]
    assert not unnumbered, f"pages without 'N / {n}' in the footer: {unnumbered[:20]}"


def test_equations_are_typeset(book: dict) -> None:
    """MathJax typeset the equations: no TeX in the text, except where the printed code itself holds TeX."""
    assert book["report"]["equations"] > 100, book["report"]["equations"]
    code = printed_code()
    leaks = [
        f"page {i}: {line.strip()[:100]}"
        for i, text in enumerate(book["texts"], 1)
        for line in text.splitlines()
        if TEX.search(line) and plain(line) not in code
    ]
    assert not leaks, "TeX source in the PDF's text:\n" + "\n".join(leaks[:20])
    assert book["report"]["raw_tex"] == [], book["report"]["raw_tex"]


def test_figures_are_in_place_and_nothing_sticks_out(book: dict) -> None:
    report = book["report"]
    assert report["images"] > 10 and book["images"] >= report["figures"], (report["images"], book["images"])
    assert report["overflow"] == [], report["overflow"]


def test_the_tex_check_catches_leaked_tex() -> None:
    """The pattern the equation test uses finds raw TeX, and code does not hide prose."""
    assert TEX.search(r"the prior $$p(z) = \mathcal{N}(0, I)$$")
    assert TEX.search(r"where \(\sigma\) is")
    assert not TEX.search("a σ of 0.5, a mean μ and p(x | z) ≈ 0.1")
    assert plain(r"ax.set_ylabel(r'$\mathcal{L}_K$')") in plain(r"ax.set_ylabel(r'$\mathcal{L}_K$') # nats")


def test_a_missing_chromium_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without Chromium the script stops before building, says how to install it, and writes nothing."""
    monkeypatch.setattr(script.shutil, "which", lambda name: None)
    monkeypatch.setattr(script, "FALLBACK_CHROMIUM", tmp_path / "no-chromium")
    err = io.StringIO()
    with redirect_stderr(err):
        assert script.main(["--out", str(tmp_path / "book.pdf")]) == 1
    assert "apt-get install chromium" in err.getvalue()
    assert list(tmp_path.iterdir()) == []
