"""The book's sources are consistent: every chapter is paired, executed, in sync with its `.md`, and in the toc.

A chapter is a jupytext `.md` (the text authors edit) plus its executed `.ipynb` (what Sphinx renders and nbval
checks). `python scripts/execute.py book/<chapter>.md` refreshes the pair; these tests fail when someone edits one
side and forgets the other.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml
from helpers import toc_pages, toc_parts

from vae_core.recap import HEADING

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
HEADER = "---\njupytext:"


def paired_sources() -> list[Path]:
    return sorted(p for p in BOOK.glob("*.md") if p.read_text().startswith(HEADER))


def cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, tuple[str, ...]]]:
    """What must agree between the pair: each cell's type, source and tags."""
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", []))) for c in nb.cells]


SOURCES = paired_sources()


@pytest.mark.parametrize("md", SOURCES, ids=[p.stem for p in SOURCES])
def test_pair_is_in_sync(md: Path) -> None:
    ipynb = md.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} is missing: run `python scripts/execute.py book/{md.name}`"
    text, executed = jupytext.read(md), nbformat.read(ipynb, as_version=4)
    a, b = cells(text), cells(executed)
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        assert x == y, f"{md.name} and {ipynb.name} differ at cell {i}: run `python scripts/execute.py book/{md.name}`"
    assert len(a) == len(b), f"{md.name} has {len(a)} cells, {ipynb.name} {len(b)}: re-execute the chapter"


@pytest.mark.parametrize("md", SOURCES, ids=[p.stem for p in SOURCES])
def test_pair_is_executed(md: Path) -> None:
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    unexecuted = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.execution_count is None]
    assert not unexecuted, f"{md.stem}.ipynb has unexecuted code cells {unexecuted}"
    errors = [i for i, c in enumerate(nb.cells) for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{md.stem}.ipynb has error outputs in cells {errors}"


def test_every_ipynb_has_its_source() -> None:
    orphans = [p.name for p in BOOK.glob("*.ipynb") if not p.with_suffix(".md").exists()]
    assert not orphans, f"notebooks without a jupytext .md source: {orphans}"


def test_every_page_is_in_the_toc() -> None:
    listed = set(toc_pages())
    pages = {f"book/{p.stem}" for p in BOOK.glob("*.md")} | {f"book/{p.stem}" for p in BOOK.glob("*.ipynb")}
    assert not pages - listed, f"pages missing from _toc.yml: {sorted(pages - listed)}"
    missing = [f for f in listed if not any((ROOT / f).with_suffix(s).exists() for s in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


def test_toc_order() -> None:
    """intro; "The assignment": 1.1 … 1.9 in order, 1.6's continuation right after 1.6, 1.9's appendix right after
    1.9; "Beyond the assignment"; then "Reference", ending with the references."""
    parts = dict(toc_parts())
    assert list(parts) == ["", "The assignment", "Beyond the assignment", "Reference"], list(parts)
    assert parts[""] == ["book/intro"]
    assignment = parts["The assignment"]
    numbers = [int(Path(f).name.split("_")[1]) for f in assignment]
    assert numbers == [1, 2, 3, 4, 5, 6, 6, 7, 8, 9, 9], assignment
    assert assignment[5:7] == ["book/q1_6_terms", "book/q1_6_aggregate_posterior"], assignment
    assert assignment[-2:] == ["book/q1_9_training", "book/q1_9_appendix"], assignment
    assert "book/long_runs" in parts["Beyond the assignment"]
    assert parts["Reference"][-1] == "book/references", parts["Reference"]


def test_paired_sources_are_excluded_from_sphinx() -> None:
    """Sphinx must see only the `.ipynb` of a pair; both would be duplicate documents (a warning, fatal under -W)."""
    patterns = yaml.safe_load((ROOT / "_config.yml").read_text())["exclude_patterns"]
    for md in SOURCES:
        rel = md.relative_to(ROOT).as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), f"{rel} is not in exclude_patterns"
    plain = [p for p in BOOK.glob("*.md") if p not in SOURCES]  # pages Sphinx reads as Markdown (references, ...)
    assert plain, "expected unpaired Markdown pages such as book/references.md"
    for md in plain:
        page = md.relative_to(ROOT).as_posix()
        assert not any(fnmatch.fnmatch(page, p) for p in patterns), f"{page} must not be excluded"


def test_readme_commands_are_what_ci_runs() -> None:
    """The README's two set-up commands are the ones `.ci/run` runs on a fresh clone."""
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "run").read_text()
    setup = " && ".join(
        [
            "python3 -m venv .venv",
            ".venv/bin/pip install -r requirements.txt",
            ".venv/bin/jupyter-book build . -W -n --keep-going",
        ]
    )
    assert setup in readme and ".venv/bin/python -m pytest\n" in readme
    for command in setup.split(" && ")[2:] + [".venv/bin/python -m pytest"]:
        assert command in ci, command


CHAPTERS = [md for md in SOURCES if md.stem not in ("intro", "reproducibility")]


def section(nb: nbformat.NotebookNode, heading: str) -> list[nbformat.NotebookNode]:
    """The cells after the Markdown line `heading`, up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    cells, inside = [], False
    for cell in nb.cells:
        lines = cell.source.splitlines() if cell.cell_type == "markdown" else []
        if inside and any(line.startswith("#") and line.split(" ")[0] <= level for line in lines):
            break
        if inside:
            cells.append(cell)
        elif any(line.strip() == heading for line in lines):
            inside = True
    return cells


@pytest.mark.parametrize("md", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_recaps_what_it_showed(md: Path) -> None:
    """Every chapter has a `## What this chapter showed` section whose hide-input code cell checks its claims."""
    nb = jupytext.read(md)
    heading = f"## {HEADING}"
    assert sum(line.strip() == heading for c in nb.cells for line in c.source.splitlines()) == 1, (
        f"{md.name} needs exactly one '{heading}' section"
    )
    code = [c for c in section(nb, heading) if c.cell_type == "code"]
    recap = [c for c in code if "hide-input" in c.metadata.get("tags", [])]
    assert recap, f"{md.name}: '{heading}' has no code cell tagged hide-input"
    assert all("check(" in c.source for c in recap), f"{md.name}: the recap cell must call vae_core.recap.check"
