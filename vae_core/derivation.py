"""Derivations written as a student writes them, every link checked by SymPy, displayed from the checked expressions.

A derivation is a start expression and a chain of steps; each step is an expression, the relation that links it to
the one before (=, ≤, ≥, <, >) and a one-line reason. `derive` checks every link when it is called and returns a
`Derivation` whose display is rendered from those same expressions, so what a reader reads is what was checked.

The expressions may use notation that reads like the blackboard and evaluates to something concrete:

- `Notation(tex, value)` prints as `tex` (say `p_\\theta(x)`) and stands for `value` (its density on a toy model);
- `E(integrand, z, Gaussian(mean, variance, label))` prints as an expectation under `label` and is computed
  exactly: by the moments of the Gaussian for polynomial integrands, by integration otherwise.

A link is checked by evaluating both sides (`doit`) and simplifying their difference. An equality that SymPy cannot
decide, and any inequality whose sign it cannot decide, is checked numerically at random points of the symbols'
domains (positive symbols in (0.2, 3), real ones in (−2, 2), or the `domain` given). A link that fails raises
`StepFailed`, naming the step, its reason and both sides.
"""

from __future__ import annotations

import math
import operator
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
from sympy.printing.latex import LatexPrinter

__all__ = [
    "Derivation",
    "E",
    "Gaussian",
    "Notation",
    "Step",
    "StepFailed",
    "derive",
    "eq",
    "ge",
    "gt",
    "le",
    "lt",
    "terms",
    "tex",
]


class StepFailed(AssertionError):
    """A link of a derivation does not hold: the message names the step, its reason and both sides."""


class Notation(sp.Expr):
    """An expression that prints as `tex` and evaluates (`doit`) to `value`, e.g. `p_\\theta(x)` for a density."""

    is_commutative = True

    def __new__(cls, tex: str | sp.Symbol, value: sp.Expr | float) -> Notation:
        label = tex if isinstance(tex, sp.Symbol) else sp.Symbol(tex)  # SymPy rebuilds it from its args
        return sp.Expr.__new__(cls, label, sp.sympify(value))

    @property
    def tex(self) -> str:
        return self.args[0].name

    @property
    def value(self) -> sp.Expr:
        return self.args[1]

    @property
    def free_symbols(self) -> set[sp.Basic]:
        return self.value.free_symbols

    def doit(self, **hints: object) -> sp.Expr:
        return self.value.doit(**hints) if hints.get("deep", True) else self.value

    def _latex(self, printer: LatexPrinter) -> str:
        return self.tex

    def _sympystr(self, printer: object) -> str:
        return self.tex


@dataclass(frozen=True)
class Gaussian:
    """A univariate Gaussian N(mean, variance) that an expectation is taken under; `label` is how it prints."""

    mean: sp.Expr
    variance: sp.Expr
    label: str

    def pdf(self, z: sp.Symbol) -> sp.Expr:
        return sp.exp(-((z - self.mean) ** 2) / (2 * self.variance)) / sp.sqrt(2 * sp.pi * self.variance)


def _gaussian_moment(k: int) -> sp.Integer:
    """E[ε^k] for ε ~ N(0, 1): zero for odd k, (k − 1)!! for even k."""
    return sp.Integer(0) if k % 2 else sp.factorial2(k - 1)


def _gaussian_exponentials(expr: sp.Expr, eps: sp.Symbol) -> sp.Expr | None:
    """E[expr] for ε ~ N(0, 1) when expr is a sum of c·exp(a ε² + b ε + d) terms, else None.

    Completing the square gives E[exp(a ε² + b ε)] = exp(b² / (2 (1 − 2a))) / √(1 − 2a), which holds where the
    integral converges, 1 − 2a > 0: the chapter states that condition (a proposal wider than half the posterior).
    """
    total = sp.Integer(0)
    for term in sp.Add.make_args(sp.expand(sp.powsimp(expr, combine="exp"))):
        coeff, rest = term.as_independent(eps, as_Add=False)
        rest = sp.powsimp(rest, combine="exp")
        if rest == 1:
            total += coeff
            continue
        if not isinstance(rest, sp.exp):
            return None
        exponent = sp.expand(rest.args[0])
        if not exponent.is_polynomial(eps) or sp.degree(exponent, eps) > 2:
            return None
        a, b, d = (exponent.coeff(eps, k) for k in (2, 1, 0))
        total += coeff * sp.exp(d + b**2 / (2 * (1 - 2 * a))) / sp.sqrt(1 - 2 * a)
    return total


class E(sp.Expr):
    """The expectation of `integrand` over `z ~ dist`; prints as E_label[integrand], evaluates exactly.

    With `nodes=n`, it is evaluated numerically instead, by an n-point Gauss–Hermite rule, once every other symbol
    has a value: for integrands such as the log of a sum of Gaussians, which SymPy cannot integrate.
    """

    is_commutative = True

    def __new__(cls, integrand: sp.Expr, z: sp.Symbol, dist: Gaussian, *rebuilt: sp.Basic, nodes: int = 0) -> E:
        if rebuilt:  # SymPy rebuilds an expression from its args: (integrand, z, mean, variance, label, nodes)
            return sp.Expr.__new__(cls, sp.sympify(integrand), z, dist, *rebuilt)
        label = sp.Symbol(dist.label)
        mean, variance = sp.sympify(dist.mean), sp.sympify(dist.variance)
        return sp.Expr.__new__(cls, sp.sympify(integrand), z, mean, variance, label, sp.Integer(nodes))

    @property
    def integrand(self) -> sp.Expr:
        return self.args[0]

    @property
    def variable(self) -> sp.Symbol:
        return self.args[1]

    @property
    def dist(self) -> Gaussian:
        return Gaussian(self.args[2], self.args[3], self.args[4].name)

    @property
    def nodes(self) -> int:
        return int(self.args[5])

    @property
    def free_symbols(self) -> set[sp.Basic]:
        inner = (self.integrand.free_symbols - {self.variable}) | self.args[2].free_symbols | self.args[3].free_symbols
        return inner

    def doit(self, **hints: object) -> sp.Expr:
        z, dist = self.variable, self.dist
        integrand = self.integrand.doit(**hints) if hints.get("deep", True) else self.integrand
        if self.nodes:
            value = self._quadrature(integrand)
            return self.func(integrand, *self.args[1:]) if value is None else value
        integrand = sp.expand(sp.expand_log(integrand, force=True))
        eps = sp.Dummy("epsilon", real=True)  # fresh, so nested expectations never share their variable
        standardized = sp.expand(integrand.subs(z, dist.mean + sp.sqrt(dist.variance) * eps))
        if standardized.is_polynomial(eps):
            poly = sp.Poly(standardized, eps)
            return sp.expand(sum(c * _gaussian_moment(m[0]) for m, c in zip(poly.monoms(), poly.coeffs(), strict=True)))
        closed = _gaussian_exponentials(standardized, eps)
        if closed is not None:
            return closed
        density = sp.exp(-(eps**2) / 2) / sp.sqrt(2 * sp.pi)
        result = sp.integrate(standardized * density, (eps, -sp.oo, sp.oo))
        return sp.simplify(result.rewrite(sp.erf)) if result.has(sp.erfc) else result

    def _rule(self) -> tuple[np.ndarray, np.ndarray]:
        """The Gauss–Hermite points in z and their normalized weights."""
        x, w = np.polynomial.hermite_e.hermegauss(self.nodes)  # for the weight exp(-x^2 / 2)
        return float(self.dist.mean) + math.sqrt(float(self.dist.variance)) * x, w / w.sum()

    def _quadrature(self, integrand: sp.Expr) -> sp.Float | None:
        """The Gauss–Hermite value of the expectation, or None while another symbol is still free."""
        z, dist = self.variable, self.dist
        if (integrand.free_symbols - {z}) or dist.mean.free_symbols or dist.variance.free_symbols:
            return None
        points, weights = self._rule()
        inner = [e for e in integrand.atoms(E) if e.nodes]
        stand_ins = [sp.Dummy() for _ in inner]
        columns = []
        for e in inner:  # a nested expectation over u given z: one vectorized evaluation on the product grid
            u_points, u_weights = e._rule()
            f = sp.lambdify((e.variable, z), e.integrand.doit(), "numpy")
            columns.append(
                u_weights @ np.broadcast_to(f(u_points[:, None], points[None, :]), (len(u_points), len(points)))
            )
        outer = integrand.xreplace(dict(zip(inner, stand_ins, strict=True)))
        values = sp.lambdify((z, *stand_ins), outer, "numpy")(points, *columns)
        return sp.Float(float(weights @ np.broadcast_to(values, points.shape)), 15)

    def _latex(self, printer: LatexPrinter) -> str:
        return rf"\mathbb{{E}}_{{{self.args[4].name}}}\left[{printer._print(self.integrand)}\right]"

    def _sympystr(self, printer: object) -> str:
        return f"E_{self.args[4].name}[{self.integrand}]"


class _Printer(LatexPrinter):
    """SymPy's LaTeX, as a student writes it: terms in the order given, ½ log(·) rather than log(·)/2, log x."""

    def __init__(self) -> None:
        super().__init__({"order": "none", "long_frac_ratio": 3})

    def _print_Mul(self, expr: sp.Mul) -> str:
        coeff, rest = expr.as_coeff_Mul()
        if coeff.is_Rational and not coeff.is_Integer and (rest.is_Function or isinstance(rest, Notation | E)):
            sign = "- " if coeff < 0 else ""
            return rf"{sign}\frac{{{abs(coeff.p)}}}{{{coeff.q}}} {self._print(rest)}"
        return super()._print_Mul(expr)

    def _print_Pow(self, expr: sp.Pow) -> str:
        base = expr.base
        if isinstance(base, Notation) and any(mark in base.tex for mark in (r"\frac", "^", r"\|")):
            return rf"\left({base.tex}\right)^{{{self._print(expr.exp)}}}"
        return super()._print_Pow(expr)

    def _print_log(self, expr: sp.log, exp: str | None = None) -> str:
        arg = expr.args[0]
        inner = self._print(arg)
        simple = arg.is_Symbol or arg.is_Integer or isinstance(arg, Notation) or (arg.is_Pow and arg.base.is_Symbol)
        body = rf"\log {inner}" if simple else rf"\log\left({inner}\right)"
        return rf"\left({body}\right)^{{{exp}}}" if exp else body


def terms(*summands: sp.Expr) -> sp.Expr:
    """A sum that keeps its terms in the order written (SymPy would sort them)."""
    return sp.Add(*summands, evaluate=False)


def _text(reason: str) -> str:
    """A reason as display LaTeX: plain words in \\text, `$…$` spans as mathematics."""
    parts = reason.split("$")
    if len(parts) % 2 == 0:
        raise ValueError(f"unbalanced $ in the reason {reason!r}")
    return "".join(rf"\text{{{p}}}" if i % 2 == 0 else p for i, p in enumerate(parts) if p)


def tex(expr: sp.Basic) -> str:
    """The LaTeX of `expr`, typeset as a student writes it (the printer of every derivation)."""
    return _Printer().doprint(expr)


_RELATIONS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "=": ("=", operator.eq),
    "<=": (r"\le", operator.le),
    ">=": (r"\ge", operator.ge),
    "<": ("<", operator.lt),
    ">": (">", operator.gt),
}


@dataclass(frozen=True)
class Step:
    """One line of a derivation: `relation` links `expr` to the line before; `reason` says why."""

    expr: sp.Expr
    reason: str
    relation: str = "="

    def __post_init__(self) -> None:
        if self.relation not in _RELATIONS:
            raise ValueError(f"relation must be one of {sorted(_RELATIONS)}, got {self.relation!r}")


def eq(expr: sp.Expr, reason: str) -> Step:
    return Step(expr, reason, "=")


def le(expr: sp.Expr, reason: str) -> Step:
    """The line before is ≤ `expr`."""
    return Step(expr, reason, "<=")


def ge(expr: sp.Expr, reason: str) -> Step:
    """The line before is ≥ `expr`."""
    return Step(expr, reason, ">=")


def lt(expr: sp.Expr, reason: str) -> Step:
    return Step(expr, reason, "<")


def gt(expr: sp.Expr, reason: str) -> Step:
    return Step(expr, reason, ">")


def _evaluate(expr: sp.Expr) -> sp.Expr:
    return sp.sympify(expr).doit(deep=True)


def _zero(diff: sp.Expr) -> bool | None:
    """Whether `diff` is identically zero: True, False (a nonzero constant), or None (undecided)."""
    for simplify in (
        lambda d: d,
        sp.expand,
        lambda d: sp.expand(sp.expand_log(d, force=True)),
        sp.simplify,
        lambda d: sp.simplify(sp.expand(sp.expand_log(sp.logcombine(d, force=True), force=True))),
    ):
        d = simplify(diff)
        if d == 0:
            return True
        if d.is_number and d.is_zero is False:
            return False
    return None


def _sign(diff: sp.Expr) -> sp.Expr:
    return sp.simplify(sp.expand(sp.expand_log(diff, force=True)))


def _sample(symbols: Iterable[sp.Symbol], domain: Mapping[sp.Symbol, tuple[float, float]], rng: random.Random) -> dict:
    point = {}
    for s in sorted(symbols, key=str):
        if s in domain:
            lo, hi = domain[s]
        elif s.is_positive:
            lo, hi = 0.2, 3.0
        else:
            lo, hi = -2.0, 2.0
        value = rng.uniform(lo, hi)
        point[s] = sp.Integer(round(value)) if s.is_integer else sp.Float(value, 30)
    return point


def _numeric(
    a: sp.Expr, b: sp.Expr, relation: str, domain: Mapping[sp.Symbol, tuple[float, float]], points: int, seed: int
) -> tuple[bool, dict | None]:
    """Check `a relation b` at random points; return (holds, the first point where it fails)."""
    _, compare = _RELATIONS[relation]
    rng = random.Random(seed)
    symbols = a.free_symbols | b.free_symbols
    for _ in range(points):
        point = _sample(symbols, domain, rng)
        try:
            x, y = (complex(sp.N(side.subs(point), 20)) for side in (a, b))
        except TypeError:  # SymPy cannot evaluate a side to a number there (a symbolic sum, an unknown function)
            return False, point
        if abs(x.imag) > 1e-9 or abs(y.imag) > 1e-9:
            return False, point
        x, y = x.real, y.real
        tol = 1e-9 * max(1.0, abs(x), abs(y))
        if relation == "=":
            ok = abs(x - y) <= tol
        elif relation in ("<=", "<"):
            ok = x <= y + tol if relation == "<=" else x < y - tol
        else:
            ok = x >= y - tol if relation == ">=" else x > y + tol
        if not ok:
            return False, point
    return True, None


@dataclass
class Derivation:
    """A checked chain `start rel₁ e₁ rel₂ e₂ …`; displays itself as one aligned equation with the reasons."""

    start: sp.Expr
    steps: Sequence[Step]
    assumptions: str = ""
    methods: list[str] = field(default_factory=list)

    @property
    def result(self) -> sp.Expr:
        return self.steps[-1].expr

    @property
    def relation(self) -> str:
        """The relation between `start` and `result` that the chain proves."""
        kinds = {s.relation for s in self.steps} - {"="}
        if not kinds:
            return "="
        strict = any(s.relation in ("<", ">") for s in self.steps)
        lower = kinds <= {"<=", "<"}
        return ("<" if lower else ">") if strict else ("<=" if lower else ">=")

    def latex(self) -> str:
        """One `aligned` display: the start on a line of its own, then each step with its reason in grey beneath it.

        Steps begin at the left margin rather than after the start expression, so the display fits a phone's width.
        """
        rows = [rf"& {tex(self.start)}"]
        for step in self.steps:
            symbol = _RELATIONS[step.relation][0]
            rows.append(rf"&\quad {symbol} {tex(step.expr)} \\ &\qquad\quad {{\color{{gray}}{_text(step.reason)}}}")
        body = r" \\[2pt] ".join(rows)
        if self.assumptions:
            body += rf" \\[4pt] &\text{{for }} {self.assumptions}"
        return rf"\begin{{aligned}} {body} \end{{aligned}}"

    def _repr_latex_(self) -> str:
        return f"$$ {self.latex()} $$"

    def __repr__(self) -> str:
        return f"<Derivation of {len(self.steps)} checked steps ({', '.join(sorted(set(self.methods)))})>"


def derive(
    start: sp.Expr,
    *steps: Step,
    assumptions: str = "",
    domain: Mapping[sp.Symbol, tuple[float, float]] | None = None,
    points: int = 12,
    seed: int = 0,
) -> Derivation:
    """Check every link of `start`, `steps`; return the displayable `Derivation`, or raise `StepFailed` on a false link.

    `assumptions` is the LaTeX the display states under the chain (e.g. `\\sigma > 0`); the symbols' own SymPy
    assumptions (`positive=True`, …) are what the check uses, with `domain` bounding the random points of a
    numerical check (e.g. `{c: (0.51, 4)}` where a result needs c > 1/2).
    """
    if not steps:
        raise ValueError("a derivation needs at least one step")
    kinds = {s.relation for s in steps} - {"="}
    if kinds & {"<=", "<"} and kinds & {">=", ">"}:
        raise ValueError("a chain cannot mix ≤ and ≥: it would prove nothing about its ends")
    methods: list[str] = []
    previous, evaluated = start, _evaluate(start)
    for i, step in enumerate(steps, start=1):
        a, b = evaluated, _evaluate(step.expr)
        evaluated = b
        if step.relation == "=":
            decided = _zero(a - b)
            if decided is True:
                methods.append("symbolic")
                previous = step.expr
                continue
            if decided is False:
                _fail(i, step, previous, a, b, "their difference is a nonzero constant")
        else:
            diff = _sign(b - a if step.relation in ("<=", "<") else a - b)
            sign_ok = diff.is_nonnegative if step.relation in ("<=", ">=") else diff.is_positive
            if sign_ok:
                methods.append("symbolic")
                previous = step.expr
                continue
            if diff.is_number and sign_ok is False:
                _fail(i, step, previous, a, b, "the relation is false")
        holds, point = _numeric(a, b, step.relation, domain or {}, points, seed + i)
        if not holds:
            where = ", ".join(f"{tex(k)} = {float(v):.3g}" for k, v in (point or {}).items())
            _fail(i, step, previous, a, b, f"it fails at {where or 'every point'}")
        methods.append("numeric")
        previous = step.expr
    return Derivation(start, list(steps), assumptions, methods)


def _fail(i: int, step: Step, previous: sp.Expr, a: sp.Expr, b: sp.Expr, why: str) -> None:
    relation = _RELATIONS[step.relation][0]
    raise StepFailed(
        f"step {i} ({step.reason}) does not hold: {why}.\n"
        f"  before:  {tex(previous)}\n  claimed: {relation} {tex(step.expr)}\n"
        f"  evaluated, before: {tex(sp.simplify(a))}\n  evaluated, claimed: {tex(sp.simplify(b))}"
    )
