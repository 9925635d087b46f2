"""One meaning per symbol: the chapters do not use a symbol of the notation table for something else.

The notation table is the section "Notation" of `book/intro.md` (Symbol | Meaning | First appears). Each rule below
is tied to one row of that table by the row's Symbol cell, and lists forms that would give the row's symbol a second
meaning (or name its quantity with another symbol): `\\mathcal{L}` for a loss, `K(x)` for the KL term, `f(z)` for an
integrand, and so on. The rules are matched against what a reader sees of each chapter's `.md` source: its math
(`$...$`, `$$...$$`), its figure captions and alt text, and the string literals of its code cells (prints, labels,
recap `check` texts).

Three kinds of test: every rule's row is in the table (delete a row and its rules fail), every form matches its own
bad example and none matches the rule's good examples (so no rule can silently never match), and no chapter contains a
forbidden form; a failure names the file, the line, the form and the table's meaning of the symbol.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
INTRO = BOOK / "intro.md"


@dataclass(frozen=True)
class Form:
    """A forbidden form: a regular expression and a bad example it must match."""

    pattern: str
    bad: str


@dataclass(frozen=True)
class Rule:
    """Forms that clash with the table row whose Symbol cell is `symbol`; `problem` says what they do instead."""

    name: str
    symbol: str
    problem: str
    forms: tuple[Form, ...]
    good: tuple[str, ...] = ()
    files: tuple[str, ...] = ()  # chapter stems the rule applies to; empty: every chapter


EPS = r"\\(?:var)?epsilon"
RULES = (
    Rule(
        "L-is-the-ELBO",
        r"$\mathcal{L}(x; q)$, $\mathcal{L}(x)$",
        r"$\mathcal{L}$ is the ELBO; the loss is $\ell(x) = -\mathcal{L}(x)$, weighted $\ell_\beta(x)$",
        (
            # the loss written as L(x) = -E[log p(x|z)] + KL; "-\mathcal{L}(x) = -E[...]" is the correct form
            Form(
                r"(?<![-\w{])(?<!-\s)\\mathcal\{L\}(?:\(x\))?\s*=\s*(?:\{\}\s*)?&?\s*(?:\\underbrace\{\s*)?"
                r"-\s*\\mathbb\{E\}[^\]]*\[\s*\\log\s*p",
                r"\mathcal{L}(x) ={}& \underbrace{-\mathbb{E}_{q_\phi(z \mid x)}\big[\log p_\theta(x \mid z)\big]}",
            ),
            Form(r"\\mathcal\{L\}_\{?\\beta", r"\mathcal{L}_\beta(x) ={}& -\mathbb{E}"),
            Form(r"\\mathcal\{L\}(?:\(x\))?\s*=\s*(?:R\(x\)|\\ell)", r"\mathcal{L}(x) = R(x) + K(x)"),
        ),
        good=(
            r"\ell(x) = -\mathcal{L}(x) ={}& \underbrace{-\mathbb{E}_{q_\phi(z \mid x)}",
            r"\mathcal{L}(x; q) = \mathbb{E}_q[\log p(x, z)] - \mathbb{E}_q[\log q(z)]",
            r"\mathcal{L}(x) = -\mathbb{E}_q[\log q(z \mid x)] + \mathbb{E}_q[\log p_\theta(x, z)]",
            r"\mathcal{L}_K(x)",
        ),
    ),
    Rule(
        "K-counts-importance-samples",
        "$K$",
        r"$K$ is a number of samples, not the KL term (write $\ell_{\mathrm{KL}}(x)$)",
        (Form(r"(?<![\w\\{}])K\(x\)", r"\mathcal{L}(x) = R(x) + K(x)"),),
        good=(r"\mathcal{L}_K(x)", r"\hat p_K(x)", r"\ell_{\mathrm{KL}}(x)"),
    ),
    Rule(
        "rec-term-is-ell-rec",
        r"$\ell_{\mathrm{rec}}(x)$, $\ell_{\mathrm{KL}}(x)$",
        r"the reconstruction term is $\ell_{\mathrm{rec}}(x)$, not $R(x)$",
        (Form(r"(?<![\w\\{}])R\(x\)", r"R(x) = -\sum_m [x_m \log \pi_m]"),),
        good=(r"\ell_{\mathrm{rec}}(x)",),
    ),
    Rule(
        "M-is-the-data-dimension",
        "$M$",
        r"$M$ is the dimension of $x$, not a number of Monte Carlo draws (write $S$ draws, index $j$)",
        (
            Form(
                r"\\t?frac\s*(?:\{1\}|1)\s*(?:\{M\}|M)(?!\w)\s*(?:\\textstyle\s*)?\\sum_\{?m",
                r"\widehat{I}_q &= \tfrac{1}{M} \textstyle\sum_m \log",
            ),
        ),
        good=(r"\tfrac{1}{S} \textstyle\sum_j \log", r"-\log_2 p_\theta(x) / M"),
    ),
    Rule(
        "m-indexes-pixels",
        "$m$",
        r"$m$ indexes pixels: not a draw ($z_j$, $n_j$), a mean ($\mu_q$, $\mu$, $\bar\mu$) or an image ($\pi$)",
        (
            Form(r"(?<![\w\\])[zn]_\{?m(?![\w])", r"z_m \sim q_\phi(z \mid x_{n_m})"),
            Form(r"\\mathcal\{N\}\(\s*m\s*,", r"\mathcal{N}(m, S)"),
            Form(r"\\mathrm\{Bern\}\(\s*m\s*\)", r"x \sim \mathrm{Bern}(m)"),
        ),
        good=(
            r"x_m \sim \mathrm{Bern}(\pi_m)",
            r"\sum_m x_m",
            r"z_j \sim \bar q(z)",
            r"\mathcal{N}(\bar\mu, \bar\Sigma)",
        ),
    ),
    Rule(
        "s-is-a-posterior-std",
        "$s$, $s_i$",
        r"$s$ is a posterior standard deviation, not a score or a log-std",
        (
            Form(r"(?<![\w\\])s\s*=\s*\\partial", r"s = \partial_\mu \log q_\phi(z \mid x)"),
            Form(r"e\^\{\s*2\s*s\s*\}", r"\operatorname{diag} e^{2 s}"),
            Form(r"\(\s*A\s*,\s*c\s*,\s*s\s*\)", r"\phi = (A, c, s)"),
            Form(r"\\mathbb\{E\}\[\s*[fh]\s*s\^2", r"b^\star = \mathbb{E}[f s^2]/\mathbb{E}[s^2]"),
        ),
        good=(r"\mathcal{N}(\mu, s^2)", r"s_i^2 = 1/(1 + \lambda_i)", r"\phi = (A, c, \log \sigma_q)"),
    ),
    Rule(
        "I_q-of-the-index-n",
        "$I_q(n; z)$",
        r"the mutual information is between the image index $n$ and the code: $I_q(n; z)$",
        (Form(r"I_\{?q\}?\s*\(\s*x\s*;", r"I_q(x; z)"),),
        good=(r"I_q(n; z) \le \log N",),
    ),
    Rule(
        "phi-parametrizes-the-encoder",
        r"$\phi$",
        r"$\phi$ is the encoder's parameters, not a density (write $\mathcal{N}(u \mid 0, 1)$)",
        (
            Form(r"\\varphi\s*\(", r"\varphi(\mu/\sigma)/\sigma"),
            Form(r"(?<![_{\\])\\phi\s*\(", r"\phi(0.5)"),
            Form(r"(?<![\w\\])phi\s*\(\s*[-\d.]", "true gradient phi(0.5)"),
        ),
        good=(r"\mu_\phi(x)", r"q_\phi(z \mid x)", r"\nabla_\phi \mathbb{E}", r"\mathcal{N}(0.5 \mid 0, 1)"),
    ),
    Rule(
        "f_theta-is-the-decoder",
        r"$f_\theta$",
        r"$f_\theta$ is the decoder network: a Bernoulli mean is $\pi$ (pixel $m$: $\pi_m$), a test function $h(z)$",
        (
            Form(r"(?<![\w\\{])f\s*\(\s*z\b", r"\nabla_\mu \mathbb{E}[f(z)]"),
            Form(r"\\log\s*\(?\s*(?:1\s*-\s*)?f(?![\w(])", r"x \log f + (1 - x) \log (1 - f)"),
            Form(r"(?<![\w\\{])f\s*\^", r"f^x (1 - f)^{1 - x}"),
            Form(
                r"(?<![\w\\{.])f\s*(?:=|\\approx)\s*(?:x\b|z\b|0\.5|1\b|1/2|\\tfrac|\{|\\sin|sin)",
                "a perfect prediction f = x",
            ),
            Form(r"\\mid\s*f\s*\)", r"\mathrm{Bern}(x \mid f)"),
            Form(r"(?<![\w\\{])f_\{?m(?![\w])", r"\mathrm{Bern}(x_m \mid f_m(z))"),
        ),
        good=(
            r"\pi = f_\theta(z)",
            r"\log f_\theta(z)",
            r"x \log \pi + (1 - x) \log(1 - \pi)",
            "at pi = {value:.3f}",
        ),
    ),
    Rule(
        "epsilon-is-the-noise",
        r"$\varepsilon$",
        r"$\varepsilon$ is the reparameterization noise: a relative error is $\delta$, Adam's constant `eps`",
        (
            Form(r"(?<![\w\\])[NK]_\{?" + EPS, r"N_\varepsilon = \chi^2 / \varepsilon^2"),
            Form(EPS + r"\s*=\s*10\^", r"\epsilon = 10^{-8}"),
            Form(r"/\s*" + EPS + r"\^", r"\chi^2 / \varepsilon^2"),
            Form(r"(?<![\w\\])[NK]_eps\b", "N_eps samples"),
        ),
        good=(r"z = \mu + \sigma \odot \varepsilon", r"K_\delta = \chi^2 / \delta^2", "eps = 1e-8"),
    ),
    Rule(
        "D-is-the-latent-dimension",
        "$D$",
        r"the latent dimension is $D$ ('the $D = 20$ model'), not $N_z$ or '$z = 20$'",
        (
            Form(r"(?<![\w\\{])N_\{?z\b", r"N_z = 20"),
            Form(r"(?<![\w\\.,])z\s*=\s*(?:2|20|40|50)(?![\d.,])", "the trained z = 20 model"),
        ),
        good=(r"D = 20", r"z = \mu + \sigma \odot \varepsilon", r"z = 0", "checkpoints/z20/model"),
    ),
    Rule(
        "log-not-ln",
        r"$\log$, $\log_2$",
        r"the natural log is $\log$ (never $\ln$)",
        (Form(r"\\ln\b", r"784 \ln 2"),),
        good=(r"784 \log 2", r"\log_2 p_\theta(x)"),
    ),
    Rule(
        "sigmoid-not-sigma",
        r"$\operatorname{sigmoid}$",
        r"the logistic function is $\operatorname{sigmoid}$; $\sigma$ is a standard deviation",
        (Form(r"\\sigma\s*\(\s*(?:-?a\b|-?\d|\\cdot)", r"\log \mathrm{Bern}(x \mid \sigma(a))"),),
        good=(r"\operatorname{sigmoid}(a)", r"\sigma_\phi(x)", r"\sigma(x)"),
    ),
    Rule(
        "aggregate-posterior-is-q-bar",
        r"$\bar q(z)$",
        r"the aggregate posterior is $\bar q(z)$; a bare $q(z)$ is a generic approximate posterior",
        (
            Form(
                r"(?<![\w\\}])(?<!\\bar )q\s*\(\s*z\s*\)\s*(?:\\,)?\s*(?:\\\||\|\||\\Vert)"
                r"\s*(?:\\,)?\s*p\s*(?:\(\s*z\s*\))?\s*\)",
                "KL(q(z) || p(z))",
            ),
        ),
        good=(r"\mathrm{KL}(\bar q(z) \,\|\, p(z))", "KL(q̄(z) || p(z))", r"\mathrm{KL}(q(z \mid x) \,\|\, p(z))"),
        files=("q1_6_terms", "q1_6_aggregate_posterior", "q1_9_training"),
    ),
    Rule(
        "N-counts-data-points",
        "$N$",
        r"$N$ is the number of data points: a number of importance samples is $K$ ($\hat p_K$, $K_{0.1}$)",
        (
            Form(r"\\hat\s*p_\{?N\b", r"\hat p_N(x)"),
            Form(r"(?<![\w\\{])N_\{?0\.1", r"N_{0.1} = 100\, \chi^2"),
            Form(r"(?<![\w\\{])N_\{?\\(?:var)?epsilon", r"N_\varepsilon"),
        ),
        good=(r"\hat p_K(x)", r"K_{0.1}", r"\log N"),
    ),
    Rule(
        "b-is-the-toy-bias",
        "$W$, $b$",
        r"$b$ is the toy decoder's bias: the score-function estimator's baseline is $\eta$, the best one $\eta^\star$",
        (Form(r"(?<![\w\\])b\s*\^\s*\{?\s*(?:\\star|\*)", r"b^\star = \mathbb{E}[h g^2]"),),
        good=(r"\eta^\star", r"Wz + b"),
    ),
    Rule(
        "c-is-the-encoder-offset",
        "$A$, $c$",
        r"$c$ is the toy encoder's offset: the proposal's covariance scale is $\alpha$",
        (
            Form(r"(?<![\w\\])c\s*(?:\\,)?\s*\\Sigma", r"\mathcal{N}(\mu, c\Sigma)"),
            Form(r"(?<![\w\\])2\s*c\s*-\s*1", r"(c^2/(2c-1))^{D/2}"),
        ),
        good=(r"\mathcal{N}(\mu, \alpha\Sigma)", r"Ax + c"),
    ),
    Rule(
        "k-indexes-importance-samples",
        "$k$",
        r"$k$ indexes importance samples: a frequency is $\omega$",
        (
            Form(r"sin\s*\(\s*k\s*z", r"\sin(kz)"),
            Form(r"(?<![\w\\])k\s*=\s*5\d*\b", "IWAE, k = 5"),
        ),
        good=(r"\sin(\omega z)", r"w_k", r"k = 1, \dots, K", "K = 5000"),
    ),
    Rule(
        "a-is-the-logit",
        "$a$",
        r"$a$ is the decoder logit: a generic argument (the ELU's input) is $u$",
        (Form(r"(?<![\w\\])e\^\{?\s*a\s*\}?\s*-\s*1", r"e^{a} - 1"),),
        good=(r"\pi = \operatorname{sigmoid}(a)", r"e^{u} - 1"),
    ),
    Rule(
        "t-is-the-interpolation",
        "$t$",
        r"$t$ is the interpolation parameter: a dummy variable is $u$",
        (Form(r"\\cosh\s*\(?\s*t\b", r"0 \le \log\cosh t \le t^2/2"),),
        good=(r"\log\cosh u \le u^2/2", r"z_t = (1 - t)\mu_\phi(x_a) + t\,\mu_\phi(x_b)"),
    ),
    Rule(
        "X-is-the-data-set",
        "$X$",
        r"$X$ is the data set: the graph is $z \to x$",
        (Form(r"Z\s*\\to\s*X", r"Z \to X"),),
        good=(r"z \to x",),
    ),
    Rule(
        "Pr-for-probability",
        r"$\mathbb{E}$, $\mathrm{Var}$, $\Pr$, $\mathbb{1}[\cdot]$",
        r"a probability is written $\Pr$",
        (Form(r"(?<![\w\\])P\s*\(\s*z\s*[<>]", r"\nabla_\mu P(z > 0)"),),
        good=(r"\Pr(z > 0)",),
    ),
    Rule(
        "i-is-upright-when-imaginary",
        r"$e$, $\mathrm{i}$",
        r"the imaginary unit is the upright $\mathrm{i}$; $i$ indexes latent coordinates",
        (Form(r"e\^\{\s*i\s*[a-z\\]", r"\mathbb{E}[\varepsilon^n e^{it\varepsilon}]"),),
        good=(r"e^{\mathrm{i}u\varepsilon}",),
    ),
)


# ----------------------------------------------------------------------------------------------------------------------
# The notation table


def split_row(line: str) -> list[str]:
    """The cells of a Markdown table row (a `|` inside a cell would have to be escaped; the table uses `\\Vert`)."""
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


@cache
def notation_table() -> dict[str, tuple[str, str]]:
    """Symbol cell -> (meaning, first appears), from the section "Notation" of book/intro.md."""
    text = INTRO.read_text()
    match = re.search(r"^## Notation\n(.*?)(?=^#|\Z)", text, re.S | re.M)
    assert match, "book/intro.md has no section '## Notation'"
    lines = [line for line in match.group(1).splitlines() if line.startswith("|")]
    assert lines and split_row(lines[0]) == ["Symbol", "Meaning", "First appears"], lines[:1]
    rows = {}
    for line in lines[2:]:
        cells = split_row(line)
        assert len(cells) == 3, f"book/intro.md: a notation row without three cells: {line}"
        assert cells[0] not in rows, f"book/intro.md: the notation table lists {cells[0]} twice"
        rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_the_table_has_rows_and_each_links_where_it_first_appears() -> None:
    rows = notation_table()
    assert len(rows) > 40, f"the notation table has only {len(rows)} rows"
    pages = {p.stem for p in BOOK.glob("*.md")}
    for symbol, (meaning, first) in rows.items():
        assert meaning, f"notation row {symbol} has no meaning"
        targets = re.findall(r"\{doc\}`(?:[^`<]*<)?([\w/]+)>?`", first)
        assert targets or first == "—", f"notation row {symbol}: 'first appears' links no chapter: {first!r}"
        missing = [t for t in targets if t not in pages]
        assert not missing, f"notation row {symbol}: no such page {missing}"


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_each_rule_is_tied_to_a_row_of_the_table(rule: Rule) -> None:
    assert rule.symbol in notation_table(), (
        f"rule {rule.name} guards the notation row {rule.symbol!r}, which book/intro.md's table no longer has"
    )


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_each_form_matches_its_bad_example_and_no_good_one(rule: Rule) -> None:
    for form in rule.forms:
        assert re.search(form.pattern, form.bad), f"rule {rule.name}: {form.pattern!r} misses its example {form.bad!r}"
        for good in rule.good:
            assert not re.search(form.pattern, good), f"rule {rule.name}: {form.pattern!r} flags the good {good!r}"


# ----------------------------------------------------------------------------------------------------------------------
# What a reader sees of a chapter: math, captions and alt text, string literals of code cells


@dataclass(frozen=True)
class Segment:
    line: int  # 1-based line of the .md file where the segment starts
    kind: str  # "math", "caption" or "string"
    text: str


def blank(text: str, start: int, end: int) -> str:
    """`text` with [start, end) replaced by spaces, newlines kept (so offsets still give line numbers)."""
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def math_segments(text: str, first_line: int) -> list[Segment]:
    """The `$$...$$` and `$...$` math of Markdown `text` whose first line is `first_line` of the file."""
    text = re.sub(r"``?[^`\n]+``?", lambda m: " " * len(m.group(0)), text)  # code spans are not math
    found = []
    for pattern in (r"\$\$(.+?)\$\$", r"(?<![\\$])\$(?!\$)((?:[^$\n]|\n(?!\s*\n))+?)(?<!\\)\$"):
        for m in list(re.finditer(pattern, text, re.S)):
            found.append(Segment(first_line + text.count("\n", 0, m.start(1)), "math", m.group(1)))
            text = blank(text, m.start(), m.end())
    return found


def string_segments(code: str, first_line: int) -> list[Segment]:
    """The string literals of a code cell, one segment per line of each literal."""
    found = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):  # not Python: take it all
        return [Segment(first_line + i, "string", line) for i, line in enumerate(code.splitlines())]
    for token in tokens:
        if token.type == tokenize.STRING or token.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            body = re.sub(r"^[rRbBuUfF]*('''|\"\"\"|'|\")|('''|\"\"\"|'|\")$", "", token.string)
            for i, line in enumerate(body.splitlines()):
                found.append(Segment(first_line + token.start[0] - 1 + i, "string", line))
    return found


def without_notation_section(lines: list[str]) -> list[str]:
    """The intro's own notation section names the forbidden forms ("never $\\ln$"): it is not scanned."""
    out, skipping = [], False
    for line in lines:
        if line.startswith("#"):
            skipping = line.strip() == "## Notation"
        out.append("" if skipping else line)
    return out


@cache
def segments(path: Path) -> tuple[Segment, ...]:
    """Math, captions and alt text, and code-cell strings of a jupytext MyST chapter, with their line numbers."""
    lines = path.read_text().splitlines()
    if path == INTRO:
        lines = without_notation_section(lines)
    found: list[Segment] = []
    i = 0
    if lines and lines[0] == "---":  # jupytext front matter
        i = lines.index("---", 1) + 1
    prose: list[str] = [""] * i  # the prose so far, with the other lines blanked, so that offsets give line numbers
    directives: list[str] = []  # the fences of the open directives (dropdowns and the like hold prose)

    def skip_to(fence: str, start: int) -> int:
        """The index of the line that closes `fence` after `start`; the lines between are blanked from the prose."""
        end = start + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        prose.extend([""] * (min(end, len(lines) - 1) - start + 1))
        return end + 1

    while i < len(lines):
        line = lines[i]
        if directives and line.strip() == directives[-1]:
            directives.pop()
            prose.append("")
            i += 1
            continue
        directive = re.match(r"^\s*(`{3,}|~{3,})\{([\w-]+)\}", line)
        plain_block = re.match(r"^\s*(`{3,}|~{3,})[\w-]*\s*$", line)
        if directive and directive.group(2) == "code-cell":
            fence, j = directive.group(1), i + 1
            if j < len(lines) and lines[j] == "---":  # the cell's YAML options: captions and alt text
                end = lines.index("---", j + 1)
                found.extend(Segment(k + 1, "caption", lines[k]) for k in range(j + 1, end))
                j = end + 1
            while j < len(lines) and lines[j].startswith(":"):
                j += 1
            start = j
            while j < len(lines) and lines[j].strip() != fence:
                j += 1
            found.extend(string_segments("\n".join(lines[start:j]) + "\n", start + 1))
            prose.extend([""] * (j - i + 1))
            i = j + 1
        elif directive and directive.group(2) == "math":
            end = skip_to(directive.group(1), i)
            found.append(Segment(i + 2, "math", "\n".join(lines[i + 1 : end - 1])))
            i = end
        elif directive and directive.group(2) not in ("literalinclude", "code-block", "code"):
            directives.append(directive.group(1))  # its body is prose
            prose.append("")
            i += 1
        elif directive or plain_block:  # a listing or a plain code block: not prose
            i = skip_to((directive or plain_block).group(1), i)
        else:
            prose.append(line)
            i += 1
    found.extend(math_segments("\n".join(prose), 1))
    return tuple(sorted(found, key=lambda s: s.line))


CHAPTERS = sorted(BOOK.glob("*.md"))  # the paired chapters and the plain pages (further reading, references)


def test_the_scanner_sees_math_captions_and_strings() -> None:
    intro = segments(INTRO)
    assert {s.kind for s in intro} == {"math", "caption", "string"}
    assert any(r"q_\phi(z \mid x)" in s.text for s in intro if s.kind == "math")
    assert not any(r"\ln" in s.text for s in intro), "the notation section itself must not be scanned"
    assert not any("import" in s.text for s in intro), "code outside string literals must not be scanned"
    lines = INTRO.read_text().splitlines()
    for s in intro:
        first = s.text.strip().splitlines()[0][:12] if s.text.strip() else ""
        assert first in lines[s.line - 1], f"segment {s} is not on line {s.line}: {lines[s.line - 1]!r}"


def test_the_scanner_finds_each_bad_example_in_a_fake_chapter(tmp_path: Path) -> None:
    """Every bad example, put in prose math, a caption and a print, is found on its own line."""
    body = ["---", "jupytext: {}", "---", "", "# A fake chapter", ""]
    expected = []
    for rule in RULES:
        for form in rule.forms:
            body += [f"Text ${form.bad}$ text.", ""]
            expected.append((rule.name, len(body) - 1))
    code = ["```{code-cell} ipython3", "---", "mystnb:", "  figure:"]
    code += [f"    caption: {form.bad}" for rule in RULES for form in rule.forms]
    code += ["---", *[f'print(r"{form.bad}")' for rule in RULES for form in rule.forms], "```"]
    fake = tmp_path / "fake.md"
    fake.write_text("\n".join(body + code) + "\n")
    found = clashes(fake, all_files=True)
    for name, line in expected:
        assert any(f"fake.md:{line}:" in f and f"[{name}]" in f for f in found), (name, line, found[:5])
    n_forms = sum(len(r.forms) for r in RULES)
    assert sum("caption" in f for f in found) >= n_forms and sum("string" in f for f in found) >= n_forms


def clashes(path: Path, all_files: bool = False) -> list[str]:
    table = notation_table()
    found = []
    for rule in RULES:
        if rule.files and not all_files and path.stem not in rule.files:
            continue
        meaning = table[rule.symbol][0] if rule.symbol in table else "(row missing from the table)"
        for segment in segments(path):
            for form in rule.forms:
                for m in re.finditer(form.pattern, segment.text):
                    line = segment.line + segment.text.count("\n", 0, m.start())
                    found.append(
                        f"book/{path.name}:{line}: {segment.kind} `{m.group(0).strip()}` [{rule.name}]: "
                        f"{rule.problem}. The notation table reserves {rule.symbol} for: {meaning}"
                    )
    return found


@pytest.mark.parametrize("md", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_keeps_one_meaning_per_symbol(md: Path) -> None:
    found = clashes(md)
    assert not found, f"{len(found)} notation clash(es) in {md.name}:\n" + "\n".join(found)
