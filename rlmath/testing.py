r"""Hypothesis strategies for probability vectors, logits, tabular MDPs and softmax policies.

Every strategy shrinks toward the simplest example: fewer states and actions, zero logits and
rewards, uniform distributions without zeros, ``gamma = 0``. Generated floats are never
subnormal, and every probability vector is normalised in float64, so its entries are
non-negative and sum to 1 within a few ulps: far inside the
``rlmath.tolerances.PROBABILITY_SUM_ATOL`` that :class:`~rlmath.TabularMDP` checks.

Arguments are validated when a strategy is created, like ``hypothesis.extra.numpy``: a bad
argument raises :class:`hypothesis.errors.InvalidArgument` whose message names it. Bounds
are keyword-only ``min_*``/``max_*``; a default that depends on other arguments is ``None``.

Hypothesis profiles (``dev``, ``ci``, ``thorough``) are registered once, in
``tests/conftest.py``.

Examples:
    >>> from hypothesis import find, settings
    >>> quick = settings(database=None, max_examples=200)
    >>> # the simplest
    >>> find(probability_vectors(3), lambda p: True, settings=quick).tolist()
    [0.3333333333333333, 0.3333333333333333, 0.3333333333333333]
    >>> find(tabular_mdps(), lambda mdp: mdp.n_states >= 3, settings=quick)
    TabularMDP(n_states=3, n_actions=1, gamma=0.0, dense)
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.extra import numpy as hnp
from hypothesis.strategies import SearchStrategy

from rlmath._validation import FloatArray
from rlmath.mdp import TabularMDP
from rlmath.policy import SoftmaxPolicy

__all__ = [
    "NEAR_DETERMINISTIC_MASS",
    "assert_expected_gradient",
    "central_difference_gradient",
    "discounted_path_sum_moments",
    "discounted_return_moments",
    "discounted_reward_to_go_moments",
    "logits",
    "mdps_and_policies",
    "objective_gradient_by_central_differences",
    "probability_vectors",
    "sequence_models",
    "softmax_policies",
    "tabular_mdps",
]

#: Total probability left outside the dominant entry of a near-deterministic vector
#: (the dominant entry is ``1 - 1e-9``), unless ``min_probability`` forces more.
NEAR_DETERMINISTIC_MASS: float = 1e-9

#: Largest discount drawn by default for an infinite horizon: keeps the condition number of
#: $I - \gamma P_\pi$ at most $(1 + \gamma)/(1 - \gamma) = 39$.
DEFAULT_MAX_GAMMA: float = 0.95


# ----------------------------------------------------------------------------- validation
def _check_integer(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgument(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _check_interval(low: int, high: int, low_name: str, high_name: str) -> None:
    if high < low:
        raise InvalidArgument(f"Cannot have {high_name}={high!r} < {low_name}={low!r}")


def _check_real(
    value: Any, name: str, *, low: float, high: float = np.inf, open_low: bool = False
) -> float:
    """A finite real number in ``[low, high]`` (``(low, high]`` with ``open_low``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgument(
            f"{name} must be a real number, got {value!r} ({type(value).__name__})"
        )
    result = float(value)
    if not np.isfinite(result):
        raise InvalidArgument(f"{name} must be finite, got {value!r}")
    if not ((result > low if open_low else result >= low) and result <= high):
        if high < np.inf:
            expected = f"in {'(' if open_low else '['}{low:g}, {high:g}]"
        else:
            expected = f"{'>' if open_low else '>='} {low:g}"
        raise InvalidArgument(f"{name} must be {expected}, got {value!r}")
    return result


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"{name} must be a bool, got {value!r} ({type(value).__name__})")
    return value


def _is_strategy(value: Any) -> bool:
    return isinstance(value, SearchStrategy)


def _finite_floats(bound: float) -> SearchStrategy[float]:
    """Floats in ``[-bound, bound]``: no NaN, no infinity, no subnormals; shrink toward 0."""
    return st.floats(-bound, bound, allow_nan=False, allow_infinity=False, allow_subnormal=False)


#: Non-zero rewards of generated sequence models are at least this large in magnitude. The
#: claims are linear (or scale-free) in the rewards, so nothing is lost; below it, gradients
#: of order |r| times the complex step (1e-30) underflow, and the complex-step derivatives the
#: exact legs compare with lose every digit (a reward of 2.2e-308, the smallest normal float,
#: gives a gradient of 5.6e-309, whose complex step 5.6e-339 is below the subnormal range).
MIN_ABS_REWARD = 1e-150


def _reward_floats(bound: float) -> SearchStrategy[float]:
    """:func:`_finite_floats` with magnitudes below :data:`MIN_ABS_REWARD` mapped to 0."""
    return _finite_floats(bound).map(lambda r: 0.0 if abs(r) < MIN_ABS_REWARD else r)


# ----------------------------------------------------------------------------- distributions
@st.composite
def _probability_vector(
    draw: st.DrawFn, sizes: SearchStrategy[int], allow_zeros: bool, min_probability: float
) -> FloatArray:
    n = draw(sizes)
    if n < 1 or n * min_probability > 1.0:
        raise InvalidArgument(
            f"size must be >= 1 and size * min_probability <= 1, got size={n!r} "
            f"with min_probability={min_probability!r}"
        )
    if n == 1:
        return np.ones(1)
    # Choices are drawn so that the shortest, simplest sequence is the uniform vector:
    # weights 0 (uniform), no zeros, not near-deterministic.
    weights = np.array(
        draw(st.lists(st.floats(0.0, 1.0, allow_subnormal=False), min_size=n, max_size=n))
    )
    support = np.ones(n, dtype=bool)
    if allow_zeros and draw(st.booleans()):
        # True keeps an entry: the simplest such vector is one-hot at index 0.
        support = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
        support[draw(st.integers(0, n - 1))] = True  # keep at least one entry (one-hot if alone)
    k = int(support.sum())
    vector = np.zeros(n)
    if k >= 2 and draw(st.booleans()):  # near-deterministic: 1 - 1e-9 on one entry
        dominant = int(np.flatnonzero(support)[draw(st.integers(0, k - 1))])
        others = support.copy()
        others[dominant] = False
        tail = max(NEAR_DETERMINISTIC_MASS, (k - 1) * min_probability)
        vector[dominant] = 1.0 - tail
        vector[others] = _floored_shares(weights[others], tail, min_probability)
    else:
        vector[support] = _floored_shares(weights[support], 1.0, min_probability)
    return vector / vector.sum()  # type: ignore[no-any-return]


def _floored_shares(weights: FloatArray, total: float, floor: float) -> FloatArray:
    """Split ``total`` into shares proportional to ``weights`` on top of ``floor`` each."""
    if weights.sum() == 0.0:
        weights = np.ones_like(weights)
    spare = max(total - weights.size * floor, 0.0)
    return floor + spare * weights / weights.sum()  # type: ignore[no-any-return]


def probability_vectors(
    size: int | SearchStrategy[int] | None = None,
    *,
    min_size: int = 1,
    max_size: int | None = None,
    allow_zeros: bool = True,
    min_probability: float = 1e-12,
) -> SearchStrategy[FloatArray]:
    r"""Probability vectors ``p`` of shape ``[n]``: $p_i \ge 0$, $\sum_i p_i = 1$ (float64).

    Drawn as normalised weights (shrinking toward uniform), optionally near-deterministic (one
    entry $1 - 10^{-9}$, see :data:`NEAR_DETERMINISTIC_MASS`) and, with ``allow_zeros``,
    optionally with exact zeros (down to one-hot vectors). Every positive entry is at least
    ``min_probability`` (up to the final float64 normalisation), which keeps tiny and
    subnormal probabilities out.

    Args:
        size: the length ``n``, an int or a strategy of ints; ``None`` to draw it from
            ``[min_size, max_size]``.
        min_size: smallest length when ``size`` is ``None`` (at least 1).
        max_size: largest length when ``size`` is ``None``; ``None`` means ``min_size + 4``.
        allow_zeros: whether entries may be exactly 0.
        min_probability: lower bound of every positive entry, in ``(0, 1]``; the largest
            length times it must be at most 1.

    Returns:
        A strategy of float64 arrays ``[n]``.

    Raises:
        hypothesis.errors.InvalidArgument: naming the bad argument.

    Examples:
        >>> from hypothesis import find, settings
        >>> one_hot = find(probability_vectors(4), lambda p: p.max() == 1.0,
        ...                settings=settings(database=None, max_examples=500))
        >>> one_hot.tolist()
        [1.0, 0.0, 0.0, 0.0]
    """
    min_probability = _check_real(
        min_probability, "min_probability", low=0.0, high=1.0, open_low=True
    )
    allow_zeros = _check_bool(allow_zeros, "allow_zeros")
    if size is not None:
        if min_size != 1 or max_size is not None:
            raise InvalidArgument(
                f"pass either size or min_size/max_size, got size={size!r}, "
                f"min_size={min_size!r}, max_size={max_size!r}"
            )
        if _is_strategy(size):
            sizes: SearchStrategy[int] = size  # type: ignore[assignment]
        else:
            n = _check_integer(size, "size", minimum=1)
            sizes = st.just(n)
            largest = n
    else:
        min_size = _check_integer(min_size, "min_size", minimum=1)
        largest = (
            min_size + 4 if max_size is None else _check_integer(max_size, "max_size", minimum=1)
        )
        _check_interval(min_size, largest, "min_size", "max_size")
        sizes = st.integers(min_size, largest)
    if not _is_strategy(size) and largest * min_probability > 1.0:
        raise InvalidArgument(
            f"min_probability={min_probability!r} is infeasible for vectors of length {largest}: "
            "their product must be at most 1"
        )
    return _probability_vector(sizes, allow_zeros, min_probability)


# ----------------------------------------------------------------------------- logits, policies
def logits(shape: int | tuple[int, ...], *, max_abs: float = 10.0) -> SearchStrategy[FloatArray]:
    r"""Float64 arrays of logits with entries in ``[-max_abs, max_abs]``, shrinking toward 0.

    With the default ``max_abs = 10`` a softmax row can put as little as $e^{-20} \approx 2
    \times 10^{-9}$ on an action (near-deterministic); pass ``max_abs=1e4`` to exercise the
    numerical range of :func:`rlmath.policy.log_softmax`.

    Args:
        shape: array shape, an int or a tuple of non-negative ints.
        max_abs: bound on the absolute value of every entry, finite and ``>= 0``.

    Returns:
        A strategy of float64 arrays of the given shape (never NaN, infinite or subnormal).

    Raises:
        hypothesis.errors.InvalidArgument: naming the bad argument.
    """
    if isinstance(shape, tuple):
        for i, extent in enumerate(shape):
            _check_integer(extent, f"shape[{i}]", minimum=0)
    else:
        _check_integer(shape, "shape", minimum=0)
    bound = _check_real(max_abs, "max_abs", low=0.0)
    return hnp.arrays(np.float64, shape, elements=_finite_floats(bound))


def softmax_policies(
    n_states: int, n_actions: int, *, max_abs_logit: float = 10.0
) -> SearchStrategy[SoftmaxPolicy]:
    r"""Tabular :class:`~rlmath.SoftmaxPolicy` objects with logits ``[n_states, n_actions]``.

    Args:
        n_states: number of states, ``>= 1``.
        n_actions: number of actions, ``>= 1``.
        max_abs_logit: bound on the absolute value of every logit (see :func:`logits`).

    Returns:
        A strategy of policies, shrinking toward the uniform one (all logits 0).

    Raises:
        hypothesis.errors.InvalidArgument: naming the bad argument.
    """
    shape = (
        _check_integer(n_states, "n_states", minimum=1),
        _check_integer(n_actions, "n_actions", minimum=1),
    )
    return logits(shape, max_abs=max_abs_logit).map(SoftmaxPolicy)


# ----------------------------------------------------------------------------- MDPs
@st.composite
def _tabular_mdp(
    draw: st.DrawFn,
    states: SearchStrategy[int],
    actions: SearchStrategy[int],
    gammas: SearchStrategy[float] | None,
    horizons: SearchStrategy[int | None],
    sparse: SearchStrategy[bool],
    max_abs_reward: float,
    allow_zeros: bool,
    min_probability: float,
) -> TabularMDP:
    S, A = draw(states), draw(actions)
    rows = probability_vectors(S, allow_zeros=allow_zeros, min_probability=min_probability)
    P = np.stack([draw(rows) for _ in range(S * A)]).reshape(S, A, S)
    r = draw(hnp.arrays(np.float64, (S, A), elements=_finite_floats(max_abs_reward)))
    rho0 = draw(rows)
    horizon = draw(horizons)
    if gammas is None:  # the default depends on the horizon drawn
        max_gamma = DEFAULT_MAX_GAMMA if horizon is None else 1.0
        gammas = st.floats(0.0, max_gamma, allow_subnormal=False)
    gamma = draw(gammas)
    transitions: Any = sp.csr_array(P.reshape(S * A, S)) if draw(sparse) else P
    return TabularMDP(transitions, r, rho0, gamma, horizon)


def tabular_mdps(
    *,
    min_states: int = 1,
    max_states: int = 4,
    min_actions: int = 1,
    max_actions: int = 3,
    gamma: float | SearchStrategy[float] | None = None,
    horizon: int | SearchStrategy[int] | None = None,
    sparse: bool | SearchStrategy[bool] = False,
    max_abs_reward: float = 1.0,
    allow_zeros: bool = True,
    min_probability: float = 1e-12,
) -> SearchStrategy[TabularMDP]:
    r"""Random :class:`~rlmath.TabularMDP` objects, shrinking toward few states and actions.

    Transition rows and ``rho0`` come from :func:`probability_vectors` (so they include exact
    zeros and near-deterministic rows), rewards from ``[-max_abs_reward, max_abs_reward]``.
    Sparse MDPs store only the non-zero transitions (``[S * A, S]`` csr).

    Args:
        min_states: smallest number of states, ``>= 1``.
        max_states: largest number of states.
        min_actions: smallest number of actions, ``>= 1``.
        max_actions: largest number of actions.
        gamma: a discount, a strategy of discounts, or ``None``: uniform on
            ``[0, 0.95]`` when the drawn horizon is infinite (condition number at most 39),
            ``[0, 1]`` when it is finite.
        horizon: a finite horizon ``>= 1``, a strategy of them, or ``None`` (infinite).
        sparse: whether transitions are stored sparse (a bool or a strategy of bools).
        max_abs_reward: bound on ``|r[s, a]|``, finite and ``>= 0``.
        allow_zeros: whether transition and initial probabilities may be exactly 0.
        min_probability: lower bound of every positive probability (see
            :func:`probability_vectors`).

    Returns:
        A strategy of :class:`~rlmath.TabularMDP`.

    Raises:
        hypothesis.errors.InvalidArgument: naming the bad argument.

    Examples:
        >>> from hypothesis import find, settings
        >>> find(tabular_mdps(horizon=3, sparse=True), lambda mdp: True,
        ...      settings=settings(database=None, max_examples=100))
        TabularMDP(n_states=1, n_actions=1, gamma=0.0, horizon=3, sparse, nnz=1)
    """
    min_states = _check_integer(min_states, "min_states", minimum=1)
    max_states = _check_integer(max_states, "max_states", minimum=1)
    _check_interval(min_states, max_states, "min_states", "max_states")
    min_actions = _check_integer(min_actions, "min_actions", minimum=1)
    max_actions = _check_integer(max_actions, "max_actions", minimum=1)
    _check_interval(min_actions, max_actions, "min_actions", "max_actions")
    max_abs_reward = _check_real(max_abs_reward, "max_abs_reward", low=0.0)
    allow_zeros = _check_bool(allow_zeros, "allow_zeros")
    # validates min_probability against the largest row length
    probability_vectors(max_states, allow_zeros=allow_zeros, min_probability=min_probability)

    horizons: SearchStrategy[int | None]
    if horizon is None:
        horizons = st.none()
    elif _is_strategy(horizon):
        horizons = horizon  # type: ignore[assignment]
    else:
        horizons = st.just(_check_integer(horizon, "horizon", minimum=1))
    gammas: SearchStrategy[float] | None
    if gamma is None:
        gammas = None
    elif _is_strategy(gamma):
        gammas = gamma  # type: ignore[assignment]
    else:
        value = _check_real(gamma, "gamma", low=0.0, high=1.0)
        if horizon is None and value == 1.0:
            raise InvalidArgument(f"gamma must be in [0, 1) for an infinite horizon, got {gamma!r}")
        gammas = st.just(value)
    sparsity = sparse if _is_strategy(sparse) else st.just(_check_bool(sparse, "sparse"))
    return _tabular_mdp(
        st.integers(min_states, max_states),
        st.integers(min_actions, max_actions),
        gammas,
        horizons,
        sparsity,  # type: ignore[arg-type]
        max_abs_reward,
        allow_zeros,
        min_probability,
    )


@st.composite
def _mdp_and_policy(
    draw: st.DrawFn, mdps: SearchStrategy[TabularMDP], max_abs_logit: float
) -> tuple[TabularMDP, SoftmaxPolicy]:
    mdp = draw(mdps)
    return mdp, draw(softmax_policies(mdp.n_states, mdp.n_actions, max_abs_logit=max_abs_logit))


def mdps_and_policies(
    mdps: SearchStrategy[TabularMDP] | None = None, *, max_abs_logit: float = 10.0
) -> SearchStrategy[tuple[TabularMDP, SoftmaxPolicy]]:
    r"""Pairs ``(mdp, policy)`` with a :class:`~rlmath.SoftmaxPolicy` of the MDP's shape.

    Args:
        mdps: a strategy of MDPs; ``None`` means ``tabular_mdps()``.
        max_abs_logit: bound on the absolute value of every logit.

    Returns:
        A strategy of ``(TabularMDP, SoftmaxPolicy)`` tuples.

    Raises:
        hypothesis.errors.InvalidArgument: naming the bad argument.
    """
    if mdps is None:
        mdps = tabular_mdps()
    elif not _is_strategy(mdps):
        raise InvalidArgument(
            f"mdps must be a SearchStrategy, got {mdps!r} ({type(mdps).__name__})"
        )
    logits((1, 1), max_abs=max_abs_logit)  # validates max_abs_logit
    return _mdp_and_policy(mdps, max_abs_logit)


# ----------------------------------------------------------------------------- derivatives
def central_difference_gradient(
    function: Callable[[FloatArray], Any], x: Any, step: float
) -> FloatArray:
    r"""Central differences of ``function`` along every entry of ``x``.

    $$ D_i = \frac{f(x + h e_i) - f(x - h e_i)}{(x_i + h) - (x_i - h)} $$

    dividing by the step actually taken, so that rounding $x_i \pm h$ adds no error. Choose
    $h$ and the tolerance with :func:`rlmath.tolerances.central_difference_step`.

    Args:
        function: maps a float64 array shaped like ``x`` to a float or an array of shape ``F``.
        x: the point, float64 array of shape ``X``.
        step: $h > 0$.

    Returns:
        ``X + F`` float64: entry ``[i..., j...]`` is $\partial f_j / \partial x_i$.

    Examples:
        >>> import numpy as np
        >>> central_difference_gradient(lambda v: float(v @ v), np.array([1.0, -2.0]), 1e-3)
        array([ 2., -4.])
    """
    point = np.array(x, dtype=np.float64)
    columns = []
    for index in np.ndindex(*point.shape):
        plus, minus = point.copy(), point.copy()
        plus[index] += step
        minus[index] -= step
        difference = np.asarray(function(plus), dtype=np.float64) - function(minus)
        columns.append(difference / (plus[index] - minus[index]))
    return np.reshape(columns, point.shape + np.shape(columns[0]) if columns else point.shape)


def objective_gradient_by_central_differences(
    mdp: TabularMDP, policy: SoftmaxPolicy
) -> tuple[FloatArray, float]:
    r"""Central differences of ``rlmath.exact.objective`` in every logit, with an error bound.

    $|J'''| \le M_3$ from :func:`rlmath.tolerances.softmax_objective_third_derivative_bound`
    with $R = \max|r|$ and $T = 1/(1-\gamma)$; each evaluation of $J$ is off by at most
    $\delta = \mathrm{exact\_rtol}(\kappa, S)\, R\, T$ (a linear solve with condition number
    $\kappa \le (1+\gamma)/(1-\gamma)$, values bounded by $R T$). The step $h$ and the bound
    $M_3 h^2/6 + \delta/h$ come from :func:`rlmath.tolerances.central_difference_step`.
    Independent of every policy-gradient formula: only ``exact.objective`` is evaluated.

    Args:
        mdp: an infinite-horizon :class:`~rlmath.TabularMDP`.
        policy: a :class:`~rlmath.SoftmaxPolicy` of the same shape.

    Returns:
        ``(gradient, bound)``: ``[S, A]`` float64 and the absolute error bound of every entry.
    """
    from rlmath import exact
    from rlmath.tolerances import (
        central_difference_step,
        discounted_condition_number,
        exact_rtol,
        softmax_objective_third_derivative_bound,
    )

    R = max(float(np.abs(mdp.r).max(initial=0.0)), 1e-300)
    horizon = 1.0 / (1.0 - mdp.gamma)
    evaluation_error = (
        exact_rtol(discounted_condition_number(mdp.gamma), mdp.n_states) * R * horizon
    )
    step, bound = central_difference_step(
        softmax_objective_third_derivative_bound(R, horizon), evaluation_error
    )
    gradient = central_difference_gradient(
        lambda theta: exact.objective(mdp, SoftmaxPolicy(theta)), policy.theta, step
    )
    return gradient, bound


# ----------------------------------------------------------------------------- episode moments
# Exact mean and standard deviation of per-episode estimators on the episodes of
# rlmath.sampling.discounted_rollouts (length H ~ Geometric(1 - gamma), independent of the
# path, no terminal states): what a Monte-Carlo leg needs to show that its sample size
# rejects each mutant with the stated power (rlmath.claims.detectable). Conditioning on the
# first step and using that the remaining length is again geometric (memorylessness) turns
# every moment into a linear system in M = I - gamma P_pi, solved exactly. (Checked, when
# written, against exact.trajectories enumeration of the equivalent MDP with an absorbing
# stop state entered with probability 1 - gamma, to the truncation error gamma^H.)
def _episode_system(mdp: TabularMDP, probabilities: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``(P [S, A, S], M = I - gamma P_pi [S, S])``."""
    P = mdp.dense_transitions()
    P_pi = np.einsum("sa,sat->st", probabilities, P)
    return P, np.eye(mdp.n_states) - mdp.gamma * P_pi


def _policy_average_solve(
    M: FloatArray, probabilities: FloatArray, terms: FloatArray
) -> FloatArray:
    r"""$x_c = M^{-1} \sum_a \pi(a|\cdot)\, \text{terms}_c(\cdot, a)$ for ``terms [C, S, A]``: ``[C, S]``."""
    return np.linalg.solve(M, (probabilities * terms).sum(axis=-1).T).T


def discounted_return_moments(
    mdp: TabularMDP, policy: SoftmaxPolicy
) -> tuple[FloatArray, FloatArray]:
    r"""$\mathbb E[G \mid s_0 a_0]$ and $\mathbb E[G^2 \mid s_0 a_0]$ of $G = \sum_{t<H} r_t$, ``[S, A]`` each.

    With continuation $C \sim \mathrm{Bernoulli}(\gamma)$ after each step, $G = r + C G'$, so
    $\mathbb E[G \mid s, a] = Q(s, a)$ and
    $\mathbb E[G^2 \mid s, a] = r^2 + 2\gamma r\, (P V)(s, a) + \gamma\, (P m_2)(s, a)$ with
    $m_2 = M^{-1} \sum_a \pi\,(r^2 + 2\gamma r P V)$.
    """
    pi = policy.probabilities()
    P, M = _episode_system(mdp, pi)
    gamma, r = mdp.gamma, mdp.r
    V = np.linalg.solve(M, (pi * r).sum(axis=1))
    PV = P @ V
    first = r + 2.0 * gamma * PV
    m2 = np.linalg.solve(M, (pi * r * first).sum(axis=1))
    return r + gamma * PV, r * first + gamma * (P @ m2)


def discounted_path_sum_moments(
    mdp: TabularMDP, policy: SoftmaxPolicy, terms: Any, *, start: Any = None
) -> tuple[FloatArray, FloatArray]:
    r"""Exact mean and sd of $X = \sum_{t<H} f(s_t, a_t)$ on discounted (geometric) episodes.

    $e = M^{-1}\sum_a \pi f$ gives $\mathbb E[X \mid s_0 = s]$; with $X = f + C X'$,
    $\mathbb E[X^2 \mid s_0] = M^{-1} \sum_a \pi\,(f^2 + 2\gamma f\, P e)$.

    Args:
        mdp: an infinite-horizon :class:`~rlmath.TabularMDP` (dense or sparse).
        policy: the :class:`~rlmath.SoftmaxPolicy` that samples the actions.
        terms: ``[..., S, A]`` values $f(s, a)$ (one estimator per leading index).
        start: ``[S]`` distribution of $s_0$ (default ``mdp.rho0``).

    Returns:
        ``(mean, sd)``, each of shape ``terms.shape[:-2]``.

    Examples:
        >>> loop = TabularMDP(np.ones((1, 1, 1)), r=[[1.0]], rho0=[1.0], gamma=0.5)
        >>> policy = SoftmaxPolicy(np.zeros((1, 1)))
        >>> mean, sd = discounted_path_sum_moments(loop, policy, loop.r)
        >>> # H ~ Geometric(1/2): E H = 2, Var H = gamma / (1 - gamma)^2 = 2
        >>> float(mean), float(sd) ** 2
        (2.0, 2.0)
    """
    pi = policy.probabilities()
    P, M = _episode_system(mdp, pi)
    rho = np.asarray(mdp.rho0 if start is None else start, dtype=np.float64)
    f = np.asarray(terms, dtype=np.float64)
    lead = f.shape[:-2]
    F = f.reshape(-1, *f.shape[-2:])
    e = _policy_average_solve(M, pi, F)
    Pe = np.einsum("sat,ct->csa", P, e)
    second = _policy_average_solve(M, pi, F * (F + 2.0 * mdp.gamma * Pe))
    mean = e @ rho
    variance = np.maximum(second @ rho - mean**2, 0.0)
    return mean.reshape(lead), np.sqrt(variance).reshape(lead)


def discounted_reward_to_go_moments(
    mdp: TabularMDP, policy: SoftmaxPolicy, weights: Any, *, start: Any = None
) -> tuple[FloatArray, FloatArray]:
    r"""Exact mean and sd of $X = \sum_{t<H} \phi(s_t, a_t)\, G_t$, $G_t = \sum_{t'=t}^{H-1} r_{t'}$.

    REINFORCE with reward-to-go on discounted (geometric) episodes when $\phi$ is the score.
    With $G = r + C G'$ and $X = \phi G + C X'$: $e = M^{-1}\sum_a\pi\,\phi Q$ is
    $\mathbb E[X \mid s_0]$, $f = M^{-1}\sum_a \pi\,(\phi\, m_2 + \gamma r\, P e)$ is
    $\mathbb E[X G \mid s_0]$ and
    $\mathbb E[X^2 \mid s_0] = M^{-1}\sum_a \pi\,(\phi^2 m_2 + 2\gamma\phi\,(r\, P e + P f))$,
    with $Q, m_2$ from :func:`discounted_return_moments`.

    Args:
        mdp: an infinite-horizon :class:`~rlmath.TabularMDP`.
        policy: the :class:`~rlmath.SoftmaxPolicy` that samples the actions.
        weights: ``[..., S, A]`` values $\phi(s, a)$ (one estimator per leading index: for
            the gradient, index ``(s', b)`` holds the score entry $\partial\log\pi(a|s) /
            \partial\theta_{s', b}$).
        start: ``[S]`` distribution of $s_0$ (default ``mdp.rho0``).

    Returns:
        ``(mean, sd)``, each of shape ``weights.shape[:-2]``.
    """
    pi = policy.probabilities()
    P, M = _episode_system(mdp, pi)
    gamma, r = mdp.gamma, mdp.r
    rho = np.asarray(mdp.rho0 if start is None else start, dtype=np.float64)
    phi = np.asarray(weights, dtype=np.float64)
    lead = phi.shape[:-2]
    F = phi.reshape(-1, *phi.shape[-2:])
    Q, m2 = discounted_return_moments(mdp, policy)
    e = _policy_average_solve(M, pi, F * Q)
    Pe = np.einsum("sat,ct->csa", P, e)
    f = _policy_average_solve(M, pi, F * m2 + gamma * r * Pe)
    Pf = np.einsum("sat,ct->csa", P, f)
    second = _policy_average_solve(M, pi, F * (F * m2 + 2.0 * gamma * (r * Pe + Pf)))
    mean = e @ rho
    variance = np.maximum(second @ rho - mean**2, 0.0)
    return mean.reshape(lead), np.sqrt(variance).reshape(lead)


# ----------------------------------------------------------------------------- sequence models
@st.composite
def _sequence_model(
    draw: st.DrawFn,
    prompts: SearchStrategy[int],
    tokens: SearchStrategy[int],
    lengths: SearchStrategy[int],
    max_abs_logit: float,
    max_abs_reward: float,
    token_rewards: SearchStrategy[bool],
    allow_zero_prompts: bool,
) -> Any:
    from rlmath.sequence_model import SequenceModel, count_nodes, count_responses

    X, K, L = draw(prompts), draw(tokens), draw(lengths)
    shape = (X, count_nodes(K, L), K + 1)
    theta = draw(logits(shape, max_abs=max_abs_logit))
    reference = draw(logits(shape, max_abs=max_abs_logit))
    rewards = draw(
        hnp.arrays(np.float64, (X, count_responses(K, L)), elements=_reward_floats(max_abs_reward))
    )
    per_token = (
        draw(hnp.arrays(np.float64, shape, elements=_reward_floats(max_abs_reward)))
        if draw(token_rewards)
        else None
    )
    rho = draw(probability_vectors(X, allow_zeros=allow_zero_prompts))
    return SequenceModel(theta, L, rho, rewards, per_token, reference)


def sequence_models(
    *,
    min_prompts: int = 1,
    max_prompts: int = 2,
    min_tokens: int = 1,
    max_tokens: int = 3,
    min_length: int = 1,
    max_length: int = 3,
    max_abs_logit: float = 5.0,
    max_abs_reward: float = 1.0,
    token_rewards: bool | SearchStrategy[bool] = False,
    allow_zero_prompts: bool = False,
) -> SearchStrategy[Any]:
    r"""Random :class:`~rlmath.sequence_model.SequenceModel` objects (policy, reference, rewards).

    Shrinks toward one prompt, one ordinary token (plus EOS), length 1, zero logits (the
    uniform next-token policy and reference) and zero rewards. Sizes stay tiny by default:
    at most $\sum_{d<3} 3^d + 3^3 = 40$ responses per prompt.

    Args:
        min_prompts: smallest number of prompts $X$, ``>= 1``.
        max_prompts: largest $X$.
        min_tokens: smallest number of ordinary tokens $K$, ``>= 1``.
        max_tokens: largest $K$.
        min_length: smallest maximum length $L$, ``>= 1``.
        max_length: largest $L$ (at most 6, which with ``max_tokens = 3`` is 1093 responses).
        max_abs_logit: bound on every logit of the policy and of the reference.
        max_abs_reward: bound on every sequence (and token) reward; non-zero rewards are at
            least :data:`MIN_ABS_REWARD` = 1e-150 in magnitude (complex steps underflow below).
        token_rewards: whether per-token rewards are drawn (a bool or a strategy of bools).
        allow_zero_prompts: whether a prompt may have probability exactly 0.

    Returns:
        A strategy of ``SequenceModel``.

    Raises:
        hypothesis.errors.InvalidArgument: naming the bad argument.

    Examples:
        >>> from hypothesis import find, settings
        >>> find(sequence_models(), lambda m: True, settings=settings(database=None))
        SequenceModel(n_prompts=1, n_tokens=1+EOS, max_length=1, n_responses=2)
    """
    min_prompts = _check_integer(min_prompts, "min_prompts", minimum=1)
    max_prompts = _check_integer(max_prompts, "max_prompts", minimum=1)
    _check_interval(min_prompts, max_prompts, "min_prompts", "max_prompts")
    min_tokens = _check_integer(min_tokens, "min_tokens", minimum=1)
    max_tokens = _check_integer(max_tokens, "max_tokens", minimum=1)
    _check_interval(min_tokens, max_tokens, "min_tokens", "max_tokens")
    min_length = _check_integer(min_length, "min_length", minimum=1)
    max_length = _check_integer(max_length, "max_length", minimum=1)
    _check_interval(min_length, max_length, "min_length", "max_length")
    if max_length > 6:
        raise InvalidArgument(f"max_length must be <= 6 (tiny models only), got {max_length!r}")
    logits((1, 1), max_abs=max_abs_logit)  # validates max_abs_logit
    reward_bound = _check_real(max_abs_reward, "max_abs_reward", low=0.0)
    allow_zero_prompts = _check_bool(allow_zero_prompts, "allow_zero_prompts")
    flags = (
        token_rewards
        if _is_strategy(token_rewards)
        else st.just(_check_bool(token_rewards, "token_rewards"))
    )
    return _sequence_model(
        st.integers(min_prompts, max_prompts),
        st.integers(min_tokens, max_tokens),
        st.integers(min_length, max_length),
        float(max_abs_logit),
        reward_bound,
        flags,  # type: ignore[arg-type]
        allow_zero_prompts,
    )


# ----------------------------------------------------------------------------- gradient audit
def assert_expected_gradient(
    loss: Callable[..., Any],
    *,
    objective: str,
    family: str = "llm",
    coefficient: float | None = None,
    **options: Any,
) -> Any:
    r"""Assert that ``loss``'s exact expected gradient is $c \nabla$ ``objective`` (an audit).

    Runs :func:`rlmath.audit.audit` with ``objective`` and ``options`` (``group_size``,
    ``beta``, ``n_models``, ``seed``, ``backend``, ``behaviour``, ``models``, ...) and raises
    ``AssertionError`` with the audit's summary (closest objective, cosine, residual,
    decomposition, the sentence naming the difference) unless the verdict is "unbiased" for
    ``objective`` with $c > 0$ (and $c$ equal to ``coefficient`` within ten times the audit's
    tolerance, if given). ``objective="0"`` asserts a zero expected gradient.

    Args:
        loss: the loss of one batch (calling convention: :mod:`rlmath.audit.engine`).
        objective: a name of :func:`rlmath.audit.named_objective_gradients`, or ``"0"``.
        family: ``"llm"``.
        coefficient: the expected $c$, or ``None`` (any $c > 0$).
        **options: passed to :func:`rlmath.audit.audit`.

    Returns:
        The :class:`rlmath.audit.AuditReport`.

    Raises:
        AssertionError: if the loss does not follow ``objective``.
        ValueError, TypeError: for bad arguments (from the audit).

    Examples:
        >>> def rloo(log_probs, *, rewards, response_mask):
        ...     G = rewards.shape[0]
        ...     advantages = rewards - (rewards.sum() - rewards) / (G - 1)
        ...     return -(advantages * (log_probs * response_mask).sum(axis=1)).mean()
        >>> report = assert_expected_gradient(rloo, objective="J", coefficient=1.0,
        ...                                   n_models=2, group_size=3, backend="numpy")
    """
    __tracebackhide__ = True
    from rlmath.audit import audit

    if not isinstance(objective, str):
        raise TypeError(f"objective must be a string, got {type(objective).__name__}")
    report = audit(loss, family=family, objective=objective, **options)
    name = getattr(loss, "__qualname__", repr(loss))
    ok = report.passed
    if ok and coefficient is not None:
        if isinstance(coefficient, bool) or not isinstance(coefficient, (int, float)):
            raise TypeError(f"coefficient must be a number, got {type(coefficient).__name__}")
        c = float(coefficient)
        slack = 10.0 * max(report.tolerance, 1e-12) * max(abs(c), 1e-300)
        if abs(report.coefficient - c) > slack:
            raise AssertionError(
                f"{name}: expected gradient follows {objective} but with c = "
                f"{report.coefficient:.10g}, not {c:.10g}\n{report.summary()}"
            )
    if not ok:
        raise AssertionError(
            f"{name}: expected gradient is not c * grad({objective}) with c > 0\n{report.summary()}"
        )
    return report
