"""The derivation helper: true steps pass, false ones fail naming the step, inequalities are checked in direction."""

from __future__ import annotations

import pytest
import sympy as sp

from vae_core.derivation import E, Gaussian, Notation, StepFailed, derive, eq, ge, gt, le, terms, tex

z = sp.Symbol("z", real=True)
mu = sp.Symbol(r"\mu", real=True)
sigma = sp.Symbol(r"\sigma", positive=True)
q = Gaussian(mu, sigma**2, r"q_\phi")


def test_a_true_chain_passes_and_displays_its_steps() -> None:
    d = derive(
        E((z - mu) ** 2 + 2 * z, z, q),
        eq(E((z - mu) ** 2, z, q) + 2 * E(z, z, q), "linearity of $\\mathbb{E}$"),
        eq(sigma**2 + 2 * mu, "the variance and the mean of $q_\\phi$"),
    )
    assert d.relation == "=" and d.methods == ["symbolic", "symbolic"]
    latex = d.latex()
    assert r"\mathbb{E}_{q_\phi}\left[" in latex and r"\sigma^{2} + 2 \mu" in latex
    assert r"\text{linearity of }\mathbb{E}" in latex
    assert "**" not in latex and "sqrt(" not in latex and "**" not in repr(d)


def test_a_wrong_step_fails_naming_it_and_showing_both_sides() -> None:
    with pytest.raises(StepFailed, match=r"step 2 \(forgot the square\)") as err:
        derive(
            E((z - mu) ** 2, z, q),
            eq(E(z**2, z, q) - 2 * mu * E(z, z, q) + mu**2, "expand the square"),
            eq(sigma, "forgot the square"),
        )
    message = str(err.value)
    assert r"claimed: = \sigma" in message and r"\mathbb{E}_{q_\phi}" in message


def test_a_wrong_step_with_free_symbols_fails_numerically_when_sympy_cannot_decide() -> None:
    a = sp.Symbol("a", positive=True)
    with pytest.raises(StepFailed, match="step 1"):
        derive(sp.log(1 + sp.exp(a)), eq(a + sp.log(1 + sp.exp(-a)) + sp.Rational(1, 10**6), "factor out e^a"))
    # the true version passes
    assert derive(sp.log(1 + sp.exp(a)), eq(a + sp.log(1 + sp.exp(-a)), "factor out $e^a$")).relation == "="


def test_jensen_holds_one_way_and_fails_the_other() -> None:
    assert derive(sp.log(E(sp.exp(z), z, q)), ge(E(z, z, q), "Jensen")).relation == ">="
    with pytest.raises(StepFailed, match="Jensen the wrong way"):
        derive(sp.log(E(sp.exp(z), z, q)), le(E(z, z, q), "Jensen the wrong way"))


def test_strict_and_symbolic_inequalities() -> None:
    assert derive(sigma**2 + 1, gt(sigma**2, "drop a positive term")).relation == ">"
    with pytest.raises(StepFailed):
        derive(sigma**2, gt(sigma**2, "a number is not greater than itself"))
    with pytest.raises(ValueError, match="cannot mix"):
        derive(sigma, le(sigma + 1, "up"), ge(sigma, "down"))


def test_the_domain_bounds_a_numerical_check() -> None:
    x = sp.Symbol("x", real=True)
    with pytest.raises(StepFailed, match="fails at x = -"):  # the square root of x^2 is |x|, not x
        derive(sp.sqrt(x**2), eq(x, "the square root of a square"), points=30)
    assert derive(sp.sqrt(x**2), eq(x, "for $x > 0$"), domain={x: (0.1, 3.0)}).methods == ["numeric"]


def test_notation_prints_its_tex_and_evaluates_to_its_value() -> None:
    p = Notation(r"p_\theta(x)", sp.exp(-(z**2) / 2))
    assert tex(sp.log(p)) == r"\log p_\theta(x)"
    assert (
        tex(terms(sp.log(p), -sp.Rational(1, 2) * sp.log(2 * sp.pi)))
        == r"\log p_\theta(x) - \frac{1}{2} \log\left(2 \pi\right)"
    )
    assert derive(sp.log(p), eq(-(z**2) / 2, "the log of an exponential")).relation == "="
    with pytest.raises(StepFailed):
        derive(sp.log(p), eq(z**2 / 2, "a sign lost"))


def test_expectations_use_the_gaussian_moments_and_fall_back_to_integration() -> None:
    assert sp.simplify(E(z**4, z, q).doit() - (mu**4 + 6 * mu**2 * sigma**2 + 3 * sigma**4)) == 0
    assert sp.simplify(E(sp.exp(z), z, q).doit() - sp.exp(mu + sigma**2 / 2)) == 0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        derive(sigma)
    with pytest.raises(ValueError, match="relation"):
        eq(sigma, "x").__class__(sigma, "x", "==")
    with pytest.raises(ValueError, match="unbalanced"):
        derive(sigma, eq(sigma, "an odd $ sign")).latex()


def test_a_wrong_step_that_cannot_be_evaluated_numerically_still_fails_naming_it() -> None:
    m, n = sp.symbols("m M", integer=True, positive=True)
    x = sp.IndexedBase("x")
    total = sp.Sum(x[m] ** 2, (m, 1, n))
    with pytest.raises(StepFailed, match=r"step 1 \(a square lost\)"):
        derive(total, eq(sp.Sum(x[m], (m, 1, n)), "a square lost"))


def test_notation_and_expectations_survive_being_rebuilt_by_sympy() -> None:
    h = Notation("h(z)", z**2)
    assert sp.Integral(h * sp.exp(-(z**2)), (z, -sp.oo, sp.oo)).doit() == sp.sqrt(sp.pi) / 2
    assert (sigma ** Notation("x_m", z)).func(*(sigma ** Notation("x_m", z)).args) == sigma ** Notation("x_m", z)
    e = E(z**2 + mu, z, q)
    assert e.func(*e.args) == e and e.xreplace({mu: 0}).doit() == sigma**2


def test_nested_expectations_keep_their_variables_apart() -> None:
    z2 = sp.Symbol("z_2", real=True)
    nested = E(E(z * z2 + z**2 + sp.exp(z2), z2, q), z, q)
    expected = mu**2 + (mu**2 + sigma**2) + sp.exp(mu + sigma**2 / 2)
    assert sp.simplify(nested.doit() - expected) == 0


def test_gauss_hermite_expectations_for_what_sympy_cannot_integrate() -> None:
    z2 = sp.Symbol("z_2", real=True)
    g = Gaussian(sp.Rational(1, 2), sp.Rational(1, 4), "q")
    assert (
        abs(float(E(sp.exp(z), z, g, nodes=40).doit()) - float(sp.exp(sp.Rational(1, 2) + sp.Rational(1, 8)))) < 1e-12
    )
    assert isinstance(E(sp.exp(z), z, q, nodes=40).doit(), E)  # stays unevaluated while mu and sigma are symbols
    log_mean = sp.log((sp.exp(z) + sp.exp(z2)) / 2)
    nested = E(E(log_mean, z2, g, nodes=60), z, g, nodes=60)
    jensen = sp.log(E(E((sp.exp(z) + sp.exp(z2)) / 2, z2, g), z, g))
    assert derive(nested, le(jensen, "Jensen")).relation == "<="
    with pytest.raises(StepFailed, match="the wrong way"):
        derive(nested, ge(jensen, "Jensen the wrong way"))


def test_gaussian_exponentials_in_closed_form() -> None:
    standard = Gaussian(0, 1, "p")
    assert sp.simplify(E(sp.exp(z**2 / 4), z, standard).doit() - sp.sqrt(2)) == 0
    # the chi-square integral of a Gaussian posterior N(nu, s^2) against the prior N(0, 1)
    nu, s = sp.Symbol("nu", real=True), sp.Rational(1, 2)
    ratio = Gaussian(nu, s**2, "p").pdf(z) / standard.pdf(z)
    expected = sp.exp(nu**2 / (2 - s**2)) / (s * sp.sqrt(2 - s**2))
    assert sp.simplify(E(ratio**2, z, standard).doit() - expected) == 0
