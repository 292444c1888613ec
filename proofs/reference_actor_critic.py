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
   derivative in the length-averaged margin is $2(\tilde z - 1/(2\beta))$ and the hinge's is
   $-\beta$ below the margin (``ipo-and-hinge-loss-reference``).
5. Dual-clip PPO (``dual-clip-ppo-loss-reference``): the objective of entry $i$ is
   $A \min(\rho, 1 + \epsilon)$ for $A \ge 0$ and $A \min(\max(\rho, 1 - \epsilon), c)$ for
   $A < 0$, so it is bounded below by $c A$ (Ye et al.).
6. Combined loss (``actor-critic-loss-reference``): the directional derivative of PPO's
   combined loss (clip range not binding) along $(u, w, z)$ in (log-probs, values, entropies)
   is $\frac1N \sum_i [(-\rho_i A_i + \beta (1 - r_i)) u_i + c_v (V_i - R_i) w_i - c_e z_i]$,
   $r_i = \pi_\mathrm{ref}/\pi_\theta$.
7. V-trace (``vtrace-targets-reference``): the backward recursion
   $v_t - V_t = \rho_t \delta_t + \gamma c_t (v_{t+1} - V_{t+1})$ unrolls to IMPALA's
   closed form $\sum_k \gamma^{k-t} (\prod_{i<k} c_i) \rho_k \delta_k$, and with all weights
   1 it is the bootstrapped discounted return (general segment length).

Conventions: those of :mod:`rlmath.reference` (losses minimised, means over entries, ratios
formed in log space, old log-probs, advantages, returns, reference log-probs constants).

Proof sketch: algebra of each formula (sympy), case analyses over the kinks of the clipped
objectives, telescoping for V-trace on-policy.

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
from rlmath.symbolic import IndexSum
from rlmath.tolerances import EPS, exact_rtol

TINY = float(np.finfo(np.float64).tiny)


def lazy_lambdify(symbols: tuple, expression: Any) -> Callable[..., np.ndarray]:
    """:func:`rlmath.claims.lambdify`, done on the first call (mutants are lambdified only
    when their claim is verified)."""
    cache: list[Callable[..., np.ndarray]] = []

    def function(*values: object) -> np.ndarray:
        if not cache:
            cache.append(lambdify(symbols, expression))
        return cache[0](*values)

    return function


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


def _pg_scale(example: PGExample) -> float:
    return float(np.max(np.abs(example.advantages))) / example.log_probs.size


def _pg_rtol(example: PGExample) -> float:
    bound = 2.0 * _pg_rounding(example) / (2.0 * PG_STEP)
    return max(exact_rtol(n_terms=example.log_probs.size + 4), 4.0 * bound / _pg_scale(example))


PG_SYMBOLS = (pg_x, pg_A, N)


def _pg_arguments(example: PGExample) -> tuple:
    return example.log_probs, example.advantages, example.log_probs.size


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
    return shifted.T, logits.shape[-1]


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


def kl_variant(wrong: Callable[..., sp.Expr]) -> Callable[[Any], float]:
    """The wrong closed form, lambdified, as the exact leg's rhs."""
    function = lazy_lambdify(KL_SYMBOLS, wrong(*KL_SYMBOLS))
    return lambda example: float(function(*_kl_arguments(example)))


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


def _cdpo_rhs(expression: Any) -> Callable[[PreferenceExample], float]:
    return _mean_over_pairs(lazy_lambdify(PREF_SYMBOLS, expression), _pref_arguments)


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
            lhs=shipped_pg_differences,
            symbols=PG_SYMBOLS,
            arguments=_pg_arguments,
            rtol=_pg_rtol,
            error_scale=_pg_scale,
            description=(
                "central differences (step 1: the loss is linear, so only rounding errs) of the "
                "shipped policy_gradient_loss in each log-prob vs the lambdified -A_i / N"
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
            lhs=reference.categorical_entropy,
            symbols=ENTROPY_SYMBOLS,
            arguments=_entropy_arguments,
            rtol=lambda logits: exact_rtol(n_terms=4 * logits.shape[-1] + 4),
            error_scale=_entropy_scale,
            description=(
                "the shipped categorical_entropy (log-softmax, -sum p log p) vs the lambdified "
                "log sum e^l - sum p l on the max-shifted rows, all rows at once"
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
            lhs=shipped_kl,
            rhs=kl_variant(kl_closed),
            rhs_reason=(
                "the statement's right-hand side beta f^s (lambdified), which the claim ties to "
                "the conclusion of each of the three cases; a case analysis has no single "
                "conclusion to lambdify"
            ),
            rtol=exact_rtol(n_terms=2),
            description=(
                "the shipped adaptive_kl_coefficient vs the lambdified beta f^s, s = -1 below "
                "the band, +1 above, 0 inside, at and next to the edges"
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
            lhs=shipped_cdpo,
            rhs=_cdpo_rhs(cdpo.conclusion),
            rhs_reason=_PREF_REASON,
            rtol=_pref_rtol,
            error_scale=_pref_scale,
            description=(
                "the shipped sigmoid loss with label smoothing (logaddexp) vs the mean over "
                "pairs of the lambdified (1 - eps) log(1 + e^{-beta z}) + eps log(1 + e^{beta z})"
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
            "Models with Noisy Feedback*, ICML 2024, eq. (8) and Lemma 3.1.",
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

CLAIMS = BASIC_CLAIMS
