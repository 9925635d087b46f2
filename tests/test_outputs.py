"""No executed output shows raw SymPy text: SymPy results are typeset (`vae_core.derivation.tex`, `Math`, Markdown).

A reader of the book sees every output of every executed notebook in `book/`: printed text (stdout), and the
`text/plain`, `text/latex` and `text/markdown` forms of displayed and glued values. SymPy's string form (`mu**2/2`,
`sqrt(2*pi)`, `Eq(a, b)`, `I*t`, `oo`, `log(2)/2`) is Python syntax, not mathematics. The patterns below are SymPy's
syntax, not words: prose written by hand ("1/2 log 2", "log(1 + chi^2)", "E[exp(i u eps)]", Markdown **bold**) passes.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
MIMETYPES = ("text/plain", "text/latex", "text/markdown")

# name -> (pattern, an output it must flag)
SYMPY = {
    "power written **": (r"[\w)\]]\*\*[\w(\-]", "mu**2/2 + sigma**2/2"),
    "product written *": (r"(?:\b\d+|\b[A-Za-z_]\w*|\))\*(?![*\s])(?=[\w(])", "variance 4*sigma"),
    "sqrt(": (r"\bsqrt\(", "the rate sqrt(chi^2 / N)"),
    "SymPy object": (
        r"\b(?:Eq|Ne|Lt|Gt|Le|Ge|Sum|Product|Integral|Piecewise|Derivative|Limit|Abs|Heaviside|Matrix|Rational"
        r"|Symbol|Function|Indexed|IndexedBase)\(",
        "Eq(\\mathrm{KL}_i, 1/2)",
    ),
    "imaginary unit I": (r"(?<![\w.])I\*|\*I(?!\w)", "[exp(-t), I*t*exp(-t)]"),
    "infinity oo": (r"(?<![\w.])-?z?oo(?!\w)", "the limit is oo"),
    "log(2)/2": (r"\b(?:log|exp|sqrt)\([^()\s]*\)/\d", "gap = log(2)/2"),
}

# hand-written prose and numbers that must pass
PROSE = (
    "✓ the gap is 1/2 log 2 nats, whatever the model",
    "✓ KL(q || p) = log(1 + chi^2) at most",
    "E[exp(i u eps)], E[eps exp(i u eps)], E[eps^2 exp(i u eps)]",
    "**Grey levels.** a Markdown paragraph in *italics*",
    "nats per image: -93.41 ± 0.08; 784-500-500-20 with ELU units; 2^14 samples; 1e-08",
    "<Figure size 1000x360 with 2 Axes>",
    "<Derivation of 5 checked steps (exact)>",
    "files matching book/*.ipynb and q1_*.md",
    "$$ \\begin{aligned} \\mathrm{KL}(q \\,\\|\\, p) &= \\log \\frac{\\sigma_p}{\\sigma_q} \\end{aligned} $$",
    "look at the pool of zoom and food",
)


def shown_text(nb: nbformat.NotebookNode) -> list[tuple[int, str, str]]:
    """(cell index, output kind, text) of every output a reader sees."""
    found = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                found.append((i, f"stream {output.name}", output.text))
            for mimetype in MIMETYPES:
                if mimetype in output.get("data", {}):
                    text = output.data[mimetype]
                    found.append((i, mimetype, "".join(text) if isinstance(text, list) else text))
    return found


def raw_sympy(text: str) -> list[tuple[str, str]]:
    """(pattern name, the line) for every raw SymPy string in `text`."""
    hits = []
    for line in text.splitlines():
        for name, (pattern, _) in SYMPY.items():
            if re.search(pattern, line):
                hits.append((name, line.strip()))
    return hits


@pytest.mark.parametrize("name", list(SYMPY))
def test_each_pattern_flags_its_example(name: str) -> None:
    pattern, example = SYMPY[name]
    assert re.search(pattern, example), f"{name}: {pattern!r} misses {example!r}"


@pytest.mark.parametrize("prose", PROSE)
def test_prose_and_numbers_pass(prose: str) -> None:
    assert not raw_sympy(prose), raw_sympy(prose)


def test_a_fake_notebook_with_sympy_output_is_flagged() -> None:
    nb = nbformat.v4.new_notebook()
    printed = nbformat.v4.new_code_cell("print(mu**2)")
    printed.outputs = [nbformat.v4.new_output("stream", name="stdout", text="variance: mu**2 + 3*sigma**2\n")]
    shown = nbformat.v4.new_code_cell("expr")
    shown.outputs = [
        nbformat.v4.new_output("execute_result", data={"text/plain": "sqrt(2)*exp(-x**2/2)"}, execution_count=1)
    ]
    fine = nbformat.v4.new_code_cell("check(...)")
    fine.outputs = [nbformat.v4.new_output("stream", name="stdout", text="✓ the KL is 1/2 log 2\n")]
    nb.cells = [printed, shown, fine]
    flagged = {(i, kind) for i, kind, text in shown_text(nb) if raw_sympy(text)}
    assert flagged == {(0, "stream stdout"), (1, "text/plain")}, flagged
    assert ("power written **", "variance: mu**2 + 3*sigma**2") in raw_sympy(shown_text(nb)[0][2])


NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_output_shows_raw_sympy(ipynb: Path) -> None:
    nb = nbformat.read(ipynb, as_version=4)
    problems = [
        f"  cell {i}, {kind}: {name}: {line[:160]}"
        for i, kind, text in shown_text(nb)
        for name, line in raw_sympy(text)
    ]
    assert not problems, (
        f"{ipynb.name} shows raw SymPy text ({len(problems)} lines); typeset it with vae_core.derivation.tex and "
        "IPython.display.Math, or write it in words:\n" + "\n".join(problems[:40])
    )
