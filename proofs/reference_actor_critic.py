r"""The shipped actor-critic references compute what their docstrings say.

Users check their own REINFORCE, PPO, IMPALA or DPO-variant code against
:mod:`rlmath.reference`; these claims check the reference functions no other claim calls:
``policy_gradient_loss``, ``categorical_entropy``, ``adaptive_kl_coefficient``,
``preference_loss``, ``dual_clip_ppo_loss``, ``actor_critic_loss`` and ``vtrace_targets``.
Every exact leg *calls* the shipped function and compares it with a side computed by other
means: the lambdified conclusion of a sympy derivation written in another form than the
code, central differences of the shipped function (for gradients), or a direct loop of the
paper's formula.

Main statements.

1. REINFORCE loss (``policy-gradient-loss-reference``): for
   $\mathcal L = -\frac1N \sum_i x_i A_i$, $x_i = \log\pi_\theta(a_i \mid s_i)$,
   $\partial \mathcal L / \partial x_k = -A_k / N$.
2. Entropy (``categorical-entropy-reference``): with $S = \sum_b e^{\ell_b}$,
   $-\sum_a p_a \log p_a = \log S - \sum_a p_a \ell_a$, $p_a = e^{\ell_a}/S$.
3. Adaptive KL (``adaptive-kl-coefficient-reference``): Schulman et al.'s rule is
   $\beta' = \beta f^{s}$, $s = -1$ below the band, $+1$ above it, $0$ inside, and the band
   $[d_\mathrm{targ}/\tau, \tau d_\mathrm{targ}]$ is never empty ($\tau > 1$).
4. Preference losses: conservative DPO is the DPO loss averaged over labels flipped with
   probability $\varepsilon$ (``conservative-dpo-loss-reference``); the robust loss averaged
   over flipped labels is the clean DPO loss (``robust-dpo-loss-reference``); the IPO loss's
   derivative in the length-averaged margin is $2(\tilde z - 1/(2\beta))$
   (``ipo-loss-reference``); the hinge's is $-\beta$ where $\beta z < 1$ and 0 beyond
   (``hinge-loss-reference``).
5. Dual-clip PPO (``dual-clip-ppo-loss-reference``): the objective of entry $i$ is
   $A \min(\rho, 1 + \epsilon)$ for $A \ge 0$ and $A \min(\max(\rho, 1 - \epsilon), c)$ for
   $A < 0$, so it is bounded below by $c A$ (Ye et al.).
6. Combined loss (``actor-critic-loss-reference``): the directional derivative of PPO's
   combined loss (clip range not binding) along $(u, w, z)$ in (log-probs, values, entropies)
   is $\frac1N \sum_i [(-\rho_i A_i + \beta (1 - r_i)) u_i + c_v (V_i - R_i) w_i - c_e z_i]$,
   $r_i = \pi_\mathrm{ref}/\pi_\theta$.
7. V-trace (``vtrace-targets-reference``): the backward recursion
   $v_t - V_t = \rho_t \delta_t + \gamma c_t (v_{t+1} - V_{t+1})$ unrolls to IMPALA's
   closed form $\sum_k \gamma^{k-t} (\prod_{i<k} c_i) \rho_k \delta_k$ (a 4-step symbolic
   instance), and with all weights 1 it is $V_t + \sum_l \gamma^l \delta_{t+l}$, GAE's
   $\lambda = 1$ sum, i.e. the bootstrapped discounted return (every segment length).

Conventions: those of :mod:`rlmath.reference` (losses minimised, means over entries, ratios
formed in log space, old log-probs, advantages, returns, reference log-probs constants).

Proof sketch: algebra of each formula (sympy), case analyses over the kinks of the clipped
objectives and of the KL rule's band, the V-trace recursion unrolled.

How the two sides of each exact leg are computed: the left side always calls the shipped
function (its value, or central differences of it for gradients); the right side is the
lambdified conclusion (another formula than the code's: log-sum-exp minus the mean logit for
the entropy, the flip average for cDPO and robust DPO, min/max closed forms for the clipped
losses) or, for V-trace, a direct loop of IMPALA's eq. 1 term by term.

References: Williams 1992; Cover and Thomas 2006, eq. 2.1; Schulman et al. 2017
(arXiv:1707.06347), Sec. 4 and eqs. 7 and 9; Rafailov et al. 2023, eq. 7; Mitchell 2023;
Chowdhury et al. 2024; Azar et al. 2024, eq. 17; Zhao et al. 2023; Ye et al. 2020
(arXiv:1912.09729); Espeholt et al. 2018, eq. 1 and Remark 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp
from hypothesis import strategies as st

from rlmath import reference
from rlmath.claims import (
    lazy_lambdify,
    Case,
    CaseAnalysis,
    Claim,
    Derivation,
    ExactLeg,
    Mutant,
    Statement,
    Step,
    SymbolicLeg,
    SymbolicMutation,
    lambdify,
)
from rlmath.named_functions import Named
from rlmath.symbolic import IndexSum
from rlmath.tolerances import EPS, exact_rtol

TINY = float(np.finfo(np.float64).tiny)



def _signed_magnitudes(rng: np.random.Generator, size: int, low: float, high: float) -> np.ndarray:
    """``size`` reals with magnitudes log-uniform in [low, high] and random signs."""
    magnitudes = np.exp(rng.uniform(np.log(low), np.log(high), size))
    return rng.choice((-1.0, 1.0), size) * magnitudes


# ============================================================================ 1. REINFORCE
# Entry i's share of the loss is -x_i A_i / N (x_i = log pi(a_i | s_i)); the other entries do
# not depend on x_i, so d L / d x_i is the derivative of the share.
pg_x = sp.Symbol("x", real=True)  # log pi_theta(a_i | s_i)
pg_y = sp.Symbol("y", real=True)  # the variable of d/dy (evaluated at x)
pg_A = sp.Symbol("A", real=True)
N = sp.Symbol("N", integer=True, positive=True)


def pg_share(log_prob: sp.Expr) -> sp.Expr:
    r"""$-\frac1N x A$: entry $i$'s share of the REINFORCE loss (unevaluated)."""
    return sp.Mul(-1, sp.Pow(N, -1), sp.Mul(log_prob, pg_A, evaluate=False), evaluate=False)


pg_gradient = Derivation(
    "pg-loss-gradient",
    (
        Step(
            sp.Subs(sp.Derivative(pg_share(pg_y), pg_y), pg_y, pg_x),
            "d/dx_i of the loss: only entry i's share -x_i A_i / N depends on x_i",
        ),
        Step(sp.Mul(-1, sp.Pow(N, -1), pg_A, evaluate=False), "d(x A)/dx = A (A is a constant)"),
    ),
    statement=r"\partial_{x_i} \mathcal L_\mathrm{PG} = -A_i / N",
)


@dataclass(frozen=True)
class PGExample:
    log_probs: np.ndarray  # [N]
    advantages: np.ndarray  # [N]


@st.composite
def pg_examples(draw: st.DrawFn) -> PGExample:
    """1..8 entries; log-probs in [-30, 0], advantages of magnitude 1e-3..1e3, both signs."""
    n = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return PGExample(rng.uniform(-30.0, 0.0, n), _signed_magnitudes(rng, n, 1e-3, 1e3))


PG_STEP = 1.0  # the loss is linear in each x_i: any step is exact but for rounding


def _pg_rounding(example: PGExample) -> float:
    """Bound on the error of one evaluation of the loss: (N + 4) EPS mean(|x| + 1)|A|
    (a mean of N products, Higham 2002 eq. 4.4; the + 1 covers the step)."""
    size = np.mean((np.abs(example.log_probs) + PG_STEP) * np.abs(example.advantages))
    return (example.log_probs.size + 4) * EPS * float(size)


def shipped_pg_differences(example: PGExample) -> np.ndarray:
    """Central differences of the shipped :func:`rlmath.reference.policy_gradient_loss` in
    each log-prob, [N], divided by the step actually taken."""
    out = np.empty(example.log_probs.size)
    for k in range(example.log_probs.size):
        up, down = example.log_probs.copy(), example.log_probs.copy()
        up[k] += PG_STEP
        down[k] -= PG_STEP
        forward = reference.policy_gradient_loss(up, example.advantages)
        backward = reference.policy_gradient_loss(down, example.advantages)
        out[k] = (forward - backward) / (up[k] - down[k])
    return out


def variant_pg_differences(example: PGExample) -> np.ndarray:
    """A correct variant written differently: the same central differences of
    -dot(x, A) / N (math.fsum of the products)."""
    import math

    def loss(x: np.ndarray) -> float:
        return -math.fsum(x * example.advantages) / x.size

    out = np.empty(example.log_probs.size)
    for k in range(example.log_probs.size):
        up, down = example.log_probs.copy(), example.log_probs.copy()
        up[k] += PG_STEP
        down[k] -= PG_STEP
        out[k] = (loss(up) - loss(down)) / (up[k] - down[k])
    return out


def pg_differences_and_variant(example: PGExample) -> np.ndarray:
    """[shipped, variant]: [2N] (the rhs is evaluated on the entries twice)."""
    return np.concatenate([shipped_pg_differences(example), variant_pg_differences(example)])


def _pg_scale(example: PGExample) -> float:
    return float(np.max(np.abs(example.advantages))) / example.log_probs.size


def _pg_rtol(example: PGExample) -> float:
    bound = 2.0 * _pg_rounding(example) / (2.0 * PG_STEP)
    return max(exact_rtol(n_terms=example.log_probs.size + 4), 4.0 * bound / _pg_scale(example))


PG_SYMBOLS = (pg_x, pg_A, N)


def _pg_arguments(example: PGExample) -> tuple:
    twice = lambda x: np.concatenate([x, x])  # noqa: E731
    return twice(example.log_probs), twice(example.advantages), example.log_probs.size


# ============================================================================ 2. entropy
# H(softmax(l)) = log S - sum_a p_a l_a with S = sum_b e^{l_b}: the log-sum-exp form, which
# needs no log of a probability (it is how a stable implementation can be checked).
n = sp.Symbol("n", integer=True, positive=True)  # number of actions
a_ = sp.Symbol("a", integer=True)
b_ = sp.Symbol("b", integer=True)
ell = sp.IndexedBase("ell", real=True)  # the logits, shifted by their maximum
S_ = IndexSum(sp.exp(ell[b_]), (b_, 0, n - 1))  # sum_b e^{l_b} (positive)


def over_actions(term: sp.Expr) -> sp.Expr:
    return IndexSum(term, (a_, 0, n - 1))


softmax_p = sp.exp(ell[a_]) / S_
entropy_lse = Derivation(
    "entropy-log-sum-exp",
    (
        Step(
            -over_actions(sp.Mul(softmax_p, sp.log(softmax_p), evaluate=False)),
            "H(p) = -sum_a p_a log p_a with p_a = e^{l_a} / S (Cover and Thomas eq. 2.1)",
        ),
        Step(
            -over_actions(softmax_p * (ell[a_] - sp.log(S_))),
            "log(e^{l_a} / S) = l_a - log S (S > 0)",
        ),
        Step(
            -over_actions(softmax_p * ell[a_]) + sp.log(S_) * over_actions(softmax_p),
            "linearity of the sum",
        ),
        Step(
            sp.log(S_) - over_actions(softmax_p * ell[a_]),
            "the probabilities sum to 1: sum_a e^{l_a} / S = S / S",
        ),
    ),
    statement=r"H(\operatorname{softmax}(\ell)) = \log\sum_b e^{\ell_b} - \sum_a p_a \ell_a",
)
ENTROPY_SYMBOLS = (ell, n)

#: the stand-in of a masked (-inf) logit in the lambdified side: e^-800 is exactly 0 in
#: float64, so it contributes exactly what -inf does (p = 0 and 0 * l = 0), without 0 * inf
MASKED_STAND_IN = -800.0


@st.composite
def entropy_examples(draw: st.DrawFn) -> np.ndarray:
    """Logits [S, K], S in 1..3, K in 1..6; spreads 1e-3..30, offsets up to 1e3 (a naive
    softmax overflows), and masked actions (-inf) in some rows (never all of a row)."""
    rows, k = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    spread = draw(st.sampled_from((1e-3, 1.0, 5.0, 30.0)))
    offset = draw(st.sampled_from((0.0, 0.0, 1e3, -1e3)))
    logits = offset + spread * rng.standard_normal((rows, k))
    if draw(st.booleans()) and k > 1:
        mask = rng.random((rows, k)) < 0.4
        mask[np.arange(rows), rng.integers(0, k, rows)] = False  # one action stays
        logits[mask] = -np.inf
    return logits


def _entropy_arguments(logits: np.ndarray) -> tuple:
    """(shifted logits [K, S] (actions first, so the lambdified sum runs over rows), K):
    logits minus each row's maximum (softmax and H do not change), -inf as MASKED_STAND_IN."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    shifted = np.where(np.isneginf(shifted), MASKED_STAND_IN, shifted)
    return np.concatenate([shifted.T, shifted.T], axis=1), logits.shape[-1]


def entropy_by_entr(logits: np.ndarray) -> np.ndarray:
    """A correct variant written differently: sum_a entr(p_a), entr(p) = -p log p (and
    entr(0) = 0) from scipy.special, p = scipy.special.softmax(logits): [S]."""
    from scipy.special import entr, softmax

    result: np.ndarray = entr(softmax(logits, axis=-1)).sum(axis=-1)
    return result


def shipped_entropy_and_variant(logits: np.ndarray) -> np.ndarray:
    """[shipped categorical_entropy, the entr variant]: [2S] (the rhs is evaluated twice)."""
    return np.concatenate([reference.categorical_entropy(logits), entropy_by_entr(logits)])


def _entropy_scale(logits: np.ndarray) -> float:
    """log K + max |l - max l| over unmasked entries + 1: the size of the terms cancelling."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    finite = np.where(np.isfinite(shifted), np.abs(shifted), 0.0)
    return float(np.log(logits.shape[-1]) + finite.max() + 1.0)


# ============================================================================ 3. adaptive KL
beta = sp.Symbol("beta", positive=True)
kl_d = sp.Symbol("d", nonnegative=True)  # observed KL
kl_target = sp.Symbol("d_targ", positive=True)
tol_ = sp.Symbol("tau", positive=True)  # tolerance, > 1
step_ = sp.Symbol("f", positive=True)  # factor, > 1
KL_SYMBOLS = (beta, kl_d, kl_target, tol_, step_)
KL_NAMES = {kl_target: r"d_\mathrm{targ}", tol_: r"\tau"}


def kl_rule(b: Any, d: Any, target: Any, tol: Any, f: Any, evaluate: bool = True) -> sp.Expr:
    """The update as the paper states it: halve below the band, double above, else keep."""
    below, above = (
        sp.Lt(d, target / tol, evaluate=evaluate),
        sp.Gt(d, target * tol, evaluate=evaluate),
    )
    return sp.Piecewise(
        (sp.Mul(b, sp.Pow(f, -1), evaluate=False), below),
        (sp.Mul(b, f, evaluate=False), above),
        (b, True),
        evaluate=evaluate,
    )


def kl_exponent(d: Any, target: Any, tol: Any, evaluate: bool = True) -> sp.Expr:
    """s = -1 below the band, +1 above it, 0 inside."""
    below, above = (
        sp.Lt(d, target / tol, evaluate=evaluate),
        sp.Gt(d, target * tol, evaluate=evaluate),
    )
    return sp.Piecewise((-1, below), (1, above), (0, True), evaluate=evaluate)


KL_RULE = kl_rule(beta, kl_d, kl_target, tol_, step_)
KL_CLOSED = beta * step_ ** kl_exponent(kl_d, kl_target, tol_)

_sigma = sp.Symbol("sigma", positive=True)
_lower = sp.Symbol("lambda_", nonnegative=True)  # position inside the band
_upper = sp.Symbol("mu_", nonnegative=True)
_kappa = sp.Symbol("kappa", positive=True)  # tau = 1 + kappa > 1
_phi = sp.Symbol("phi", positive=True)  # f = 1 + phi > 1
_TAU, _F = 1 + _kappa, 1 + _phi


def kl_closed(b: Any, d: Any, target: Any, tol: Any, f: Any) -> sp.Expr:
    r"""$\beta f^{s}$: the closed form of the rule."""
    return b * f ** kl_exponent(d, target, tol)


# d = d_targ / tau - sigma (below); inside, lambda > 0 and mu >= 0 are the distances from the
# lower and upper edge, which fixes d_targ = (lambda + mu) / (tau - 1/tau); above,
# d = d_targ tau + sigma written d_targ / tau + (the band's width) + sigma, so that sympy
# decides both conditions. tau = 1 + kappa, f = 1 + phi.
_band_width = kl_target * _kappa * (2 + _kappa) / (1 + _kappa)  # tau d_targ - d_targ / tau
_inside_target = (_lower + _upper) * _TAU / (_kappa * (2 + _kappa))
KL_REGIONS = {
    "below": (
        (kl_d < kl_target / tol_) & (tol_ > 1),
        {kl_d: kl_target / _TAU - _sigma, tol_: _TAU, step_: _F},
        beta / _F,
        "< d_targ / tau: divide by f",
    ),
    "inside": (
        (kl_d - kl_target / tol_ >= 0) & (kl_target * tol_ - kl_d >= 0) & (tol_ > 1),
        {kl_d: _inside_target / _TAU + _lower, kl_target: _inside_target, tol_: _TAU, step_: _F},
        beta,
        "in the band (the inequalities are strict): keep beta",
    ),
    "above": (
        (kl_d - kl_target * tol_ > 0) & (tol_ > 1),
        {kl_d: kl_target / _TAU + _band_width + _sigma, tol_: _TAU, step_: _F},
        beta * _F,
        "> tau d_targ: multiply by f",
    ),
}


def _kl_case(name: str) -> Case:
    region, param, picked, rule = KL_REGIONS[name]
    at = [sp.sympify(x).xreplace(param) for x in KL_SYMBOLS]
    return Case(
        region,
        Derivation(
            f"kl-update-{name}",
            (
                Step(kl_rule(*at, evaluate=False), f"the rule at d {rule}"),
                Step(picked, "the conditions are decided in this region"),
                Step(
                    sp.Mul(
                        at[0], sp.Pow(at[4], kl_exponent(*at[1:4], evaluate=False)), evaluate=False
                    ),
                    "the closed form picks the same power of f",
                ),
            ),
            statement=rf"\beta' \quad ({name})",
        ),
        param,
    )


def kl_mutation(name: str, wrong: Callable[..., sp.Expr]) -> SymbolicMutation:
    """The wrong closed form ``wrong(beta, d, d_targ, tau, f)`` in region ``name``."""
    return SymbolicMutation(f"kl-update-{name}", wrong(*KL_SYMBOLS).xreplace(KL_REGIONS[name][1]))


def kl_variant(wrong: Callable[..., sp.Expr]) -> Callable[[Any], np.ndarray]:
    """The (wrong) closed form, lambdified, as the exact leg's rhs (twice: the lhs holds the
    shipped rule and a correct variant)."""
    function = lazy_lambdify(KL_SYMBOLS, wrong(*KL_SYMBOLS))
    return lambda example: np.full(2, float(function(*_kl_arguments(example))))


kl_cases = CaseAnalysis(
    "kl-update",
    (tol_ > 1) & (step_ > 1),
    tuple(_kl_case(name) for name in KL_REGIONS),
)

kl_band = Derivation(
    "kl-band-not-empty",
    (
        Step(kl_target * _TAU, "the upper edge of the band, tau d_targ, tau = 1 + kappa > 1"),
        Step(
            kl_target / _TAU,
            "the lower edge d_targ / tau is not above it: the two conditions of the rule "
            "exclude each other, so the order of the checks does not matter",
            relation=">=",
            gap=kl_target * _kappa * (2 + _kappa) / (1 + _kappa),
        ),
    ),
    statement=r"\tau d_\mathrm{targ} \ge d_\mathrm{targ} / \tau",
)


@dataclass(frozen=True)
class KLExample:
    beta: float
    observed: float
    target: float
    tolerance: float
    factor: float


@st.composite
def kl_examples(draw: st.DrawFn) -> KLExample:
    """beta, d_targ log-uniform; tau in (1, 3], f in (1, 4] (1.5 and 2, the paper's, often);
    d anywhere, exactly at an edge (as float64 computes d_targ / tau and d_targ tau) or one
    ulp to either side of it."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b = float(np.exp(rng.uniform(-5, 3)))
    target = float(np.exp(rng.uniform(-7, 0)))
    tolerance = draw(st.one_of(st.just(1.5), st.floats(1.01, 3.0)))
    factor = draw(st.one_of(st.just(2.0), st.floats(1.01, 4.0)))
    edge = draw(st.sampled_from(("lower", "upper", "anywhere")))
    if edge == "anywhere":
        observed = float(target * np.exp(rng.uniform(-2, 2)))
    else:
        at = target / tolerance if edge == "lower" else target * tolerance
        observed = float(at + draw(st.sampled_from((-1, 0, 0, 1))) * np.spacing(at))
    return KLExample(b, observed, target, tolerance, factor)


def shipped_kl(example: KLExample) -> float:
    return reference.adaptive_kl_coefficient(
        example.beta,
        example.observed,
        target_kl=example.target,
        tolerance=example.tolerance,
        factor=example.factor,
    )


def kl_rule_above_first(example: KLExample) -> float:
    """A correct variant written differently: the upper edge checked first. The band is not
    empty (derivation kl-band-not-empty), so the order of the checks does not matter."""
    if example.observed > example.target * example.tolerance:
        return example.beta * example.factor
    if example.observed < example.target / example.tolerance:
        return example.beta / example.factor
    return example.beta


def shipped_kl_and_variant(example: KLExample) -> np.ndarray:
    return np.array([shipped_kl(example), kl_rule_above_first(example)])


def _kl_arguments(example: KLExample) -> tuple:
    return example.beta, example.observed, example.target, example.tolerance, example.factor


# ============================================================================ 4. preferences
z = sp.Symbol("z", real=True)  # the margin of log-ratios (TRL's logits)
pbeta = sp.Symbol("beta", positive=True)
smooth = sp.Symbol("varepsilon", nonnegative=True)  # label smoothing in [0, 1/2]
w2 = sp.Symbol("w", positive=True, less_than_one=True)  # 2 varepsilon in (0, 1): robust
PREF_SYMBOLS = (z, pbeta, smooth)
ROBUST_SYMBOLS = (z, pbeta, w2)


def softplus(x: Any) -> sp.Expr:
    r"""$\operatorname{sp}(x) = \log(1 + e^x)$."""
    return sp.log(1 + sp.exp(x))


def dpo_pair_loss(margin: Any) -> sp.Expr:
    r"""$-\log\sigma(\beta z)$, $\sigma(x) = 1/(1 + e^{-x})$ (Rafailov et al. eq. 7), unevaluated."""
    return -sp.log(sp.Pow(1 + sp.exp(-pbeta * margin), -1, evaluate=False))


cdpo = Derivation(
    "cdpo-expected-flip",
    (
        Step(
            (1 - smooth) * dpo_pair_loss(z) + smooth * dpo_pair_loss(-z),
            "the DPO loss averaged over the label flipped with probability varepsilon "
            "(a flip swaps chosen and rejected: z -> -z)",
        ),
        Step(
            (1 - smooth) * softplus(-pbeta * z) + smooth * softplus(pbeta * z),
            "-log(1 / (1 + e^{-x})) = log(1 + e^{-x})",
        ),
    ),
    statement=r"\mathbb E_\mathrm{flip}[-\log\sigma(\beta z)]",
)


def robust_pair_loss(margin: Any, eps: Any) -> sp.Expr:
    """[(1 - eps) sp(-beta z) - eps sp(beta z)] / (1 - 2 eps) (Chowdhury et al.)."""
    return sp.Mul(
        (1 - eps) * softplus(-pbeta * margin) - eps * softplus(pbeta * margin),
        sp.Pow(1 - 2 * eps, -1),
        evaluate=False,
    )


_eps_r = w2 / 2
robust = Derivation(
    "robust-unbiased",
    (
        Step(
            (1 - _eps_r) * robust_pair_loss(z, _eps_r) + _eps_r * robust_pair_loss(-z, _eps_r),
            "the robust loss averaged over the label flipped with probability varepsilon = w/2",
        ),
        Step(
            sp.Mul(
                ((1 - _eps_r) ** 2 - _eps_r**2) * softplus(-pbeta * z)
                + (_eps_r * (1 - _eps_r) - _eps_r * (1 - _eps_r)) * softplus(pbeta * z),
                sp.Pow(1 - 2 * _eps_r, -1),
                evaluate=False,
            ),
            "collect the coefficients of sp(-beta z) and sp(beta z)",
        ),
        Step(softplus(-pbeta * z), "(1 - e)^2 - e^2 = 1 - 2e; the other coefficient is 0"),
    ),
    statement=r"\mathbb E_\mathrm{flip}[\ell_\mathrm{robust}] = -\log\sigma(\beta z)",
)


@dataclass(frozen=True)
class PreferenceExample:
    chosen: np.ndarray  # [N] policy log-probs of y^w
    rejected: np.ndarray
    reference_chosen: np.ndarray
    reference_rejected: np.ndarray
    chosen_lengths: np.ndarray  # [N] token counts
    rejected_lengths: np.ndarray
    beta: float
    smoothing: float

    @property
    def margin(self) -> np.ndarray:
        return (self.chosen - self.reference_chosen) - (self.rejected - self.reference_rejected)

    def swapped(self) -> PreferenceExample:
        """The labels flipped: chosen and rejected exchanged."""
        return PreferenceExample(
            self.rejected,
            self.chosen,
            self.reference_rejected,
            self.reference_chosen,
            self.rejected_lengths,
            self.chosen_lengths,
            self.beta,
            self.smoothing,
        )


@st.composite
def preference_examples(draw: st.DrawFn, max_smoothing: float = 0.5) -> PreferenceExample:
    """1..6 pairs; log-probs of responses in [-60, -1], reference within 5 of the policy,
    token counts 1..40; beta in [0.01, 2] (|beta z| stays below about 40, where the
    lambdified log(1 + e^x) neither overflows nor loses more than its absolute rounding);
    label smoothing 0, max_smoothing or between."""
    pairs = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    chosen, rejected = rng.uniform(-60, -1, pairs), rng.uniform(-60, -1, pairs)
    ref_chosen = chosen + rng.uniform(-5, 5, pairs)
    ref_rejected = rejected + rng.uniform(-5, 5, pairs)
    lengths = rng.integers(1, 41, (2, pairs)).astype(float)
    b = draw(st.one_of(st.sampled_from((0.1, 0.5)), st.floats(0.01, 2.0)))
    eps = draw(st.one_of(st.sampled_from((0.0, max_smoothing)), st.floats(0.0, max_smoothing)))
    return PreferenceExample(
        chosen, rejected, ref_chosen, ref_rejected, lengths[0], lengths[1], float(b), float(eps)
    )


def shipped_preference(example: PreferenceExample, loss_type: str, **extra: Any) -> float:
    return reference.preference_loss(
        example.chosen,
        example.rejected,
        example.reference_chosen,
        example.reference_rejected,
        example.chosen_lengths,
        example.rejected_lengths,
        beta=example.beta,
        loss_type=loss_type,
        **extra,
    )


def shipped_cdpo(example: PreferenceExample) -> float:
    """The shipped ``preference_loss(loss_type="sigmoid", label_smoothing=eps)``."""
    return shipped_preference(example, "sigmoid", label_smoothing=example.smoothing)


def cdpo_by_log_expit(example: PreferenceExample) -> float:
    """A correct variant written differently: mean of -(1 - eps) log sigma(beta z) - eps log
    sigma(-beta z), with scipy.special.log_expit."""
    from scipy.special import log_expit

    scaled = example.beta * example.margin
    eps = example.smoothing
    return float(np.mean(-(1 - eps) * log_expit(scaled) - eps * log_expit(-scaled)))


def shipped_cdpo_and_variant(example: PreferenceExample) -> np.ndarray:
    return np.array([shipped_cdpo(example), cdpo_by_log_expit(example)])


def shipped_robust_flip_average(example: PreferenceExample) -> float:
    """(1 - eps) robust(pairs) + eps robust(pairs with the labels flipped), both shipped."""
    eps = example.smoothing
    clean = shipped_preference(example, "robust", label_smoothing=eps)
    flipped = shipped_preference(example.swapped(), "robust", label_smoothing=eps)
    return (1 - eps) * clean + eps * flipped


def _mean_over_pairs(
    function: Callable[..., np.ndarray], arguments: Callable[[PreferenceExample], tuple]
) -> Callable[[PreferenceExample], float]:
    def mean(example: PreferenceExample) -> float:
        values = np.broadcast_to(function(*arguments(example)), example.chosen.shape)
        return float(np.mean(values))

    return mean


def _pref_arguments(example: PreferenceExample) -> tuple:
    return example.margin, example.beta, example.smoothing


def _robust_arguments(example: PreferenceExample) -> tuple:
    return example.margin, example.beta, 2 * example.smoothing


def _pref_scale(example: PreferenceExample) -> float:
    """1 + mean |beta z|: the size of the softplus terms."""
    return 1.0 + float(np.mean(np.abs(example.beta * example.margin)))


def _pref_rtol(example: PreferenceExample) -> float:
    """(6 + N) terms; the robust form is conditioned by 1 / (1 - 2 eps) (at most 10 here)."""
    condition = 1.0 / (1.0 - 2.0 * min(example.smoothing, 0.45))
    return exact_rtol(condition, example.chosen.size + 8)


_PREF_REASON = (
    "the lambdified per-pair conclusion averaged over the pairs (the derivation is per pair; "
    "the loss is their mean)"
)


def _cdpo_rhs(expression: Any) -> Callable[[PreferenceExample], np.ndarray]:
    """The mean over pairs of the lambdified (wrong) conclusion, twice (the lhs holds the
    shipped loss and a correct variant)."""
    mean = _mean_over_pairs(lazy_lambdify(PREF_SYMBOLS, expression), _pref_arguments)
    return lambda example: np.full(2, mean(example))


def _robust_rhs(expression: Any) -> Callable[[PreferenceExample], float]:
    return _mean_over_pairs(lazy_lambdify(ROBUST_SYMBOLS, expression), _robust_arguments)


# IPO: loss_i = (zt_i - 1/(2 beta))^2, zt the margin of length-averaged log-probs; d/dzt.
zt = sp.Symbol("zt", real=True)
_v = sp.Symbol("v", real=True)


def ipo_pair_loss(margin: Any) -> sp.Expr:
    return sp.Pow(margin - sp.Pow(2 * pbeta, -1), 2, evaluate=False)


ipo_gradient = Derivation(
    "ipo-gradient",
    (
        Step(
            sp.Subs(sp.Derivative(ipo_pair_loss(_v), _v), _v, zt),
            "d/dzt of the IPO loss of a pair (Azar et al. eq. 17)",
        ),
        Step(2 * (zt - 1 / (2 * pbeta)), "d (v - c)^2 / dv = 2 (v - c)"),
    ),
    statement=r"\partial_{\tilde z} (\tilde z - \tfrac{1}{2\beta})^2",
)
IPO_SYMBOLS = (zt, pbeta)


def _ipo_averaged_margin(example: PreferenceExample) -> np.ndarray:
    """zt_i by a direct loop: each log-prob divided by its response's token count."""
    out = np.empty(example.chosen.size)
    for i in range(example.chosen.size):
        nw, nl = example.chosen_lengths[i], example.rejected_lengths[i]
        out[i] = (example.chosen[i] / nw - example.reference_chosen[i] / nw) - (
            example.rejected[i] / nl - example.reference_rejected[i] / nl
        )
    return out


IPO_STEP = 1.0  # the IPO loss is quadratic in each log-prob: central differences are exact


def shipped_ipo_differences(example: PreferenceExample) -> np.ndarray:
    """N L times central differences of the shipped IPO loss in policy_chosen_log_probs[i],
    times chosen_lengths[i] (d zt_i / d x^w_i = 1 / n^w_i): the derivative in zt_i, [N]."""
    pairs = example.chosen.size
    out = np.empty(pairs)
    for i in range(pairs):
        up, down = example.chosen.copy(), example.chosen.copy()
        up[i] += IPO_STEP
        down[i] -= IPO_STEP
        values = []
        for moved in (up, down):
            values.append(
                reference.preference_loss(
                    moved,
                    example.rejected,
                    example.reference_chosen,
                    example.reference_rejected,
                    example.chosen_lengths,
                    example.rejected_lengths,
                    beta=example.beta,
                    loss_type="ipo",
                )
            )
        out[i] = pairs * example.chosen_lengths[i] * (values[0] - values[1]) / (up[i] - down[i])
    return out


def _ipo_arguments(example: PreferenceExample) -> tuple:
    return _ipo_averaged_margin(example), example.beta


def _ipo_scale(example: PreferenceExample) -> float:
    return 2.0 * float(np.max(np.abs(_ipo_averaged_margin(example)) + 1 / (2 * example.beta)))


def _ipo_rtol(example: PreferenceExample) -> float:
    """The rounding of one loss evaluation, (N + 8) EPS mean((|zt| + 1/2beta + 1)^2), times
    N max(n^w) / step, relative to the scale of the derivative."""
    zt_ = np.abs(_ipo_averaged_margin(example)) + 1 / (2 * example.beta) + 1.0
    delta = (example.chosen.size + 8) * EPS * float(np.mean(zt_**2))
    bound = example.chosen.size * float(example.chosen_lengths.max()) * delta / IPO_STEP
    return max(exact_rtol(n_terms=example.chosen.size + 8), 4.0 * bound / _ipo_scale(example))


# ============================================================================ 4b. hinge
# d/dz of the hinge max(0, 1 - beta z) off its kink z = 1/beta: -beta below, 0 above.
_hz = sp.Symbol("z", real=True)
_hv = sp.Symbol("v", real=True)
_hs = sp.Symbol("sigma", positive=True)


def hinge_pair_loss(margin: Any) -> sp.Expr:
    """max(0, 1 - beta z) (SLiC-HF; TRL's loss_type='hinge'), unevaluated."""
    return sp.Max(0, 1 - pbeta * margin, evaluate=False)


def hinge_slope(margin: Any) -> sp.Expr:
    """-beta where beta z < 1, 0 where beta z > 1 (unevaluated)."""
    return sp.Piecewise(
        (-pbeta, sp.Lt(sp.Mul(pbeta, margin, evaluate=False), 1, evaluate=False)),
        (0, True),
        evaluate=False,
    )


def _hinge_case(name: str, region: Any, margin: Any, slope: Any, rule: str) -> Case:
    return Case(
        region,
        Derivation(
            f"hinge-gradient-{name}",
            (
                Step(
                    sp.Subs(sp.Derivative(hinge_pair_loss(_hv), _hv), _hv, margin),
                    "d/dz of a pair's hinge loss",
                ),
                Step(slope, rule),
                Step(hinge_slope(margin), "the closed form picks the same slope"),
            ),
            statement=rf"\partial_z \max(0, 1 - \beta z) \quad ({name})",
        ),
        {_hz: margin},
    )


hinge_analysis = CaseAnalysis(
    "hinge-gradient",
    sp.Ne(pbeta * _hz, 1),
    (
        _hinge_case(
            "inside-margin",
            pbeta * _hz < 1,
            (1 - _hs) / pbeta,
            -pbeta,
            "z = (1 - sigma)/beta: 1 - beta z = sigma > 0 near z, the hinge is 1 - beta z",
        ),
        _hinge_case(
            "beyond-margin",
            pbeta * _hz > 1,
            (1 + _hs) / pbeta,
            sp.Integer(0),
            "z = (1 + sigma)/beta: 1 - beta z = -sigma < 0 near z, the hinge is 0",
        ),
    ),
)
HINGE_SYMBOLS = (_hz, pbeta)

#: pairs keep |beta z - 1| >= this, and the central difference's step is below it
HINGE_AWAY = 1e-3


def hinge_examples() -> st.SearchStrategy[PreferenceExample]:
    """preference_examples with every margin at least HINGE_AWAY / beta from the kink 1/beta
    (a pair closer is moved out to 2 HINGE_AWAY / beta), half of them within 0.1 / beta of it."""

    def moved(example: PreferenceExample) -> PreferenceExample:
        b = example.beta
        rng = np.random.default_rng(int(abs(example.chosen[0]) * 1e6) % 2**32)
        margin = example.margin.copy()
        near = rng.random(margin.size) < 0.5
        margin = np.where(near, (1 + rng.uniform(-0.1, 0.1, margin.size)) / b, margin)
        gap = b * margin - 1
        margin = np.where(
            np.abs(gap) < HINGE_AWAY, (1 + np.sign(gap + 1e-300) * 2 * HINGE_AWAY) / b, margin
        )
        # put the change of margin into the chosen log-prob
        chosen = example.chosen + (margin - example.margin)
        return PreferenceExample(
            chosen,
            example.rejected,
            example.reference_chosen,
            example.reference_rejected,
            example.chosen_lengths,
            example.rejected_lengths,
            example.beta,
            example.smoothing,
        )

    return preference_examples().map(moved)


def _hinge_step(example: PreferenceExample) -> float:
    """Half the distance (in the chosen log-prob, = in z) to the kink, at most 1e-2."""
    distance = np.abs(example.margin - 1 / example.beta)
    return float(min(1e-2, 0.5 * distance.min()))


def shipped_hinge_differences(example: PreferenceExample) -> np.ndarray:
    """N x central differences of the shipped hinge loss in each chosen log-prob (dz/dx^w =
    1): the derivative in z_i, [N]; the loss is linear on each side of the kink and the step
    stays on one side."""
    pairs = example.chosen.size
    h = _hinge_step(example)
    out = np.empty(pairs)
    for i in range(pairs):
        up, down = example.chosen.copy(), example.chosen.copy()
        up[i] += h
        down[i] -= h
        values = [
            reference.preference_loss(
                moved,
                example.rejected,
                example.reference_chosen,
                example.reference_rejected,
                beta=example.beta,
                loss_type="hinge",
            )
            for moved in (up, down)
        ]
        out[i] = pairs * (values[0] - values[1]) / (up[i] - down[i])
    return out


def _hinge_rtol(example: PreferenceExample) -> float:
    """Rounding of one evaluation, (N + 8) EPS (1 + mean |beta z|), times N / step, relative
    to beta (the slope's size)."""
    delta = (example.chosen.size + 8) * EPS * _pref_scale(example)
    bound = example.chosen.size * delta / _hinge_step(example)
    return max(exact_rtol(n_terms=example.chosen.size + 8), 4.0 * bound / example.beta)


def _hinge_rhs(expression: Any) -> Callable[[PreferenceExample], np.ndarray]:
    function = lazy_lambdify(HINGE_SYMBOLS, expression)
    return lambda example: np.broadcast_to(
        function(example.margin, example.beta), example.chosen.shape
    ).astype(float)


def _hinge_mutation(target: str, wrong: Callable[[Any], sp.Expr]) -> SymbolicMutation:
    margin = {"inside-margin": (1 - _hs) / pbeta, "beyond-margin": (1 + _hs) / pbeta}[target]
    return SymbolicMutation(f"hinge-gradient-{target}", wrong(margin))


def _hinge_unscaled(margin: Any) -> sp.Expr:
    """max(0, 1 - z): beta dropped (slope -1 below z = 1)."""
    return sp.Piecewise((-1, margin < 1), (0, True))


def _hinge_margin_beta(margin: Any) -> sp.Expr:
    """max(0, beta - z): the margin beta instead of 1/beta (slope -1 below z = beta)."""
    return sp.Piecewise((-1, margin < pbeta), (0, True))


def _hinge_squared(margin: Any) -> sp.Expr:
    """max(0, 1 - beta z)^2: a squared hinge, slope -2 beta (1 - beta z)."""
    return sp.Piecewise((-2 * pbeta * (1 - pbeta * margin), pbeta * margin < 1), (0, True))


HINGE_CLAIMS = (
    Claim(
        id="hinge-loss-reference",
        title="The reference hinge preference loss has slope -beta inside the margin 1/beta",
        summary=(
            "rlmath.reference.preference_loss(loss_type='hinge') is mean(max(0, 1 - beta z)): "
            "each pair pushes its margin up at rate beta until beta z reaches 1, then stops."
        ),
        statement=Statement(
            sp.Subs(sp.Derivative(hinge_pair_loss(_hv), _hv), _hv, _hz),
            hinge_slope(_hz),
            derivation="hinge-gradient",
            where=r"\beta z \ne 1",
        ),
        assumptions=(
            "Off the kink beta z = 1 (where the hinge has no derivative): the exact leg keeps "
            "every pair at least 1e-3 / beta from it, half of them within 0.1 / beta.",
            "The loss is the mean over the N pairs of log-probs summed over tokens (the "
            "lengths are ignored for 'hinge'); dz_i / d log pi(y^w_i) = 1.",
        ),
        references=(
            "Zhao, Y. et al., *SLiC-HF: Sequence Likelihood Calibration with Human Feedback*, "
            "arXiv:2305.10425, 2023.",
            "Liu, T. et al., *Statistical Rejection Sampling Improves Preference Optimization*, "
            "ICLR 2024 (the normalised hinge loss).",
            "Hugging Face TRL, *DPOTrainer* documentation, Loss functions (loss_type='hinge').",
        ),
        symbolic=SymbolicLeg((), cases=(hinge_analysis,)),
        exact=ExactLeg(
            hinge_examples(),
            lhs=shipped_hinge_differences,
            rhs=_hinge_rhs(hinge_slope(_hz)),
            rhs_reason=(
                "the statement's right-hand side (lambdified), which the claim ties to the "
                "conclusion of both cases (a case analysis has no single conclusion)"
            ),
            rtol=_hinge_rtol,
            error_scale=lambda example: example.beta,
            description=(
                "N x central differences of the shipped hinge loss in each chosen log-prob vs "
                "the lambdified slope -beta [beta z < 1]"
            ),
        ),
        mutants=(
            Mutant(
                "beta-dropped",
                "max(0, 1 - z): the margin not scaled by beta",
                symbolic=_hinge_mutation("inside-margin", _hinge_unscaled),
                exact=_hinge_rhs(_hinge_unscaled(_hz)),
            ),
            Mutant(
                "margin-beta",
                "max(0, beta - z): beta as the margin instead of 1/beta",
                symbolic=_hinge_mutation("inside-margin", _hinge_margin_beta),
                exact=_hinge_rhs(_hinge_margin_beta(_hz)),
            ),
            Mutant(
                "squared-hinge",
                "max(0, 1 - beta z)^2",
                symbolic=_hinge_mutation("inside-margin", _hinge_squared),
                exact=_hinge_rhs(_hinge_squared(_hz)),
            ),
        ),
    ),
)


# ============================================================================ 5. dual-clip PPO
# Entry i's objective, with the ratio rho = e^{x - o} as the variable (the exact leg forms it
# from the log-probs): PPO's min(rho A, clip(rho) A), and for A < 0 its max with c A.
rho = sp.Symbol("rho", positive=True)
dA = sp.Symbol("A", real=True)
deps = sp.Symbol("epsilon", positive=True)
dc = sp.Symbol("c", positive=True)  # the dual clip, c > 1
DUAL_SYMBOLS = (rho, dA, deps, dc, N)


def _clip(value: Any, low: Any, high: Any) -> sp.Expr:
    return sp.Min(sp.Max(value, low, evaluate=False), high, evaluate=False)


def dual_clip_share(q: Any, adv: Any, eps: Any, c: Any) -> sp.Expr:
    r"""$-\frac1N$ (dual-clip objective of one entry), as the docstring defines it; PPO's
    clipped objective is printed by name, $J^\mathrm{clip}$ (its definition is listed)."""
    ppo = Named(
        r"J^{\mathrm{clip}}",
        sp.Min(
            sp.Mul(q, adv, evaluate=False),
            sp.Mul(_clip(q, 1 - eps, 1 + eps), adv, evaluate=False),
            evaluate=False,
        ),
    )
    objective = sp.Piecewise(
        (
            sp.Max(ppo, sp.Mul(c, adv, evaluate=False), evaluate=False),
            sp.Lt(adv, 0, evaluate=False),
        ),
        (ppo, True),
        evaluate=False,
    )
    return sp.Mul(-1, sp.Pow(N, -1), objective, evaluate=False)


def dual_clip_closed(q: Any, adv: Any, eps: Any, c: Any) -> sp.Expr:
    r"""$-\frac{A}{N} \min(\rho, 1 + \epsilon)$ for $A \ge 0$, $-\frac{A}{N}
    \min(\max(\rho, 1 - \epsilon), c)$ for $A < 0$."""
    factor = sp.Piecewise(
        (
            sp.Min(sp.Max(q, 1 - eps, evaluate=False), c, evaluate=False),
            sp.Lt(adv, 0, evaluate=False),
        ),
        (sp.Min(q, 1 + eps, evaluate=False), True),
        evaluate=False,
    )
    return sp.Mul(-1, sp.Pow(N, -1), adv, factor, evaluate=False)


_a = sp.Symbol("a", positive=True)  # |A| for A < 0
_a0 = sp.Symbol("a", nonnegative=True)  # A >= 0
_s = sp.Symbol("sigma", nonnegative=True)
_tt = sp.Symbol("tau", nonnegative=True)
_m = sp.Symbol("mu", nonnegative=True)
_k = sp.Symbol("kappa", positive=True)
#: epsilon inside the clip range, rho = 1 - eps + sigma = 1 + eps - tau (printed by name)
_half = Named(r"\epsilon", (_s + _tt) / 2)
_mid = 1 - _half + _s


@dataclass(frozen=True)
class DualRegion:
    name: str
    where: str
    region: Any
    parametrisation: dict
    picked: Any  # the objective the rule picks there (in the parameters)


def _dual_regions() -> tuple[DualRegion, ...]:
    negative, positive = dA < 0, dA >= 0
    below, above = rho <= 1 - deps, rho >= 1 + deps
    inside = (rho >= 1 - deps) & (rho <= 1 + deps)
    return (
        DualRegion(
            "positive-below",
            "A >= 0, rho = 1 - eps - sigma: clip = 1 - eps, rho A is the smaller",
            positive & below,
            {rho: 1 - deps - _s, dA: _a0, dc: 1 + _k},
            (1 - deps - _s) * _a0,
        ),
        DualRegion(
            "positive-inside",
            "A >= 0, rho in the clip range: clip(rho) = rho",
            positive & inside,
            {rho: _mid, dA: _a0, deps: _half, dc: 1 + _k},
            _mid * _a0,
        ),
        DualRegion(
            "positive-above",
            "A >= 0, rho = 1 + eps + sigma: the clipped (1 + eps) A is the smaller",
            positive & above,
            {rho: 1 + deps + _s, dA: _a0, dc: 1 + _k},
            (1 + deps) * _a0,
        ),
        DualRegion(
            "negative-below",
            "A < 0, rho = 1 - eps - sigma: PPO picks (1 - eps) A, above c A as c > 1 - eps",
            negative & below,
            {rho: 1 - deps - _s, dA: -_a, dc: 1 + _k},
            -(1 - deps) * _a,
        ),
        DualRegion(
            "negative-inside-unclipped",
            "A < 0, rho in the clip range and rho = c - mu <= c: PPO's rho A, above c A",
            negative & inside & (rho <= dc),
            {rho: _mid, dA: -_a, deps: _half, dc: _mid + _m},
            -_mid * _a,
        ),
        DualRegion(
            "negative-inside-dual-clipped",
            "A < 0, rho in the clip range and rho = c + mu >= c: the dual clip c A",
            negative & inside & (rho >= dc),
            {rho: _mid, dA: -_a, deps: _half, dc: _mid - _m},
            -(_mid - _m) * _a,
        ),
        DualRegion(
            "negative-above-unclipped",
            "A < 0, rho = 1 + eps + sigma <= c: PPO's rho A (below (1 + eps) A), above c A",
            negative & above & (rho <= dc),
            {rho: 1 + deps + _s, dA: -_a, dc: 1 + deps + _s + _m},
            -(1 + deps + _s) * _a,
        ),
        DualRegion(
            "negative-above-dual-clipped",
            "A < 0, rho = 1 + eps + sigma = c + mu: PPO's rho A is below c A: the dual clip",
            negative & above & (rho >= dc),
            {rho: 1 + deps + _s, dA: -_a, dc: 1 + deps + _s - _m},
            -(1 + deps + _s - _m) * _a,
        ),
    )


DUAL_REGIONS = _dual_regions()


def _dual_derivation(region: DualRegion) -> Derivation:
    at = [sp.sympify(x).xreplace(region.parametrisation) for x in (rho, dA, deps, dc)]
    return Derivation(
        f"dual-clip-{region.name}",
        (
            Step(dual_clip_share(*at), "entry i's share of the dual-clip loss"),
            Step(
                sp.Mul(-1, sp.Pow(N, -1), region.picked, evaluate=False),
                f"{region.where}; evaluate the min, the max and the clip",
            ),
            Step(dual_clip_closed(*at), "the closed form picks the same factor of A"),
        ),
        statement=rf"\text{{dual-clip loss term}} \quad ({region.name})",
    )


dual_clip_analysis = CaseAnalysis(
    "dual-clip-loss",
    dc > 1,
    tuple(Case(g.region, _dual_derivation(g), g.parametrisation) for g in DUAL_REGIONS),
)


def dual_mutation(target: str, wrong: Callable[..., sp.Expr]) -> SymbolicMutation:
    region = next(g for g in DUAL_REGIONS if g.name == target)
    at = [sp.sympify(x).xreplace(region.parametrisation) for x in (rho, dA, deps, dc)]
    return SymbolicMutation(f"dual-clip-{target}", wrong(*at))


@dataclass(frozen=True)
class DualExample:
    log_probs: np.ndarray
    old_log_probs: np.ndarray
    advantages: np.ndarray
    clip_epsilon: float
    dual_clip: float


@st.composite
def dual_examples(draw: st.DrawFn) -> DualExample:
    """1..6 entries; eps in [0.01, 0.99] (0.2 often), c in {1.5, 3 (Ye et al.), inf} or in
    (1, 5]; log-ratios anywhere in [-2, 2.5] or within 1e-2 of a kink log(1 +- eps), log c;
    advantages of magnitude 1e-3..1e3, both signs, and 0."""
    n_ = draw(st.integers(1, 6))
    eps = draw(st.one_of(st.just(0.2), st.floats(0.01, 0.99)))
    c = draw(st.one_of(st.sampled_from((1.5, 3.0, np.inf)), st.floats(1.01, 5.0)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kinks = [np.log1p(eps), np.log1p(-eps)] + ([np.log(c)] if np.isfinite(c) else [])
    near = rng.choice(kinks, n_) + rng.uniform(-1e-2, 1e-2, n_)
    log_ratio = np.where(rng.random(n_) < 0.5, near, rng.uniform(-2.0, 2.5, n_))
    old = rng.uniform(-30.0, 0.0, n_)
    adv = _signed_magnitudes(rng, n_, 1e-3, 1e3) * (rng.random(n_) < 0.9)
    return DualExample(old + log_ratio, old, adv, float(eps), float(c))


def shipped_dual_clip(example: DualExample) -> float:
    return reference.dual_clip_ppo_loss(
        example.log_probs,
        example.old_log_probs,
        example.advantages,
        clip_epsilon=example.clip_epsilon,
        dual_clip=example.dual_clip,
    )


def _dual_arguments(example: DualExample) -> tuple:
    ratio = np.exp(example.log_probs - example.old_log_probs)
    return ratio, example.advantages, example.clip_epsilon, example.dual_clip, ratio.size


def dual_clip_variant(example: DualExample) -> float:
    """A correct variant written differently: PPO's objective plus max(0, c A - PPO) where
    A < 0 (max(u, v) = u + max(0, v - u)), a loop over entries."""
    total = 0.0
    for x, o, adv in zip(example.log_probs, example.old_log_probs, example.advantages, strict=True):
        q = float(np.exp(x - o))
        clipped = min(max(q, 1 - example.clip_epsilon), 1 + example.clip_epsilon)
        ppo = min(q * adv, clipped * adv)
        if adv < 0:
            ppo += max(0.0, example.dual_clip * adv - ppo)
        total -= ppo
    return total / example.advantages.size


def shipped_dual_clip_and_variant(example: DualExample) -> np.ndarray:
    return np.array([shipped_dual_clip(example), dual_clip_variant(example)])


def _dual_rhs(wrong: Callable[..., sp.Expr]) -> Callable[[DualExample], np.ndarray]:
    function = lazy_lambdify(DUAL_SYMBOLS, wrong(rho, dA, deps, dc))

    def total(example: DualExample) -> float:
        with np.errstate(invalid="ignore"):  # inf * 0 in the branch numpy evaluates, unused
            values = function(*_dual_arguments(example))
        return np.full(2, float(np.sum(np.broadcast_to(values, example.advantages.shape))))

    return total


def _dual_scale(example: DualExample) -> float:
    """mean of (rho + 1 + eps) |A|: the size of the terms."""
    ratio = np.exp(example.log_probs - example.old_log_probs)
    return max(
        float(np.mean((ratio + 1 + example.clip_epsilon) * np.abs(example.advantages))), TINY
    )


def _wrong_dual_on_positive(q: Any, adv: Any, eps: Any, c: Any) -> sp.Expr:
    """The dual clip applied whatever the sign: max(PPO, c A) for A >= 0 too."""
    positive = sp.Max(sp.Min(q, 1 + eps), c)
    negative = sp.Min(sp.Max(q, 1 - eps), c)
    return -adv * sp.Piecewise((negative, adv < 0), (positive, True)) / N


def _wrong_min_with_c(q: Any, adv: Any, eps: Any, c: Any) -> sp.Expr:
    """min(PPO, c A) for A < 0: the unbounded side kept, the bounded one removed."""
    return -adv * sp.Piecewise((sp.Max(q, 1 - eps, c), adv < 0), (sp.Min(q, 1 + eps), True)) / N


def _plain_ppo(q: Any, adv: Any, eps: Any, c: Any) -> sp.Expr:
    """No dual clip: PPO's A max(rho, 1 - eps) for A < 0."""
    return -adv * sp.Piecewise((sp.Max(q, 1 - eps), adv < 0), (sp.Min(q, 1 + eps), True)) / N


def _bound_sign(q: Any, adv: Any, eps: Any, c: Any) -> sp.Expr:
    """max(PPO, c |A|) for A < 0: the bound's sign lost, the objective is c |A| > 0."""
    return -adv * sp.Piecewise((-c, adv < 0), (sp.Min(q, 1 + eps), True)) / N


_DUAL_REASON = (
    "the sum over entries of the statement's right-hand side (lambdified), which the claim "
    "ties to the conclusion of each of the eight cases; a case analysis has no single "
    "conclusion to lambdify, and the sum over entries is the definition of the mean loss"
)

DUAL_CLAIMS = (
    Claim(
        id="dual-clip-ppo-loss-reference",
        title="The reference dual-clip PPO loss bounds the objective of A < 0 by c A",
        summary=(
            "rlmath.reference.dual_clip_ppo_loss has entry objective A min(rho, 1 + eps) for "
            "A >= 0 and A min(max(rho, 1 - eps), c) for A < 0: PPO's, except that a negative "
            "advantage's objective never drops below c A (Ye et al.)."
        ),
        statement=Statement(
            dual_clip_share(rho, dA, deps, dc),
            dual_clip_closed(rho, dA, deps, dc),
            derivation="dual-clip-loss",
            where=r"\rho = e^{x - o} > 0,\ \epsilon > 0,\ c > 1",
        ),
        assumptions=(
            "Case analysis over the sign of A and the position of rho relative to 1 - eps, "
            "1 + eps and c (closed regions, non-negative parameters; c > 1 where the argument "
            "needs c > 1 - eps), checked to cover every rho > 0, A, eps > 0 and c > 1; some "
            "parametrisations also reach points outside the domain (rho <= 0, c <= 1), where "
            "the same algebra holds formally.",
            "The loss is the mean of the shares (the exact leg sums them); rho is formed from "
            "the log-probs as exp(log_probs - old_log_probs).",
        ),
        references=(
            "Ye, D. et al., *Mastering Complex Control in MOBA Games with Deep Reinforcement "
            "Learning*, AAAI 2020 (arXiv:1912.09729), the dual-clip PPO objective.",
            "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, arXiv:1707.06347, "
            "2017, eq. (7).",
        ),
        symbolic=SymbolicLeg((), cases=(dual_clip_analysis,)),
        exact=ExactLeg(
            dual_examples(),
            lhs=shipped_dual_clip_and_variant,
            rhs=_dual_rhs(dual_clip_closed),
            rhs_reason=_DUAL_REASON,
            rtol=lambda example: exact_rtol(n_terms=example.advantages.size + 8),
            error_scale=_dual_scale,
            description=(
                "[the shipped dual_clip_ppo_loss, a correct variant PPO + max(0, cA - PPO)] vs "
                "the sum of the lambdified closed form "
                "-(A/N) min(max(rho, 1 - eps), c) (A < 0) or -(A/N) min(rho, 1 + eps); ratios at "
                "and next to 1 +- eps and c, A = 0 included, c = inf included"
            ),
        ),
        mutants=(
            Mutant(
                "dual-clip-on-positive",
                "max(PPO, c A) for A >= 0 as well: positive advantages raised to c A",
                symbolic=dual_mutation("positive-below", _wrong_dual_on_positive),
                exact=_dual_rhs(_wrong_dual_on_positive),
            ),
            Mutant(
                "min-with-c",
                "min(PPO, c A) for A < 0: the bound taken on the wrong side",
                symbolic=dual_mutation("negative-inside-unclipped", _wrong_min_with_c),
                exact=_dual_rhs(_wrong_min_with_c),
            ),
            Mutant(
                "plain-ppo",
                "no dual clip: PPO's objective, unbounded below as rho grows for A < 0",
                symbolic=dual_mutation("negative-above-dual-clipped", _plain_ppo),
                exact=_dual_rhs(_plain_ppo),
            ),
            Mutant(
                "bound-sign",
                "max(PPO, c |A|) for A < 0: the bound's sign lost",
                symbolic=dual_mutation("negative-inside-unclipped", _bound_sign),
                exact=_dual_rhs(_bound_sign),
            ),
        ),
        notes=(
            "For A >= 0 and for rho <= c the loss is PPO's (claim ppo-clipped-surrogate-"
            "reference); dual_clip = inf gives PPO. No Monte-Carlo leg: a deterministic "
            "identity."
        ),
    ),
)

# ============================================================================ 6. actor-critic
# Entry i's share of PPO's combined loss along the line (x + s u, V + s w, H + s z), the old
# log-prob o, the advantage A, the return R and the reference log-prob q constant.
ax, ao, aq = sp.Symbol("x", real=True), sp.Symbol("o", real=True), sp.Symbol("q", real=True)
aA, aV, aR, aH = (sp.Symbol(name, real=True) for name in ("A", "V", "R", "H"))
au, aw, az = (sp.Symbol(name, real=True) for name in ("u", "w", "z"))
aeps = sp.Symbol("epsilon", positive=True)
c_v, c_e, a_beta = (sp.Symbol(name, nonnegative=True) for name in ("c_v", "c_e", "beta"))
s_line = sp.Symbol("s", real=True)
AC_SYMBOLS = (ax, ao, aq, aA, aV, aR, aH, au, aw, az, aeps, c_v, c_e, a_beta, N)
AC_NAMES = {c_v: "c_v", c_e: "c_e"}


def actor_critic_share(x: Any, value: Any, entropy: Any, eps: Any) -> sp.Expr:
    r"""$\frac1N[-\min(\rho A, \operatorname{clip}(\rho) A) + \frac{c_v}{2}(V - R)^2 - c_e H
    + \beta((r - 1) - \log r)]$, $\rho = e^{x - o}$, $r = e^{q - x}$ (unevaluated)."""
    ratio = sp.exp(x - ao)
    ppo = sp.Min(
        sp.Mul(ratio, aA, evaluate=False),
        sp.Mul(_clip(ratio, 1 - eps, 1 + eps), aA, evaluate=False),
        evaluate=False,
    )
    k3 = (sp.exp(aq - x) - 1) - (aq - x)
    total = -ppo + c_v / 2 * (value - aR) ** 2 - c_e * entropy + a_beta * k3
    return sp.Mul(sp.Pow(N, -1), total, evaluate=False)


def actor_critic_slope(x: Any, eps: Any) -> sp.Expr:
    """The directional derivative: [(-rho A + beta (1 - r)) u + c_v (V - R) w - c_e z] / N."""
    policy = -sp.exp(x - ao) * aA + a_beta * (1 - sp.exp(aq - x))
    return (policy * au + c_v * (aV - aR) * aw - c_e * az) / N


_sp_pos, _tp_pos = sp.Symbol("sigma", positive=True), sp.Symbol("tau", positive=True)
#: epsilon and the ratio rho = 1 - eps + sigma = 1 + eps - tau (strictly inside the clip range)
#: are shown by name: written out, the share's clipped term is wider than the page
_ac_half = Named(r"\epsilon", (_sp_pos + _tp_pos) / 2)
_ac_ratio = Named(r"\rho", 1 - _ac_half + _sp_pos)
_AC_PARAM = {ax: ao + sp.log(_ac_ratio), aeps: _ac_half}


def _ac_line(x: Any, eps: Any) -> sp.Expr:
    return sp.Subs(
        sp.Derivative(
            actor_critic_share(x + s_line * au, aV + s_line * aw, aH + s_line * az, eps), s_line
        ),
        s_line,
        0,
    )


def _ac_at() -> list:
    return [sp.sympify(v).xreplace(_AC_PARAM) for v in (ax, aeps)]


actor_critic_derivation = Derivation(
    "actor-critic-directional",
    (
        Step(
            _ac_line(*_ac_at()),
            "d/ds at s = 0 of entry i's share along (x + s u, V + s w, H + s z), rho = e^{x-o} "
            "strictly inside the clip range (rho = 1 - eps + sigma = 1 + eps - tau)",
        ),
        Step(
            actor_critic_slope(*_ac_at()),
            "near s = 0 clip(rho) = rho, so the min is rho A; d e^{x-o}/dx = e^{x-o}, "
            "d((r - 1) - log r)/dx = 1 - r, d (V - R)^2 / 2 dV = V - R, dH/dH = 1",
        ),
    ),
    statement=r"\partial_s \mathcal L_i \quad (\text{inside the clip range})",
)
_AC_REGION = (sp.exp(ax - ao) > 1 - aeps) & (sp.exp(ax - ao) < 1 + aeps)
actor_critic_analysis = CaseAnalysis(
    "actor-critic-directional-derivative",
    _AC_REGION,
    (Case(_AC_REGION, actor_critic_derivation, _AC_PARAM),),
)


def ac_mutation(wrong: Callable[..., sp.Expr]) -> SymbolicMutation:
    return SymbolicMutation("actor-critic-directional", wrong(*_ac_at()))


@dataclass(frozen=True)
class ACExample:
    log_probs: np.ndarray
    old_log_probs: np.ndarray
    advantages: np.ndarray
    values: np.ndarray
    returns: np.ndarray
    entropy: np.ndarray
    reference_log_probs: np.ndarray
    directions: np.ndarray  # [3, N]: u, w, z
    clip_epsilon: float
    value_coefficient: float
    entropy_coefficient: float
    kl_coefficient: float

    def moved(self, step: float) -> ACExample:
        u, w, z = self.directions
        return ACExample(
            self.log_probs + step * u,
            self.old_log_probs,
            self.advantages,
            self.values + step * w,
            self.returns,
            self.entropy + step * z,
            self.reference_log_probs,
            self.directions,
            self.clip_epsilon,
            self.value_coefficient,
            self.entropy_coefficient,
            self.kl_coefficient,
        )


@st.composite
def actor_critic_examples(draw: st.DrawFn) -> ACExample:
    """1..6 entries; log-ratios in the middle half of (log(1 - eps), log(1 + eps)) (the clip
    does not bind); reference log-probs within 2 of the log-probs; values, returns in
    [-10, 10], entropies in [0, 3]; directions in [-1, 1]^3; coefficients 0 (a term switched
    off), the usual 0.5 / 0.01 / 0.1, or random in [0, 2]."""
    n_ = draw(st.integers(1, 6))
    eps = draw(st.one_of(st.just(0.2), st.floats(0.05, 0.9)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    low, high = np.log1p(-eps), np.log1p(eps)
    middle, half = (low + high) / 2, (high - low) / 4
    old = rng.uniform(-20.0, -0.5, n_)
    x = old + middle + rng.uniform(-half, half, n_)

    def coefficient(usual: float) -> float:
        return float(draw(st.one_of(st.sampled_from((0.0, usual)), st.floats(0.0, 2.0))))

    return ACExample(
        x,
        old,
        _signed_magnitudes(rng, n_, 1e-2, 1e2),
        rng.uniform(-10, 10, n_),
        rng.uniform(-10, 10, n_),
        rng.uniform(0, 3, n_),
        x + rng.uniform(-2, 2, n_),
        rng.uniform(-1, 1, (3, n_)),
        float(eps),
        coefficient(0.5),
        coefficient(0.01),
        coefficient(0.1),
    )


def shipped_actor_critic(example: ACExample) -> float:
    return reference.actor_critic_loss(
        example.log_probs,
        example.old_log_probs,
        example.advantages,
        example.values,
        example.returns,
        example.entropy,
        example.reference_log_probs,
        clip_epsilon=example.clip_epsilon,
        value_coefficient=example.value_coefficient,
        entropy_coefficient=example.entropy_coefficient,
        kl_coefficient=example.kl_coefficient,
    )


def _ac_terms(example: ACExample) -> tuple[float, float]:
    """(M3, delta): a bound on the third derivative along the line within |s| <= 0.5 (the
    exponentials', e^{0.5 |u|} <= 2; the quadratic and linear terms have none) and on the
    rounding of one evaluation, (N + 12) EPS times the mean size of the terms."""
    u = np.abs(example.directions[0])
    ratio = np.exp(example.log_probs - example.old_log_probs)
    r = np.exp(example.reference_log_probs - example.log_probs)
    beta_ = example.kl_coefficient
    third = 2.0 * float(np.mean((ratio * np.abs(example.advantages) + beta_ * r) * u**3))
    size = (
        ratio * np.abs(example.advantages)
        + example.value_coefficient * (np.abs(example.values - example.returns) + 1) ** 2
        + example.entropy_coefficient * (np.abs(example.entropy) + 1)
        + beta_ * (r + 2 + np.abs(example.reference_log_probs - example.log_probs))
    )
    return third, (example.log_probs.size + 12) * EPS * float(np.mean(size))


def _ac_step(example: ACExample) -> tuple[float, float]:
    from rlmath.tolerances import central_difference_step

    third, delta = _ac_terms(example)
    h, bound = central_difference_step(third, max(delta, TINY))
    return min(h, 0.5), bound


def shipped_actor_critic_difference(example: ACExample) -> float:
    """Central difference of the shipped actor_critic_loss along (u, w, z), step from
    rlmath.tolerances.central_difference_step (small enough that no ratio leaves the clip
    range: they start in its middle half and |u| <= 1)."""
    h, _ = _ac_step(example)
    forward, backward = example.moved(h), example.moved(-h)
    return (shipped_actor_critic(forward) - shipped_actor_critic(backward)) / (2 * h)


def _ac_arguments(example: ACExample) -> tuple:
    u, w, z = example.directions
    return (
        example.log_probs,
        example.old_log_probs,
        example.reference_log_probs,
        example.advantages,
        example.values,
        example.returns,
        example.entropy,
        u,
        w,
        z,
        example.clip_epsilon,
        example.value_coefficient,
        example.entropy_coefficient,
        example.kl_coefficient,
        example.log_probs.size,
    )


def _ac_rhs(wrong: Callable[..., sp.Expr]) -> Callable[[ACExample], float]:
    function = lazy_lambdify(AC_SYMBOLS, wrong(ax, aeps))
    return lambda example: float(
        np.sum(np.broadcast_to(function(*_ac_arguments(example)), example.log_probs.shape))
    )


def _ac_scale(example: ACExample) -> float:
    """The size of the slope's terms: mean((rho |A| + beta (1 + r)) |u| + c_v |V - R| |w| +
    c_e |z|)."""
    u, w, z = np.abs(example.directions)
    ratio = np.exp(example.log_probs - example.old_log_probs)
    r = np.exp(example.reference_log_probs - example.log_probs)
    terms = (
        (ratio * np.abs(example.advantages) + example.kl_coefficient * (1 + r)) * u
        + example.value_coefficient * np.abs(example.values - example.returns) * w
        + example.entropy_coefficient * z
    )
    return max(float(np.mean(terms)), TINY)


def _ac_rtol(example: ACExample) -> float:
    _, bound = _ac_step(example)
    return max(exact_rtol(n_terms=example.log_probs.size + 12), 4.0 * bound / _ac_scale(example))


def _ac_entropy_added(x: Any, eps: Any) -> sp.Expr:
    return actor_critic_slope(x, eps) + 2 * c_e * az / N


def _ac_kl_swapped(x: Any, eps: Any) -> sp.Expr:
    """k3 of r = pi/pi_ref instead of pi_ref/pi: slope beta (r' - 1), r' = e^{x - q}."""
    return actor_critic_slope(x, eps) + a_beta * au * (sp.exp(x - aq) - 2 + sp.exp(aq - x)) / N


def _ac_value_no_half(x: Any, eps: Any) -> sp.Expr:
    return actor_critic_slope(x, eps) + c_v * (aV - aR) * aw / N


def _ac_kl_detached(x: Any, eps: Any) -> sp.Expr:
    return actor_critic_slope(x, eps) - a_beta * (1 - sp.exp(aq - x)) * au / N


_AC_REASON = (
    "the sum over entries of the statement's right-hand side (lambdified at the unparametrised "
    "symbols), which the claim ties to the conclusion of the case (a case analysis has no "
    "single conclusion to lambdify); the loss is the mean of the shares"
)

AC_CLAIMS = (
    Claim(
        id="actor-critic-loss-reference",
        title="The reference combined PPO loss: signs, the value loss's 1/2 and the k3 KL gradient",
        summary=(
            "rlmath.reference.actor_critic_loss changes along (u, w, z) at the rate "
            "mean((-rho A + beta (1 - pi_ref/pi)) u + c_v (V - R) w - c_e z): the entropy bonus "
            "is subtracted, the value loss has the 1/2, the KL penalty pulls towards pi_ref."
        ),
        statement=Statement(
            _ac_line(ax, aeps),
            actor_critic_slope(ax, aeps),
            derivation="actor-critic-directional-derivative",
            where=r"1 - \epsilon < e^{x - o} < 1 + \epsilon",
            symbol_names=AC_NAMES,
        ),
        assumptions=(
            "The ratio e^{x - o} is strictly inside the clip range (parametrised rho = 1 - eps "
            "+ sigma = 1 + eps - tau, sigma, tau > 0), so the clip does not bind; the clipped "
            "regions are claim ppo-clipped-surrogate-loss-gradient-reference's.",
            "old_log_probs, advantages, returns and reference_log_probs are constants; the KL "
            "term is k3 of r = pi_ref / pi, differentiated through log_probs.",
            "The exact leg takes central differences of the shipped loss along a random "
            "direction, with the step and error bound of "
            "rlmath.tolerances.central_difference_step (M3 from the exponentials).",
        ),
        references=(
            "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, arXiv:1707.06347, "
            "2017, eq. (9).",
            "Shao, Z. et al., *DeepSeekMath*, arXiv:2402.03300, 2024, eq. (4) (the k3 KL term).",
            "Huang, S. et al., *The 37 Implementation Details of Proximal Policy Optimization*, "
            "ICLR Blog Track 2022.",
        ),
        symbolic=SymbolicLeg((), cases=(actor_critic_analysis,)),
        exact=ExactLeg(
            actor_critic_examples(),
            lhs=shipped_actor_critic_difference,
            rhs=_ac_rhs(actor_critic_slope),
            rhs_reason=_AC_REASON,
            rtol=_ac_rtol,
            error_scale=_ac_scale,
            description=(
                "central difference of the shipped actor_critic_loss along (u, w, z) in "
                "(log_probs, values, entropy) vs the sum of the lambdified directional "
                "derivative"
            ),
        ),
        mutants=(
            Mutant(
                "entropy-bonus-added",
                "+ c_e H: the entropy bonus added to the loss (minimising lowers the entropy)",
                symbolic=ac_mutation(_ac_entropy_added),
                exact=_ac_rhs(_ac_entropy_added),
            ),
            Mutant(
                "kl-direction-swapped",
                "k3 of r = pi / pi_ref: slope beta (pi/pi_ref - 1) instead of beta (1 - pi_ref/pi)",
                symbolic=ac_mutation(_ac_kl_swapped),
                exact=_ac_rhs(_ac_kl_swapped),
            ),
            Mutant(
                "value-loss-without-half",
                "c_v mean((V - R)^2) without the 1/2 (Stable-Baselines3's convention)",
                symbolic=ac_mutation(_ac_value_no_half),
                exact=_ac_rhs(_ac_value_no_half),
            ),
            Mutant(
                "kl-detached",
                "the KL penalty not differentiated (as if it sat in the reward)",
                symbolic=ac_mutation(_ac_kl_detached),
                exact=_ac_rhs(_ac_kl_detached),
            ),
        ),
        notes=(
            "The value of the combined loss is a sum of terms other reference claims check; "
            "this claim checks how they are combined, through the loss's derivative along a "
            "random direction in all its differentiated inputs at once."
        ),
    ),
)


# ============================================================================ 7. V-trace
gamma = sp.Symbol("gamma", nonnegative=True)
t_ = sp.Symbol("t", integer=True, nonnegative=True)
K_ = sp.Symbol("K", integer=True, nonnegative=True)  # e(t) - t: steps from t to the cut
lag = sp.Symbol("l", integer=True)
i_ = sp.Symbol("i", integer=True)
vt_rho = sp.IndexedBase("rho", nonnegative=True)  # min(rho_bar, pi / mu)
vt_c = sp.IndexedBase("c", nonnegative=True)  # min(c_bar, pi / mu)
vt_delta = sp.IndexedBase("delta", real=True)  # r_k + gamma v'_k - V_k (the cut rules)
vt_V = sp.IndexedBase("V", real=True)
SEGMENT = 4  # the fully symbolic instance: a segment of 4 steps, t = 0 .. 3 = e


def vtrace_closed_form(
    trace: sp.IndexedBase = vt_c, weight: Any = vt_rho, length: int = SEGMENT
) -> sp.Sum:
    r"""$\sum_{l=0}^{L-1} \gamma^l (\prod_{i<l} c_i) \rho_l \delta_l$ (Espeholt et al. eq. 1,
    minus $V_0$), unevaluated; ``weight`` None drops the rho."""
    term = gamma**lag * sp.Product(trace[i_], (i_, 0, lag - 1)) * vt_delta[lag]
    if weight is not None:
        term = term * weight[lag]
    return sp.Sum(term, (lag, 0, length - 1))


def _vtrace_recursion(length: int = SEGMENT) -> sp.Expr:
    """rho_0 delta_0 + gamma c_0 (rho_1 delta_1 + gamma c_1 (...)): the backward recursion
    v_t - V_t = rho_t delta_t + gamma c_t (v_{t+1} - V_{t+1}), from the cut (where the trace
    stops) back to t = 0."""
    inner = vt_rho[length - 1] * vt_delta[length - 1]
    for k in range(length - 2, -1, -1):
        inner = vt_rho[k] * vt_delta[k] + gamma * vt_c[k] * inner
    return inner


vtrace_unrolled = Derivation(
    "vtrace-unrolled",
    (
        Step(
            _vtrace_recursion(),
            "the reference's recursion v_t - V_t = rho_t delta_t + gamma c_t (v_{t+1} - "
            "V_{t+1}) over a segment t = 0..3 that ends at a cut (Espeholt et al., Remark 1)",
        ),
        Step(
            vtrace_closed_form(),
            "expand the nested products: the k-th TD error is weighted by gamma^k c_0 ... "
            "c_{k-1} rho_k (Espeholt et al., eq. 1)",
        ),
    ),
    statement=r"v_0 - V_0 = \sum_{k=0}^{3} \gamma^k \Big(\prod_{i<k} c_i\Big) \rho_k \delta_k",
)
VTRACE_RHO_AS_TRACE = vtrace_closed_form(trace=vt_rho)
VTRACE_NO_RHO = vtrace_closed_form(weight=None)
VTRACE_NO_TRACE = sp.Sum(gamma**lag * vt_rho[lag] * vt_delta[lag], (lag, 0, SEGMENT - 1))


def _on_policy_closed_form(trace: Any, weight: Any) -> sp.Expr:
    r"""$V_t + \sum_{l=0}^{K} \gamma^l (\prod_{i<l} \text{trace}) \,\text{weight}\, \delta_{t+l}$,
    a general segment length K (unevaluated)."""
    return vt_V[t_] + IndexSum(
        gamma**lag * sp.Product(trace, (i_, 0, lag - 1)) * weight * vt_delta[t_ + lag],
        (lag, 0, K_),
    )


# On-policy (pi = mu) with thresholds >= 1 every rho and c is min(threshold, 1) = 1.
vtrace_on_policy = Derivation(
    "vtrace-on-policy",
    (
        Step(
            _on_policy_closed_form(sp.Integer(1), sp.Integer(1)),
            "the closed form with every rho_k and c_i equal to min(threshold, pi/mu) = 1 "
            "(pi = mu, thresholds >= 1), for a segment of any length K + 1",
        ),
        Step(
            vt_V[t_] + IndexSum(gamma**lag * vt_delta[t_ + lag], (lag, 0, K_)),
            "a product of ones is 1: V_t plus GAE's lambda = 1 sum, which telescopes to the "
            "bootstrapped discounted return (claim gae-closed-form, derivation lambda-one)",
        ),
    ),
    statement=r"v_t\big|_{\pi=\mu} = V_t + \sum_{l=0}^{K}\gamma^l \delta_{t+l}",
)
VTRACE_ON_POLICY_UNDISCOUNTED = vt_V[t_] + IndexSum(vt_delta[t_ + lag], (lag, 0, K_))


@dataclass(frozen=True)
class VTraceExample:
    """A buffer [T, *B] with cut flags, target and behaviour log-probs and thresholds;
    ``final_values`` is NaN where it must not be read."""

    rewards: np.ndarray
    values: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_values: np.ndarray
    last_value: np.ndarray
    log_probs: np.ndarray
    behaviour_log_probs: np.ndarray
    discount: float
    rho_bar: float
    c_bar: float

    def __repr__(self) -> str:
        return (
            f"VTraceExample(T={self.rewards.shape[0]}, B={self.rewards.shape[1:]}, "
            f"gamma={self.discount!r}, rho_bar={self.rho_bar!r}, c_bar={self.c_bar!r}, "
            f"log_ratio={(self.log_probs - self.behaviour_log_probs).tolist()}, "
            f"terminated={self.terminated.astype(int).tolist()}, "
            f"truncated={self.truncated.astype(int).tolist()})"
        )

    def column(self, name: str) -> np.ndarray:
        """``name`` as [T, N] (``last_value`` as [N]): one column per batch entry."""
        array = getattr(self, name)
        columns = int(np.prod(self.rewards.shape[1:], dtype=int))
        return array.reshape(columns) if name == "last_value" else array.reshape(-1, columns)


@st.composite
def vtrace_examples(draw: st.DrawFn) -> VTraceExample:
    """Buffers of 1-8 steps, batch (), (3,) or (2, 2); flags set at rates 0.15-0.5 (cuts at the
    last step, both flags on one step, open last steps all occur); gamma in [0.1, 1];
    log-ratios log pi - log mu in [-1.5, 1.5] (ratios 0.22..4.5, on both sides of every
    threshold), all 0 (on-policy) a fifth of the time; rho_bar, c_bar in {0, 0.5, 1, 2, inf}
    (c_bar = 0: the one-step target); rewards and values of magnitude 0.5..10."""
    steps = draw(st.integers(1, 8))
    batch = draw(st.sampled_from(((), (3,), (2, 2))))
    rates = draw(st.tuples(st.sampled_from((0.15, 0.3, 0.5)), st.sampled_from((0.15, 0.3, 0.5))))
    discount = draw(st.one_of(st.just(1.0), st.floats(0.1, 1.0)))
    rho_bar = draw(st.sampled_from((0.5, 1.0, 1.0, 2.0, np.inf)))
    c_bar = draw(st.sampled_from((0.0, 0.5, 1.0, 1.0, 2.0, np.inf)))
    on_policy = draw(st.integers(0, 4)) == 0
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (steps, *batch)

    def reals(like: tuple[int, ...]) -> np.ndarray:
        return rng.choice((-1.0, 1.0), like) * rng.uniform(0.5, 10.0, like)

    terminated, truncated = rng.random(shape) < rates[0], rng.random(shape) < rates[1]
    given = (truncated & ~terminated) | (terminated & (rng.random(shape) < 0.5))
    behaviour = -rng.uniform(0.1, 5.0, shape)
    log_ratio = np.zeros(shape) if on_policy else rng.uniform(-1.5, 1.5, shape)
    return VTraceExample(
        reals(shape),
        reals(shape),
        terminated,
        truncated,
        np.where(given, reals(shape), np.nan),
        reals(batch),
        behaviour + log_ratio,
        behaviour,
        float(discount),
        float(rho_bar),
        float(c_bar),
    )


def shipped_vtrace(example: VTraceExample) -> np.ndarray:
    """The shipped :func:`rlmath.reference.vtrace_targets` on the whole buffer."""
    return reference.vtrace_targets(
        example.rewards,
        example.values,
        example.terminated,
        example.truncated,
        example.final_values,
        example.last_value,
        example.log_probs,
        example.behaviour_log_probs,
        discount=example.discount,
        clip_rho_threshold=example.rho_bar,
        clip_c_threshold=example.c_bar,
    )


@dataclass(frozen=True)
class VTraceRules:
    """How the direct loop computes the targets; the defaults are Espeholt et al.'s eq. 1 with
    the reference's cut rules, each other value a bug class a mutant injects."""

    trace: str = "c"  # the trace weights: "c", "rho" (rho's threshold) or "one" (none)
    rho_weight: bool = True  # each TD error weighted by rho_k
    clip_rho: bool = True  # rho = min(rho_bar, ratio)
    ratio_inverted: bool = False  # mu / pi instead of pi / mu
    cut: bool = True  # the trace stops at every episode end
    bootstrap_truncation: bool = True  # a truncated step bootstraps from final_values
    absolute: bool = False  # sum the sizes |weight rho| (|r| + gamma |v'| + |V|) (the scale)


VTRACE_CORRECT = VTraceRules()


def vtrace_direct_loop(
    rules: VTraceRules = VTRACE_CORRECT,
) -> Callable[[VTraceExample], np.ndarray]:
    r"""$v_t = V_t + \sum_{k=t}^{e(t)} \gamma^{k-t} (\prod_{i=t}^{k-1} c_i) \rho_k \delta_k$ at
    every (t, b), one entry and one term at a time (math.exp of each log-ratio, e(t) by
    scanning the flags, the bootstrap by the case rule): [T, *B]."""
    import math

    def targets(example: VTraceExample) -> np.ndarray:
        rewards, values = example.column("rewards"), example.column("values")
        term, trunc = example.column("terminated"), example.column("truncated")
        finals, last = example.column("final_values"), example.column("last_value")
        log_ratio = example.column("log_probs") - example.column("behaviour_log_probs")
        steps, columns = rewards.shape
        g = example.discount
        out = np.empty((steps, columns))
        for b in range(columns):
            ratio = [math.exp((-1 if rules.ratio_inverted else 1) * x) for x in log_ratio[:, b]]
            rho = [min(example.rho_bar, q) if rules.clip_rho else q for q in ratio]
            c = {"c": [min(example.c_bar, q) for q in ratio], "rho": rho, "one": [1.0] * steps}
            trace = c[rules.trace]
            delta = []
            for k in range(steps):
                following = values[k + 1, b] if k + 1 < steps else last[b]
                if term[k, b]:
                    bootstrap = 0.0
                elif trunc[k, b]:
                    bootstrap = finals[k, b] if rules.bootstrap_truncation else 0.0
                else:
                    bootstrap = following
                if rules.absolute:
                    delta.append(abs(rewards[k, b]) + g * abs(bootstrap) + abs(values[k, b]))
                else:
                    delta.append(rewards[k, b] + g * bootstrap - values[k, b])
            for s in range(steps):
                total, weight, k = 0.0, 1.0, s
                while True:
                    total += weight * (rho[k] if rules.rho_weight else 1.0) * delta[k]
                    ends = rules.cut and (term[k, b] or trunc[k, b])
                    if ends or k == steps - 1:
                        break
                    weight *= g * trace[k]
                    k += 1
                out[s, b] = (abs if rules.absolute else float)(values[s, b]) + total
        return out.reshape(example.rewards.shape)

    return targets


def vtrace_scale(example: VTraceExample) -> float:
    """max over (t, b) of |V_t| + sum_k gamma^{k-t} (prod c) rho_k (|r_k| + gamma |v'_k| +
    |V_k|): the size of the terms both sides add."""
    sizes = vtrace_direct_loop(VTraceRules(absolute=True))(example)
    return max(float(np.max(sizes)), TINY)


def _vtrace_rtol(example: VTraceExample) -> float:
    """Each target adds 3 T terms, each weight a product of up to T factors."""
    return exact_rtol(1.0, 4 * example.rewards.shape[0] + 2)


# ============================================================================ claims 1-4
def _pg_rhs(expression: Any) -> Callable[[PGExample], np.ndarray]:
    function = lazy_lambdify(PG_SYMBOLS, expression)
    return lambda example: np.broadcast_to(
        function(*_pg_arguments(example)), example.log_probs.shape
    ).astype(float)


BASIC_CLAIMS = (
    Claim(
        id="policy-gradient-loss-reference",
        title="The reference REINFORCE loss has gradient -A_i / N in each log-prob",
        summary=(
            "rlmath.reference.policy_gradient_loss is -mean(log pi * A): its derivative in "
            "log pi(a_i | s_i) is -A_i / N, so minimising it follows the sample policy gradient."
        ),
        statement=Statement(
            pg_gradient.start,
            pg_gradient.conclusion,
            where=r"x = \log\pi_\theta(a_i \mid s_i),\ \text{entry } i \text{ of } N",
        ),
        assumptions=(
            "Advantages are constants (stop-gradient); the loss is a mean over N entries.",
            "Only entry i's share depends on x_i (the entries are separate samples).",
        ),
        references=(
            "Williams, R. J., *Simple Statistical Gradient-Following Algorithms for "
            "Connectionist Reinforcement Learning*, Machine Learning 8, 1992.",
            "Sutton, R. S. et al., *Policy Gradient Methods for Reinforcement Learning with "
            "Function Approximation*, NeurIPS 1999, Theorem 1.",
        ),
        symbolic=SymbolicLeg((pg_gradient,)),
        exact=ExactLeg(
            pg_examples(),
            lhs=pg_differences_and_variant,
            symbols=PG_SYMBOLS,
            arguments=_pg_arguments,
            rtol=_pg_rtol,
            error_scale=_pg_scale,
            description=(
                "central differences (step 1: the loss is linear, so only rounding errs) of the "
                "shipped policy_gradient_loss in each log-prob, and of a correct variant "
                "-fsum(x A) / N, vs the lambdified -A_i / N (twice)"
            ),
        ),
        mutants=(
            Mutant(
                "sum-not-mean",
                "-A_i: the loss summed over entries",
                symbolic=SymbolicMutation("pg-loss-gradient", -pg_A),
            ),
            Mutant(
                "objective-sign",
                "+A_i / N: the objective (to maximise) returned as the loss",
                symbolic=SymbolicMutation("pg-loss-gradient", pg_A / N),
            ),
            Mutant(
                "ratio-not-log",
                "-e^x A_i / N: the probability (or the ratio at pi_old = 1) times A",
                symbolic=SymbolicMutation("pg-loss-gradient", -sp.exp(pg_x) * pg_A / N),
            ),
        ),
        notes=(
            "The value of the REINFORCE loss is not an estimate of anything; only its gradient "
            "is, so the claim is about the gradient. The Monte-Carlo side (the mean of the "
            "estimator is the policy gradient) is claim policy-gradient-theorem."
        ),
    ),
    Claim(
        id="categorical-entropy-reference",
        title="The reference categorical entropy is log-sum-exp minus the mean logit",
        summary=(
            "rlmath.reference.categorical_entropy agrees with H = log sum_b e^{l_b} - "
            "sum_a p_a l_a (no log of a probability), at logits of magnitude 1e3 and with "
            "masked (-inf) actions."
        ),
        statement=Statement(entropy_lse.start, entropy_lse.conclusion),
        assumptions=(
            "Finitely many actions (general n); p = softmax(l), so the probabilities sum to 1.",
            "Masked actions (-inf logits) have p = 0 and contribute 0 (0 log 0 = 0); the "
            "lambdified side receives them as -800 (e^-800 = 0 exactly in float64).",
            "Softmax and entropy are invariant to shifting a row of logits: the lambdified side "
            "receives each row minus its maximum.",
        ),
        references=(
            "Cover, T. M. and Thomas, J. A., *Elements of Information Theory*, 2nd ed., 2006, "
            "eq. (2.1).",
        ),
        symbolic=SymbolicLeg((entropy_lse,)),
        exact=ExactLeg(
            entropy_examples(),
            lhs=shipped_entropy_and_variant,
            symbols=ENTROPY_SYMBOLS,
            arguments=_entropy_arguments,
            rtol=lambda logits: exact_rtol(n_terms=4 * logits.shape[-1] + 4),
            error_scale=_entropy_scale,
            description=(
                "[the shipped categorical_entropy (log-softmax, -sum p log p), a correct variant "
                "sum scipy.special.entr(softmax)] vs the lambdified log sum e^l - sum p l on the "
                "max-shifted rows, all rows at once, twice"
            ),
        ),
        mutants=(
            Mutant(
                "missing-minus",
                "sum p log p: the negative entropy",
                symbolic=SymbolicMutation(
                    "entropy-log-sum-exp", over_actions(softmax_p * ell[a_]) - sp.log(S_)
                ),
            ),
            Mutant(
                "log-base-two",
                "the entropy in bits (log2) instead of nats",
                symbolic=SymbolicMutation(
                    "entropy-log-sum-exp",
                    (sp.log(S_) - over_actions(softmax_p * ell[a_])) / sp.log(2),
                ),
            ),
            Mutant(
                "unnormalised-logits",
                "-sum p l without the log-partition term (logits taken for log-probs)",
                symbolic=SymbolicMutation(
                    "entropy-log-sum-exp", -over_actions(softmax_p * ell[a_])
                ),
            ),
        ),
    ),
    Claim(
        id="adaptive-kl-coefficient-reference",
        title="The reference adaptive KL coefficient follows PPO's rule",
        summary=(
            "rlmath.reference.adaptive_kl_coefficient divides beta by the factor when the "
            "measured KL is below target/tolerance, multiplies it above target*tolerance "
            "(strict inequalities), and keeps it in between; the band is never empty."
        ),
        statement=Statement(
            KL_RULE,
            KL_CLOSED,
            derivation="kl-update",
            where=r"\tau > 1,\ f > 1",
            symbol_names=KL_NAMES,
        ),
        assumptions=(
            "tau = 1 + kappa > 1 and f = 1 + phi > 1 (the reference refuses others); the "
            "three regions (below, the closed band, above) cover every d >= 0.",
            "The exact leg puts d exactly at the edges d_targ / tau and d_targ tau as float64 "
            "computes them, one ulp beside them, and anywhere; the lambdified rule compares the "
            "same float64 edges.",
        ),
        references=(
            "Schulman, J. et al., *Proximal Policy Optimization Algorithms*, arXiv:1707.06347, "
            "2017, Sec. 4 (the update following eq. 8).",
        ),
        symbolic=SymbolicLeg((kl_band,), cases=(kl_cases,)),
        exact=ExactLeg(
            kl_examples(),
            lhs=shipped_kl_and_variant,
            rhs=kl_variant(kl_closed),
            rhs_reason=(
                "the statement's right-hand side beta f^s (lambdified), which the claim ties to "
                "the conclusion of each of the three cases; a case analysis has no single "
                "conclusion to lambdify"
            ),
            rtol=exact_rtol(n_terms=2),
            description=(
                "[the shipped adaptive_kl_coefficient, a correct variant checking the upper edge "
                "first] vs the lambdified beta f^s, s = -1 below the band, +1 above, 0 inside, "
                "at and next to the edges"
            ),
        ),
        mutants=(
            Mutant(
                "directions-swapped",
                "beta * f below the band and beta / f above it",
                symbolic=kl_mutation(
                    "above", lambda b, d, t, tol, f: b / f ** kl_exponent(d, t, tol)
                ),
                exact=kl_variant(lambda b, d, t, tol, f: b / f ** kl_exponent(d, t, tol)),
            ),
            Mutant(
                "tolerance-ignored",
                "the band collapsed to d_targ: halve below it, double above it",
                symbolic=kl_mutation(
                    "inside", lambda b, d, t, tol, f: b * f ** kl_exponent(d, t, 1)
                ),
                exact=kl_variant(lambda b, d, t, tol, f: b * f ** kl_exponent(d, t, 1)),
            ),
            Mutant(
                "non-strict-edges",
                "<= and >= instead of the paper's strict inequalities (an edge changes beta)",
                exact=kl_variant(
                    lambda b, d, t, tol, f: (
                        b * f ** sp.Piecewise((-1, d <= t / tol), (1, d >= t * tol), (0, True))
                    )
                ),
            ),
            Mutant(
                "additive-step",
                "beta - f and beta + f: an additive update",
                symbolic=kl_mutation(
                    "below", lambda b, d, t, tol, f: b + f * kl_exponent(d, t, tol)
                ),
                exact=kl_variant(lambda b, d, t, tol, f: b + f * kl_exponent(d, t, tol)),
            ),
            Mutant(
                "band-inverted",
                "the band's edges exchanged: d_targ tau <= d_targ / tau claimed",
                symbolic=SymbolicMutation("kl-band-not-empty", kl_target * _TAU**2),
            ),
        ),
        notes=(
            "A heuristic rule, so the claim is about what the code computes: the three "
            "regions, the strict edges, and that the band is non-empty (so which condition "
            "the code checks first does not matter)."
        ),
    ),
    Claim(
        id="conservative-dpo-loss-reference",
        title="Label-smoothed DPO is the DPO loss averaged over flipped labels",
        summary=(
            "rlmath.reference.preference_loss(loss_type='sigmoid', label_smoothing=eps) is "
            "the DPO loss in expectation over labels flipped with probability eps: "
            "(1 - eps) sp(-beta z) + eps sp(beta z)."
        ),
        statement=Statement(cdpo.start, cdpo.conclusion, where=r"0 \le \varepsilon \le \tfrac12"),
        assumptions=(
            "A flip exchanges the chosen and rejected responses, so the margin z changes sign.",
            "The loss is the mean over pairs of the per-pair loss (the exact leg averages).",
        ),
        references=(
            "Rafailov, R. et al., *Direct Preference Optimization*, NeurIPS 2023, eq. (7).",
            "Mitchell, E., *A Note on DPO with Noisy Preferences and Relationship to IPO*, "
            "2023, eq. (3).",
            "Hugging Face TRL, *DPOTrainer* documentation, Loss functions (loss_type).",
        ),
        symbolic=SymbolicLeg((cdpo,)),
        exact=ExactLeg(
            preference_examples(),
            lhs=shipped_cdpo_and_variant,
            rhs=_cdpo_rhs(cdpo.conclusion),
            rhs_reason=_PREF_REASON,
            rtol=_pref_rtol,
            error_scale=_pref_scale,
            description=(
                "[the shipped sigmoid loss with label smoothing (logaddexp), a correct variant "
                "with scipy.special.log_expit] vs the mean over pairs of the lambdified "
                "(1 - eps) log(1 + e^{-beta z}) + eps log(1 + e^{beta z}), twice"
            ),
        ),
        mutants=(
            Mutant(
                "smoothing-sides-swapped",
                "eps sp(-beta z) + (1 - eps) sp(beta z)",
                symbolic=SymbolicMutation(
                    "cdpo-expected-flip",
                    smooth * softplus(-pbeta * z) + (1 - smooth) * softplus(pbeta * z),
                ),
                exact=_cdpo_rhs(smooth * softplus(-pbeta * z) + (1 - smooth) * softplus(pbeta * z)),
            ),
            Mutant(
                "smoothing-subtracted",
                "(1 - eps) sp(-beta z) - eps sp(beta z): the robust numerator without its "
                "normaliser",
                symbolic=SymbolicMutation(
                    "cdpo-expected-flip",
                    (1 - smooth) * softplus(-pbeta * z) - smooth * softplus(pbeta * z),
                ),
                exact=_cdpo_rhs((1 - smooth) * softplus(-pbeta * z) - smooth * softplus(pbeta * z)),
            ),
            Mutant(
                "beta-dropped",
                "sp(-z) terms: the margin not scaled by beta",
                symbolic=SymbolicMutation(
                    "cdpo-expected-flip", (1 - smooth) * softplus(-z) + smooth * softplus(z)
                ),
                exact=_cdpo_rhs((1 - smooth) * softplus(-z) + smooth * softplus(z)),
            ),
        ),
    ),
    Claim(
        id="robust-dpo-loss-reference",
        title="The robust DPO loss averaged over flipped labels is the clean DPO loss",
        summary=(
            "rlmath.reference.preference_loss(loss_type='robust') is unbiased for label noise: "
            "(1 - eps) l(z) + eps l(-z) = -log sigma(beta z) for every margin z."
        ),
        statement=Statement(
            robust.start,
            robust.conclusion,
            where=r"\varepsilon = w/2 \in (0, \tfrac12)",
            symbol_names={w2: "w"},
        ),
        assumptions=(
            "0 < varepsilon < 1/2, written varepsilon = w/2 with 0 < w < 1 (so 1 - 2 varepsilon "
            "is not 0); the exact leg also checks varepsilon = 0.",
            "A flip exchanges chosen and rejected (z -> -z); the exact leg calls the shipped "
            "loss on the pairs and on the pairs with the labels exchanged.",
        ),
        references=(
            "Chowdhury, S. R., Kini, A., Natarajan, N., *Provably Robust DPO: Aligning Language "
            "Models with Noisy Feedback*, ICML 2024 (the robust loss, unbiased under label "
            "flips).",
            "Hugging Face TRL, *DPOTrainer* documentation, Loss functions (loss_type='robust').",
        ),
        symbolic=SymbolicLeg((robust,)),
        exact=ExactLeg(
            preference_examples(max_smoothing=0.45),
            lhs=shipped_robust_flip_average,
            rhs=_robust_rhs(robust.conclusion),
            rhs_reason=_PREF_REASON,
            rtol=_pref_rtol,
            error_scale=_pref_scale,
            description=(
                "(1 - eps) x the shipped robust loss + eps x the shipped robust loss with the "
                "labels exchanged vs the mean of the lambdified log(1 + e^{-beta z})"
            ),
        ),
        mutants=(
            Mutant(
                "normaliser-one-minus-eps",
                "divided by 1 - eps instead of 1 - 2 eps",
                symbolic=SymbolicMutation(
                    "robust-unbiased", softplus(-pbeta * z) * (1 - w2) / (1 - _eps_r)
                ),
                exact=_robust_rhs(softplus(-pbeta * z) * (1 - w2) / (1 - _eps_r)),
            ),
            Mutant(
                "cdpo-instead",
                "the flip average of the conservative loss: sp(-beta z) + eps (1 - eps) "
                "... is not the clean loss",
                symbolic=SymbolicMutation(
                    "robust-unbiased",
                    ((1 - _eps_r) ** 2 + _eps_r**2) * softplus(-pbeta * z)
                    + 2 * _eps_r * (1 - _eps_r) * softplus(pbeta * z),
                ),
                exact=_robust_rhs(
                    ((1 - _eps_r) ** 2 + _eps_r**2) * softplus(-pbeta * z)
                    + 2 * _eps_r * (1 - _eps_r) * softplus(pbeta * z)
                ),
            ),
        ),
    ),
    Claim(
        id="ipo-loss-reference",
        title="The reference IPO loss regresses the length-averaged margin on 1/(2 beta)",
        summary=(
            "rlmath.reference.preference_loss(loss_type='ipo') has derivative "
            "2 (zt - 1/(2 beta)) in the margin zt of length-averaged log-probs: its minimum "
            "is at zt = 1/(2 beta), as in IPO."
        ),
        statement=Statement(ipo_gradient.start, ipo_gradient.conclusion),
        assumptions=(
            "zt is the margin of log-probs divided by their responses' token counts (TRL's "
            "convention for 'ipo'); d zt_i / d log pi(y^w_i) = 1 / n^w_i.",
            "The loss is the mean over the N pairs: the exact leg multiplies the central "
            "differences by N n^w_i (step 1: the loss is quadratic, so only rounding errs).",
        ),
        references=(
            "Azar, M. G. et al., *A General Theoretical Paradigm to Understand Learning from "
            "Human Preferences*, AISTATS 2024 (arXiv:2310.12036), eq. (17).",
            "Hugging Face TRL, *DPOTrainer* documentation, Loss functions (loss_type='ipo').",
        ),
        symbolic=SymbolicLeg((ipo_gradient,)),
        exact=ExactLeg(
            preference_examples(),
            lhs=shipped_ipo_differences,
            symbols=IPO_SYMBOLS,
            arguments=_ipo_arguments,
            rtol=_ipo_rtol,
            error_scale=_ipo_scale,
            description=(
                "N n^w_i x central differences of the shipped IPO loss in each chosen log-prob "
                "vs the lambdified 2 (zt_i - 1/(2 beta)), zt by a direct loop"
            ),
        ),
        mutants=(
            Mutant(
                "target-one-over-beta",
                "(zt - 1/beta)^2: the target without the 1/2",
                symbolic=SymbolicMutation("ipo-gradient", 2 * (zt - 1 / pbeta)),
            ),
            Mutant(
                "sign-of-target",
                "(zt + 1/(2 beta))^2",
                symbolic=SymbolicMutation("ipo-gradient", 2 * (zt + 1 / (2 * pbeta))),
            ),
            Mutant(
                "summed-log-probs",
                "the margin of summed log-probs (as the other loss types use) in the IPO loss",
                exact=lambda example: np.broadcast_to(
                    2 * (example.margin - 1 / (2 * example.beta)) * example.chosen_lengths,
                    example.chosen.shape,
                ),
            ),
        ),
    ),
)


VTRACE_REASON = (
    "a direct loop of Espeholt et al.'s eq. 1 at every step t and batch entry b: the sum over "
    "k = t..e(t) of gamma^(k-t) c_t ... c_(k-1) rho_k delta_k, one term at a time, with e(t) "
    "found by scanning the flags and delta_k by the case rule; the symbolic leg proves the "
    "reference's recursion equal to this closed form (a 4-step instance) and the on-policy "
    "case equal to the bootstrapped return (every segment length); lambdify cannot carry a "
    "segment length that differs by entry"
)


def _vtrace_variant(**changes: Any) -> Callable[[VTraceExample], np.ndarray]:
    from dataclasses import replace

    return vtrace_direct_loop(replace(VTRACE_CORRECT, **changes))


VTRACE_CLAIMS = (
    Claim(
        id="vtrace-targets-reference",
        title="The reference V-trace targets are IMPALA's truncated importance-weighted sums",
        summary=(
            "rlmath.reference.vtrace_targets computes v_t = V_t + sum_k gamma^(k-t) (c_t ... "
            "c_(k-1)) rho_k delta_k with rho = min(rho_bar, pi/mu), c = min(c_bar, pi/mu), cut "
            "at every episode end; on-policy it is the bootstrapped discounted return."
        ),
        statement=Statement(vtrace_unrolled.start, vtrace_unrolled.conclusion),
        assumptions=(
            "The recursion-equals-closed-form derivation is a fully symbolic instance: a "
            "segment of 4 steps (every rho, c, delta and gamma a symbol); the exact leg checks "
            "segments of 1-8 steps, and the on-policy derivation holds for every segment length "
            "K + 1 (K an integer symbol).",
            "Conventions of rlmath.reference: time-major [T, *B]; the trace is cut at every "
            "episode end (terminated or truncated); the TD errors use the cut rules of "
            "temporal_difference_errors (no bootstrap after a termination, final_values after "
            "a truncation, last_value at the open end of the buffer).",
            "pi/mu = exp(log_probs - behaviour_log_probs); thresholds rho_bar, c_bar >= 0 (inf "
            "allowed).",
        ),
        references=(
            "Espeholt, L. et al., *IMPALA: Scalable Distributed Deep-RL with Importance "
            "Weighted Actor-Learner Architectures*, ICML 2018, eq. (1) and Remark 1.",
            "Pardo, F. et al., *Time Limits in Reinforcement Learning*, ICML 2018.",
        ),
        symbolic=SymbolicLeg((vtrace_unrolled, vtrace_on_policy)),
        exact=ExactLeg(
            vtrace_examples(),
            lhs=shipped_vtrace,
            rhs=vtrace_direct_loop(),
            rhs_reason=VTRACE_REASON,
            rtol=_vtrace_rtol,
            error_scale=vtrace_scale,
            description=(
                "the shipped vtrace_targets (a backward recursion with masks) vs a direct loop "
                "of IMPALA's eq. 1, term by term, at every (t, b)"
            ),
        ),
        mutants=(
            Mutant(
                "trace-uses-rho",
                "the traces c_i clipped at rho_bar (c = rho): the two thresholds confused",
                symbolic=SymbolicMutation("vtrace-unrolled", VTRACE_RHO_AS_TRACE),
                exact=_vtrace_variant(trace="rho"),
            ),
            Mutant(
                "no-trace-weights",
                "gamma^k rho_k delta_k: the trace products c_t ... c_(k-1) dropped",
                symbolic=SymbolicMutation("vtrace-unrolled", VTRACE_NO_TRACE),
                exact=_vtrace_variant(trace="one"),
            ),
            Mutant(
                "td-error-unweighted",
                "the TD errors not weighted by rho_k (only the traces)",
                symbolic=SymbolicMutation("vtrace-unrolled", VTRACE_NO_RHO),
                exact=_vtrace_variant(rho_weight=False),
            ),
            Mutant(
                "rho-unclipped",
                "rho_k = pi/mu: the threshold rho_bar not applied",
                exact=_vtrace_variant(clip_rho=False),
            ),
            Mutant(
                "ratio-inverted",
                "mu/pi instead of pi/mu",
                exact=_vtrace_variant(ratio_inverted=True),
            ),
            Mutant(
                "trace-across-episodes",
                "the trace runs on across episode ends",
                exact=_vtrace_variant(cut=False),
            ),
            Mutant(
                "truncation-as-termination",
                "a truncated step bootstraps nothing",
                exact=_vtrace_variant(bootstrap_truncation=False),
            ),
            Mutant(
                "on-policy-undiscounted",
                "on-policy: V_t + sum_l delta_{t+l}, the TD errors not discounted",
                symbolic=SymbolicMutation("vtrace-on-policy", VTRACE_ON_POLICY_UNDISCOUNTED),
            ),
        ),
        notes=(
            "With pi = mu and thresholds >= 1 every weight is 1 and the target is "
            "lambda_returns at lambda = 1 (claim lambda-returns-closed-form); with c_bar = 0 it "
            "is the one-step target V_t + rho_t delta_t. No Monte-Carlo leg: a deterministic "
            "identity between finite sums."
        ),
    ),
)

CLAIMS = BASIC_CLAIMS + HINGE_CLAIMS + DUAL_CLAIMS + AC_CLAIMS + VTRACE_CLAIMS
