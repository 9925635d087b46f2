"""A small Sphinx extension that makes the built book self-contained and its sources downloadable.

- Serves MathJax 3 from the build itself (the static files of `sphinx-mathjax-offline`, byte for byte the `es5/`
  folder of the npm package `mathjax@3.2.2`), so equations render offline; no page loads anything from a CDN.
- Copies each chapter's jupytext `.md` source next to its `.ipynb` under `_sources/` and adds a `.md` entry to the
  theme's download menu (the `.md` files are excluded from Sphinx, which renders the executed `.ipynb`).
- Adds `custom.css` (figures stay readable in dark mode; a display equation wider than its column scrolls).
- `VAE_BOOK_EXECUTE=cache` (or `force`) in the environment switches the build from rendering the committed outputs to
  executing the notebooks through Jupyter Book's cache (`_build/.jupyter_cache`), so an unchanged rebuild is fast.
"""

from __future__ import annotations

import os
import shutil
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

HERE = Path(__file__).resolve().parent
STATIC = HERE.parent / "_static"
# MathJax 3, not 2.7: 2.7 is end-of-life, and sphinx-book-theme (through pydata-sphinx-theme) styles only MathJax 3's
# output. Its `div.math` hides overflow and lets the `mjx-container` inside scroll; MathJax 2.7's `.MathJax_Display`
# gets no such rule, so a wide equation was cut at the column's edge. MathJax 3 comes from PyPI (no Node.js needed
# to set up the book), and myst-parser already writes its configuration (which elements to typeset).
MATHJAX_DIST = "sphinx-mathjax-offline"
EXECUTE_ENV = "VAE_BOOK_EXECUTE"
MATHJAX_DIR = "mathjax"
# The combined component: TeX input with every extension (amsmath's environments included) and CommonHTML output,
# so no page asks for another script.
MATHJAX_PATH = f"{MATHJAX_DIR}/tex-chtml-full.js"


def mathjax_source() -> Path:
    """The folder of MathJax 3's files in the installed `sphinx-mathjax-offline`."""
    try:
        folder = Path(str(distribution(MATHJAX_DIST).locate_file(f"{MATHJAX_DIST}/static/mathjax")))
    except PackageNotFoundError:
        folder = None
    if folder is None or not (folder / "tex-chtml-full.js").is_file():
        raise ExtensionError(f"MathJax 3 ({MATHJAX_DIST}) is not installed: pip install -r requirements.txt")
    return folder


def use_local_mathjax(app: Sphinx) -> None:
    """Point Sphinx at the local MathJax 3 (runs after myst-parser has written its MathJax 3 options)."""
    mathjax_source()
    app.config.mathjax_path = MATHJAX_PATH
    app.config.mathjax2_config = None
    app.config.mathjax_options = {"defer": "defer"}


def markdown_source(app: Sphinx, pagename: str) -> Path | None:
    """The jupytext `.md` paired with the page's `.ipynb`, if there is one."""
    doc = Path(app.env.doc2path(pagename)) if pagename in app.env.all_docs else None
    if doc is None or doc.suffix != ".ipynb":
        return None
    md = doc.with_suffix(".md")
    return md if md.exists() else None


def add_markdown_download(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Add the chapter's `.md` source to the theme's download menu."""
    md = markdown_source(app, pagename)
    if md is None:
        return
    for button in context.get("header_buttons", []):
        if button.get("label") == "download-buttons":
            url = f"{context['pathto']('_sources', 1)}/{Path(pagename).parent.as_posix()}/{md.name}"
            entry = {
                "type": "link",
                "url": url,
                "text": ".md",
                "icon": "fas fa-file-code",
                "tooltip": "Download the jupytext source (.md)",
                "label": "download-markdown-button",
            }
            button["buttons"].insert(1, entry)


def copy_assets(app: Sphinx, exception: Exception | None) -> None:
    """Copy MathJax into `_static/mathjax` and the chapters' `.md` sources into `_sources/`."""
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    target = out / "_static" / MATHJAX_DIR
    stamp = target / ".version"
    release = version(MATHJAX_DIST)
    if not stamp.exists() or stamp.read_text() != release:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(mathjax_source(), target)
        stamp.write_text(release)
    for pagename in app.env.found_docs:
        md = markdown_source(app, pagename)
        if md is not None:
            dest = out / "_sources" / Path(pagename).parent / md.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(md, dest)


def configure(app: Sphinx, config: Any) -> None:
    """Serve `book/_static` (custom.css) from `_static`; start in the reader's light/dark setting."""
    config.html_static_path.append(str(STATIC))
    config.html_context.setdefault("default_mode", "auto")
    mode = os.environ.get(EXECUTE_ENV)
    if mode:
        if mode not in ("cache", "force"):
            raise ValueError(f"{EXECUTE_ENV} must be 'cache' or 'force', not {mode!r}")
        config.nb_execution_mode = mode
        # Run every chapter, write each failure's traceback to `reports/`; `check_execution` then fails the build.
        config.nb_execution_raise_on_error = False


def drop_thebe(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Leave out sphinx-thebe's scripts: the book has no live kernel, and they name a CDN (and come twice)."""
    scripts = context.get("script_files", [])
    scripts[:] = [js for js in scripts if "thebe" not in f"{js.filename} {js.attributes.get('body', '')}".lower()]


def check_execution(app: Sphinx, exception: Exception | None) -> None:
    """Fail the build when a notebook failed to execute, naming the chapter and its traceback report."""
    if exception is not None or app.config.nb_execution_mode == "off":
        return
    from myst_nb.sphinx_ import NbMetadataCollector

    failed = []
    for doc in sorted(app.env.found_docs):
        result = NbMetadataCollector.get_exec_data(app.env, doc)
        if result and result.get("traceback"):
            failed.append(f"{doc} (failing cell and traceback: {Path(app.outdir) / 'reports' / doc}.err.log)")
    if failed:
        raise ExtensionError("notebook execution failed in " + "; ".join(failed))


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("config-inited", configure)
    app.connect("html-page-context", drop_thebe, priority=900)
    app.connect("builder-inited", use_local_mathjax, priority=900)
    app.connect("html-page-context", add_markdown_download, priority=900)
    app.connect("build-finished", copy_assets)
    app.connect("build-finished", check_execution, priority=900)
    app.add_css_file("custom.css")
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
