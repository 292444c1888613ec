r"""Every numerical tolerance rlmath uses, stated and justified in one place.

Float64 has unit roundoff $u = 2^{-53} \approx 1.1 \times 10^{-16}$ (``EPS / 2``). A sum of
$n$ non-negative terms computed in float64 has a relative error of at most $(n - 1) u$
(Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., 2002, eq. 4.4); a linear
solve with condition number $\kappa$ loses about $\log_{10} \kappa$ further digits (Higham,
Thm. 7.2). Tolerances below are built from those two facts; where a tolerance is a policy
rather than a bound, it says so.
"""

from __future__ import annotations

import numpy as np

#: Machine epsilon of float64 (twice the unit roundoff).
EPS: float = float(np.finfo(np.float64).eps)

#: Policy: absolute slack when checking that a row of probabilities sums to 1. Any row that
#: was normalised in float64 (error about ``n * EPS``, far below 1e-9 for n < 1e6) passes; rows
#: typed in by hand with a few significant digits, or normalised in float32 (error about
#: ``n * 6e-8``), are rejected so that a wrong MDP is never accepted silently. Renormalise such
#: input yourself before constructing the object.
PROBABILITY_SUM_ATOL: float = 1e-9

#: Policy: the loosest relative tolerance an *exact* leg may apply. Exact legs compare two
#: float64 computations, so their tolerance is rounding (``exact_rtol``: 1e-14 to 1e-11 in the
#: shipped claims) or the truncation error of a central difference with a stated step (at
#: most 4e-6 in the shipped claims, ``policy-gradient-theorem``). A tolerance above 1e-4 no
#: longer tells a correct formula from one that is off by a small factor (a dropped
#: (1 - gamma) at gamma = 0.9999, a term of relative size 1e-3): such a comparison is not
#: exact, and a tolerance loosened "to quiet a flaky check" would hide a real error. The exact
#: leg reports an error (not a verdict) when any example's tolerance exceeds this.
MAX_EXACT_RTOL: float = 1e-4

#: An example of an exact leg is *resolvable* when the compared quantity exceeds this many
#: times its error bound; its relative tolerance (bound / size) is then at most
#: ``MAX_EXACT_RTOL / 2``, inside the limit above. Examples below it are skipped (filtered),
#: never passed: there the comparison cannot tell a right formula from a wrong one.
RESOLUTION_FACTOR: float = 2.0 / MAX_EXACT_RTOL

#: Residual bound for the Krylov solves of $(I - \gamma P_\pi) x = b$ (rlmath.exact). For the
#: value solve we require $\|M x - b\|_\infty \le \delta \|b\|_\infty$; since
#: $\|M^{-1}\|_\infty \le 1/(1-\gamma)$ this bounds the error by
#: $\|x - x^*\|_\infty \le \delta \|b\|_\infty / (1 - \gamma)$, i.e. $\delta$ relative to the
#: largest value the solution can take. The occupancy solve $M^\top d = \rho_0$ is bounded the
#: same way in the 1-norm. $\delta = 10^{-12}$ is about $10^4$ ulps: what restarted GMRES
#: reaches reliably in float64, and smaller than any tolerance a numeric leg applies.
KRYLOV_RESIDUAL_RTOL: float = 1e-12


def exact_rtol(condition_number: float = 1.0, n_terms: int = 1) -> float:
    r"""Relative tolerance for comparing two float64 computations of one exact quantity.

    $$ \mathrm{rtol} = 64\, \varepsilon \, \max(1, \kappa) \, \max(1, n) $$

    where $\varepsilon$ is float64 machine epsilon, $\kappa$ the condition number of the
    problem and $n$ the number of terms accumulated. The factor 64 is a safety margin for the
    constants hidden in the forward-error bounds (Higham 2002, eq. 4.4 and Thm. 7.2), so that a
    correct computation never trips it while a wrong formula (an error of order 1e-3 or more)
    always does.

    Args:
        condition_number: estimate of the problem's condition number $\kappa$ (for a discounted
            policy evaluation, $(1 + \gamma)/(1 - \gamma)$ bounds the infinity-norm one).
        n_terms: how many terms were summed.

    Returns:
        The relative tolerance, a float.

    Raises:
        ValueError: if ``condition_number`` is not finite or ``n_terms`` is negative.

    Examples:
        >>> exact_rtol() == 64 * EPS
        True
    """
    if not np.isfinite(condition_number):
        raise ValueError(f"condition_number must be finite, got {condition_number!r}")
    if n_terms < 0:
        raise ValueError(f"n_terms must be >= 0, got {n_terms!r}")
    return 64.0 * EPS * max(1.0, float(condition_number)) * max(1, int(n_terms))


def discounted_condition_number(gamma: float) -> float:
    r"""Infinity-norm condition number bound of $I - \gamma P$ for a stochastic matrix $P$.

    $$ \kappa_\infty(I - \gamma P) \le \|I - \gamma P\|_\infty \|(I - \gamma P)^{-1}\|_\infty
       \le \frac{1 + \gamma}{1 - \gamma}. $$

    Args:
        gamma: discount in [0, 1).

    Returns:
        The bound, a float.

    Examples:
        >>> discounted_condition_number(0.5)
        3.0
    """
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma!r}")
    return (1.0 + gamma) / (1.0 - gamma)


def central_difference_step(
    third_derivative_bound: float, evaluation_error: float
) -> tuple[float, float]:
    r"""Step $h$ of a central difference and the bound on its error, for a smooth $f$.

    With $|f'''| \le M_3$ near $x$ and each evaluation of $f$ off by at most $\delta$,

    $$ \left|\frac{f(x+h) - f(x-h)}{2h} - f'(x)\right| \le \frac{M_3 h^2}{6} + \frac{\delta}{h} $$

    (Taylor's theorem with the Lagrange remainder for the truncation, two rounding errors of
    size $\delta$ divided by $2h$); the bound is smallest at $h = (3\delta / M_3)^{1/3}$.
    Divide by the step actually taken, ``(x + h) - (x - h)``, so that representing $x \pm h$
    adds no error.

    Args:
        third_derivative_bound: $M_3 \ge 0$.
        evaluation_error: $\delta > 0$, the absolute error of one evaluation of $f$.

    Returns:
        ``(h, error_bound)``.

    Raises:
        ValueError: if ``evaluation_error`` is not positive or either argument is not finite.

    Examples:
        >>> h, bound = central_difference_step(6.0, 1e-15)
        >>> float(f"{h:.3g}"), float(f"{bound:.3g}")
        (7.94e-06, 1.89e-10)
    """
    if not (np.isfinite(third_derivative_bound) and third_derivative_bound >= 0):
        raise ValueError(
            f"third_derivative_bound must be finite and >= 0, got {third_derivative_bound!r}"
        )
    if not (np.isfinite(evaluation_error) and evaluation_error > 0):
        raise ValueError(f"evaluation_error must be finite and > 0, got {evaluation_error!r}")
    M3 = max(float(third_derivative_bound), evaluation_error)  # M3 = 0: any h works; keep h finite
    h = (3.0 * evaluation_error / M3) ** (1.0 / 3.0)
    return h, M3 * h**2 / 6.0 + evaluation_error / h


def softmax_objective_third_derivative_bound(
    reward_bound: float, effective_horizon: float
) -> float:
    r"""Bound on $|\partial^3 J / \partial\theta_{s,a}^3|$ for a tabular softmax policy.

    Along one logit $\theta_{s,a}$ only row $s$ of $\pi$ moves: $\pi(a|s) = \sigma(\theta_{s,a}
    - c)$ and $\pi(b|s) = (1 - \sigma)\,w_b$, so $D_k = \sum_b |\partial^k \pi(b|s)| =
    2|\sigma^{(k)}| \le 2 \cdot (\tfrac14, \tfrac{1}{6\sqrt3}, \tfrac18)$ for $k = 1, 2, 3$.
    Differentiating $(I - \gamma P_\pi) V = r_\pi$ three times, with
    $\|(I - \gamma P_\pi)^{-1}\|_\infty \le T$, $\|V\|_\infty \le R T$,
    $\|r_\pi^{(k)}\|_\infty \le D_k R$ and $\|P_\pi^{(k)}\|_\infty \le D_k$, gives
    $\|V'\| \le D_1 R T^2$, $\|V''\| \le D_2 R T^2 + 2 D_1^2 R T^3$ and

    $$ \begin{aligned} |J'''| \le \|V'''\|_\infty
       &\le R\,(D_3 T^2 + 6 D_1 D_2 T^3 + 6 D_1^3 T^4) \\
       &\le R\,(0.25\, T^2 + 0.578\, T^3 + 0.75\, T^4), \end{aligned} $$

    where $R = \max|r|$ and $T = 1/(1-\gamma)$; for a finite horizon $H$ the backward
    recursion gives the same with $T = H$ (every $\sum_{t<H} \gamma^t \le H$).

    Args:
        reward_bound: $R = \max_{s,a} |r(s, a)|$.
        effective_horizon: $T$, ``1 / (1 - gamma)`` or the finite horizon ``H``.

    Returns:
        The bound, a float.

    Examples:
        >>> softmax_objective_third_derivative_bound(1.0, 1.0) < 1.6
        True
    """
    R, T = float(reward_bound), float(effective_horizon)
    D1, D2, D3 = 0.5, 1.0 / (3.0 * float(np.sqrt(3.0))), 0.25
    return R * (D3 * T**2 + 6.0 * D1 * D2 * T**3 + 6.0 * D1**3 * T**4)


#: Safety factor of the conformance comparison (see :func:`conformance_rtol`).
CONFORMANCE_SAFETY: float = 64.0


def conformance_rtol(dtype: np.dtype | type = np.float64) -> float:
    r"""Tolerance per unit of error scale when comparing an implementation with the reference.

    $$ |\text{actual} - \text{expected}| \le \mathrm{rtol} \cdot s, \qquad
       \mathrm{rtol} = 64 \, \varepsilon_\text{dtype}, $$

    where $\varepsilon_\text{dtype}$ is the machine epsilon of the implementation's floating
    type ($2.2 \times 10^{-16}$ for float64, $1.2 \times 10^{-7}$ for float32) and $s$ is the
    *error scale* each spec in :mod:`rlmath.specs` computes for the example: a first-order
    forward-error bound of the quantity divided by the unit roundoff, i.e. the same formula
    evaluated on absolute values (no cancellation), times the number of rounded operations that
    accumulate (Higham 2002, eq. 3.5 for products, eq. 4.4 for sums), times
    $1 + |\log\rho|$ where an exponential amplifies the error of its argument. Inputs are
    rounded to the implementation's dtype before the reference is evaluated, so the error of
    representing the inputs is not charged to the implementation. The factor 64 covers the
    constants the first-order bounds drop.

    Args:
        dtype: float64 or float32 (anything ``numpy.dtype`` accepts).

    Returns:
        The relative tolerance, a float.

    Raises:
        ValueError: if ``dtype`` is not float32 or float64.

    Examples:
        >>> conformance_rtol(np.float64) == 64 * EPS
        True
        >>> round(conformance_rtol(np.float32) / conformance_rtol(np.float64))
        536870912
    """
    kind = np.dtype(dtype)
    if kind not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {kind}")
    return CONFORMANCE_SAFETY * float(np.finfo(kind).eps)


#: How far a flushed subnormal can reach into a result: a flushed input times a factor up to
#: $\lvert \log \mathrm{tiny} \rvert \approx 745$ (float64), summed over a few terms: 1024
#: smallest normals.
FLUSH_TO_ZERO_REACH: float = 1024.0


def conformance_atol(dtype: np.dtype | type = np.float64, *, flush_to_zero: bool = False) -> float:
    r"""Absolute floor of the conformance comparison: $64 \times$ the smallest normal number.

    Below the smallest normal number (1.2e-38 in float32) results are subnormal and carry
    fewer significant bits, so no relative bound holds there; the floor makes such results
    compare equal to zero without affecting any result of ordinary size.

    On a *flush-to-zero* platform (XLA on CPU, so JAX; many GPU kernels) every subnormal
    intermediate becomes 0, so a result that is a subnormal times a moderate factor (an
    entropy gradient $-\pi_k(\log\pi_k + H)$ with $\pi_k \approx 5 \times 10^{-309}$ is
    $3.9 \times 10^{-306}$ in float64) comes out as exactly 0. With ``flush_to_zero`` the floor
    is :data:`FLUSH_TO_ZERO_REACH` times larger: results are compared as such a platform
    produces them. ``rlmath check`` uses it for JAX implementations.

    Examples:
        >>> conformance_atol(np.float32) == 64 * float(np.finfo(np.float32).tiny)
        True
        >>> conformance_atol(np.float64, flush_to_zero=True) > 3.9e-306
        True
    """
    kind = np.dtype(dtype)
    if kind not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype must be float32 or float64, got {kind}")
    reach = FLUSH_TO_ZERO_REACH if flush_to_zero else 1.0
    return CONFORMANCE_SAFETY * reach * float(np.finfo(kind).tiny)


#: Step of the complex-step derivative $f'(x) = \operatorname{Im} f(x + ih)/h + O(h^2)$ used by
#: :mod:`rlmath.audit` on NumPy losses. The truncation error is $h^2 |f'''| / 6$, below
#: $10^{-40}$ relative for any loss of moderate derivatives, and there is no subtractive
#: cancellation, so the derivative is exact to the rounding of $f$'s own evaluation
#: (Squire and Trapp, "Using complex variables to estimate derivatives of real functions",
#: SIAM Review 40, 1998).
AUDIT_COMPLEX_STEP: float = 1e-20

#: Step of the fourth-order central difference used by :mod:`rlmath.audit` when a NumPy loss
#: is not complex-analytic (``abs``, comparisons on the perturbed argument):
#: $h = 2^{-10} \approx 9.8 \times 10^{-4}$, a power of two (so $x \pm h$, $x \pm 2h$ are exact
#: for the log-probabilities of the audit, $|x| < 2^{40}$), the minimiser
#: $h^* = (45 \delta / (4 M_5))^{1/5} \approx 10^{-3}$ of :func:`fourth_order_difference_error`
#: for $\delta = 4 \varepsilon s$ and $M_5 =$ :data:`AUDIT_FIFTH_DERIVATIVE_FACTOR` $\cdot s$; the
#: bound there is about $2 \times 10^{-12} s$ per derivative.
AUDIT_DIFFERENCE_STEP: float = 2.0**-10

#: Assumed bound on $|\partial^5 \ell / \partial z^5|$ of a loss along one log-probability $z$,
#: relative to the loss's scale $s = \max(1, |\ell|, |\partial\ell/\partial z|)$. The LLM losses
#: are polynomials, exponentials $e^{z - z_\mathrm{old}}$ (fifth derivative equal to the ratio)
#: and clips of them near ratio 1, so 10 is generous; a loss with sharper dependence (a huge
#: coefficient inside an exponential) can break it, which is why the audit prefers complex steps.
AUDIT_FIFTH_DERIVATIVE_FACTOR: float = 10.0


def fourth_order_difference_error(
    fifth_derivative_bound: float, evaluation_error: float, step: float
) -> float:
    r"""Error bound of the fourth-order central difference.

    $$ D_h f(x) = \frac{f(x - 2h) - 8 f(x - h) + 8 f(x + h) - f(x + 2h)}{12 h}, \qquad
       |D_h f(x) - f'(x)| \le \frac{M_5 h^4}{30} + \frac{3 \delta}{2 h}, $$

    with $|f^{(5)}| \le M_5$ near $x$ and each evaluation off by at most $\delta$ (Taylor's
    theorem with Lagrange remainders: the $h^4$ terms combine to $M_5 h^4 (8 \cdot 1 + 32)/(120
    \cdot 12) \le M_5 h^4 / 30$; rounding: $(1 + 8 + 8 + 1)\delta / (12 h)$).

    Args:
        fifth_derivative_bound: $M_5 \ge 0$.
        evaluation_error: $\delta \ge 0$.
        step: $h > 0$.

    Returns:
        The bound, a float.

    Raises:
        ValueError: if an argument is negative or not finite, or ``step`` is not positive.

    Examples:
        >>> round(fourth_order_difference_error(30.0, 0.0, 0.1), 12)
        0.0001
    """
    for name, value in (
        ("fifth_derivative_bound", fifth_derivative_bound),
        ("evaluation_error", evaluation_error),
        ("step", step),
    ):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    if step == 0:
        raise ValueError("step must be > 0, got 0")
    return float(fifth_derivative_bound) * step**4 / 30.0 + 1.5 * float(evaluation_error) / step


def audit_rtol(n_terms: int, cancellation: float = 1.0, *, dtype_eps: float = EPS) -> float:
    r"""Relative tolerance of an exact expected gradient summed over $n$ weighted groups.

    $$ \mathrm{rtol} = 64\, \varepsilon\, \max(1, \kappa)\, \max(1, n), \qquad
       \kappa = \frac{\big\| \sum_b P_b\, |g_b| \big\|}{\big\| \sum_b P_b\, g_b \big\|}, $$

    the forward-error bound of a sum of $n$ terms (Higham 2002, eq. 4.4) relative to the result,
    with $\kappa \ge 1$ the cancellation between the groups' gradients $g_b$ (the RLOO and GRPO
    baselines cancel most of each group's gradient in expectation) and $\varepsilon$ the machine
    epsilon of the loss's floating type (float64 unless the loss computes in float32). It is
    :func:`exact_rtol` with that $\kappa$ and the machine epsilon of the dtype.

    Args:
        n_terms: number of groups summed.
        cancellation: $\kappa \ge 1$ (values below 1 count as 1).
        dtype_eps: machine epsilon of the loss's dtype.

    Returns:
        The relative tolerance, a float.

    Examples:
        >>> audit_rtol(1) == exact_rtol()
        True
    """
    if not (np.isfinite(dtype_eps) and dtype_eps > 0):
        raise ValueError(f"dtype_eps must be finite and > 0, got {dtype_eps!r}")
    return exact_rtol(cancellation, n_terms) * float(dtype_eps) / EPS


#: Policy: relative slack of the audit's permutation check (a loss's value and per-response
#: gradient on a group and on the same group with its rows shifted). A permutation-invariant
#: loss differs only by the reordering of its float64 sums, a few ulps times the number of
#: rows (far below 1e-9); a loss that depends on row order (micro-batches by row) differs at
#: order one. The same slack as :func:`rlmath.sequence_model.expected_over_groups` uses.
AUDIT_SYMMETRY_RTOL: float = 1e-9

#: Policy: how far the real part of a complex-step evaluation may move from the real loss,
#: relative to $\max(1, |\ell|)$, before the audit decides the loss is not complex-analytic (a
#: step of $10^{-20}$ moves the real part of an analytic function by $O(h^2) = 10^{-40}$; a
#: ``abs`` or a branch on the imaginary part moves it by the rounding of the evaluation,
#: and is caught by the comparison with differences instead).
AUDIT_COMPLEX_REAL_RTOL: float = 1e-12
