r"""Exact quantities of a tabular MDP under a policy: no sampling, no finite differences.

Infinite horizon ($0 \le \gamma < 1$): with $P_\pi(s, s') = \sum_a \pi(a|s) P(s'|s,a)$ and
$r_\pi(s) = \sum_a \pi(a|s) r(s,a)$, write $M = I - \gamma P_\pi$. Then

$$ V^\pi = M^{-1} r_\pi, \qquad
   Q^\pi(s,a) = r(s,a) + \gamma \sum_{s'} P(s'|s,a) V^\pi(s'), \qquad
   A^\pi = Q^\pi - V^\pi, $$

$$ d_\rho^\pi = (1 - \gamma)\, M^{-\top} \rho_0
   \quad\text{(normalised discounted occupancy, sums to 1)}, \qquad
   J(\theta) = \rho_0^\top V^\pi. $$

Both linear systems share one factorisation of $M$ (dense LU with a transposed solve, sparse
LU for small sparse problems, restarted GMRES with a checked residual for large sparse ones;
see ``rlmath.tolerances.KRYLOV_RESIDUAL_RTOL``).

Finite horizon $H$: values are time-dependent, $V_H = 0$,
$Q_t = r + \gamma P V_{t+1}$, $V_t(s) = \sum_a \pi(a|s) Q_t(s,a)$; the functions below return
the time-0 quantities ($V_0$, $Q_0$, $A_0$) and the objective $J = \rho_0^\top V_0
= \mathbb E[\sum_{t=0}^{H-1} \gamma^t r_t]$. The occupancy is
$d(s) = \sum_{t<H} \gamma^t \Pr(s_t = s) / \sum_{t<H} \gamma^t$.

References:
    Puterman, M. L. *Markov Decision Processes*, 1994, Thm. 6.1.1 (policy evaluation).
    Sutton, R. S., McAllester, D., Singh, S., Mansour, Y. "Policy Gradient Methods for
    Reinforcement Learning with Function Approximation", NeurIPS 2000, Thm. 1.
    Agarwal, A., Kakade, S. M., Lee, J. D., Mahajan, G. "On the Theory of Policy Gradient
    Methods", JMLR 22, 2021, eq. (6) and Lemma C.1 (softmax gradient, normalised occupancy).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from numpy.typing import ArrayLike

from rlmath._validation import FloatArray, check_array_bytes, check_horizon, check_integer
from rlmath.mdp import TabularMDP
from rlmath.policy import SoftmaxPolicy, as_probabilities
from rlmath.tolerances import KRYLOV_RESIDUAL_RTOL

__all__ = [
    "MAX_TRAJECTORIES",
    "SPARSE_DIRECT_MAX_STATES",
    "Trajectories",
    "advantage",
    "finite_horizon_values",
    "objective",
    "occupancy",
    "policy_gradient",
    "policy_iteration",
    "q_value",
    "state_distributions",
    "trajectories",
    "trajectory_policy_gradient",
    "value",
]

#: Sparse systems with at most this many states are solved by sparse LU (``splu``); larger ones
#: by restarted GMRES. Random successor structure makes LU fill in badly, while GMRES on
#: $I - \gamma P_\pi$ converges at a rate governed by $\gamma$ whatever the structure.
SPARSE_DIRECT_MAX_STATES: int = 5000

#: ``trajectories`` refuses to enumerate more than this many trajectories of positive
#: probability (each costs O(H) memory; 10^6 trajectories of length 10 is about 200 MB).
MAX_TRAJECTORIES: int = 1_000_000

PolicyLike = SoftmaxPolicy | ArrayLike


# ----------------------------------------------------------------------------- linear algebra
def _policy_transitions(mdp: TabularMDP, pi: FloatArray) -> Any:
    r"""$P_\pi$ as a dense ``[S, S]`` array or a sparse ``csr_array``."""
    S, A = mdp.n_states, mdp.n_actions
    if mdp.is_sparse:
        weights = sp.csr_array(
            (pi.ravel(), np.arange(S * A), np.arange(0, S * A + 1, A)), shape=(S, S * A)
        )
        return sp.csr_array(weights @ mdp.P)
    # one pass over P in numpy's own loops (no BLAS call): the dense path then uses a single
    # BLAS library, scipy's, for the factorisation and for P V (see _expected_next_value).
    return np.einsum("sa,sat->st", pi, mdp.P)


def _expected_next_value(mdp: TabularMDP, values: FloatArray) -> FloatArray:
    r"""$\sum_{s'} P(s'|s,a)\, v(s')$ as ``[S, A]``."""
    if mdp.is_sparse:
        flat = mdp.transition_matrix @ values
    else:
        # scipy's BLAS, the same library that factorised I - gamma P_pi: alternating between
        # numpy's and scipy's OpenBLAS thread pools slows both (measured 2-5x on 2 cores).
        # The C-ordered [S*A, S] matrix is passed as its Fortran-ordered transpose.
        flat = scipy.linalg.blas.dgemv(
            1.0, mdp.transition_matrix.T, np.ascontiguousarray(values), trans=1
        )
    return np.asarray(flat).reshape(mdp.n_states, mdp.n_actions)


class _DiscountedSystem:
    r"""One factorisation of $M = I - \gamma P_\pi$ serving $M x = b$ and $M^\top y = c$."""

    def __init__(self, mdp: TabularMDP, pi: FloatArray) -> None:
        if mdp.horizon is not None:
            raise ValueError("a finite-horizon MDP has no stationary linear system")
        self.gamma = mdp.gamma
        P_pi = _policy_transitions(mdp, pi)
        S = mdp.n_states
        if not sp.issparse(P_pi):
            P_pi *= -mdp.gamma  # in place: P_pi is a fresh array, M = I - gamma P_pi
            P_pi[np.diag_indices(S)] += 1.0
            # LAPACK wants Fortran order; the C-ordered M is a Fortran-ordered M^T, so factor
            # M^T without a copy and swap the ``trans`` flags in ``solve``.
            self._lu_of_transpose = scipy.linalg.lu_factor(
                P_pi.T, overwrite_a=True, check_finite=False
            )
            self.method = "dense LU"
        else:
            self._M = sp.csc_array(sp.eye_array(S, format="csc") - mdp.gamma * P_pi)
            if S <= SPARSE_DIRECT_MAX_STATES:
                self._splu = spla.splu(self._M)
                self.method = "sparse LU"
            else:
                self._splu = None
                self.method = "GMRES"

    def solve(self, b: FloatArray, *, transpose: bool = False) -> FloatArray:
        """Solve $M x = b$ (or $M^\\top x = b$ with ``transpose=True``)."""
        if hasattr(self, "_lu_of_transpose"):
            trans = 0 if transpose else 1
            return scipy.linalg.lu_solve(self._lu_of_transpose, b, trans=trans, check_finite=False)  # type: ignore[no-any-return]
        if self._splu is not None:
            return self._splu.solve(b, trans="T" if transpose else "N")  # type: ignore[no-any-return]
        return self._krylov(b, transpose)

    def _krylov(self, b: FloatArray, transpose: bool) -> FloatArray:
        r"""GMRES with iterative refinement until the stated residual bound holds.

        Value solve: $\|Mx - b\|_\infty \le \delta \|b\|_\infty$; occupancy solve (transposed):
        $\|M^\top x - b\|_1 \le \delta \|b\|_1$, $\delta$ = ``KRYLOV_RESIDUAL_RTOL``.
        """
        M = sp.csr_array(self._M.T) if transpose else sp.csr_array(self._M)
        order = 1 if transpose else np.inf
        scale = float(np.linalg.norm(b, order))
        if scale == 0.0:
            return np.zeros_like(b)
        unit_b = b / scale  # solve for x / |b|: GMRES's inner products underflow for tiny |b|
        # GMRES spends its time in vector-sized BLAS-1 calls (dot, axpy, nrm2) and sparse
        # matvecs, which gain nothing from BLAS threads; with the cores oversubscribed, the
        # threads' busy-waiting made this solve 10-40x slower (measured: 0.7 s single-threaded
        # vs 8-30 s with 2 OpenBLAS threads under load on 2 cores). So: one BLAS thread here.
        from threadpoolctl import threadpool_limits  # only this path needs it

        with threadpool_limits(limits=1, user_api="blas"):
            return self._gmres_refined(M, unit_b, order) * scale

    def _gmres_refined(self, M: Any, unit_b: FloatArray, order: float) -> FloatArray:
        x = np.zeros_like(unit_b)
        residual = unit_b.copy()
        for _ in range(5):
            step, info = spla.gmres(
                M, residual, rtol=KRYLOV_RESIDUAL_RTOL, atol=0.0, restart=50, maxiter=200
            )
            x += step
            residual = unit_b - M @ x
            if np.linalg.norm(residual, order) <= KRYLOV_RESIDUAL_RTOL:
                return x
        raise RuntimeError(
            f"GMRES did not reach the residual bound {KRYLOV_RESIDUAL_RTOL:g} * |b| "
            f"(got {np.linalg.norm(residual, order):.3g}; gamma = {self.gamma})"
        )


def _check_mdp(mdp: Any) -> TabularMDP:
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")
    return mdp


def _probabilities(mdp: TabularMDP, policy: PolicyLike) -> FloatArray:
    return as_probabilities(policy, mdp.n_states, mdp.n_actions)


# ----------------------------------------------------------------------------- finite horizon
def finite_horizon_values(mdp: TabularMDP, policy: PolicyLike) -> tuple[FloatArray, FloatArray]:
    r"""Backward induction for a finite-horizon MDP: $V_t$ for $t = 0..H$ and $Q_t$ for $t < H$.

    $$ V_H = 0, \qquad Q_t = r + \gamma P V_{t+1}, \qquad V_t(s) = \sum_a \pi(a|s) Q_t(s, a). $$

    Args:
        mdp: a finite-horizon :class:`~rlmath.TabularMDP` (``horizon`` set).
        policy: a :class:`~rlmath.SoftmaxPolicy` or a row-stochastic ``[S, A]`` array.

    Returns:
        ``(V, Q)``: ``V`` is ``[H + 1, S]`` (times 0..H), ``Q`` is ``[H, S, A]`` (times 0..H-1).

    Raises:
        ValueError: if ``mdp.horizon`` is ``None``, or ``V`` and ``Q`` would take more than
            ``rlmath._validation.MAX_ARRAY_BYTES`` (4 GiB).
    """
    mdp = _check_mdp(mdp)
    if mdp.horizon is None:
        raise ValueError("mdp must have a finite horizon (mdp.horizon is None)")
    S, A = mdp.n_states, mdp.n_actions
    check_array_bytes(
        8 * ((mdp.horizon + 1) * S + mdp.horizon * S * A),
        f"V [H + 1, S] and Q [H, S, A] float64 (S = {S}, A = {A})",
        name="mdp.horizon",
        value=mdp.horizon,
    )
    pi = _probabilities(mdp, policy)
    H = mdp.horizon
    V = np.zeros((H + 1, mdp.n_states))
    Q = np.zeros((H, mdp.n_states, mdp.n_actions))
    for t in range(H - 1, -1, -1):
        Q[t] = mdp.r + mdp.gamma * _expected_next_value(mdp, V[t + 1])
        V[t] = (pi * Q[t]).sum(axis=1)
    return V, Q


def state_distributions(mdp: TabularMDP, policy: PolicyLike, horizon: int) -> FloatArray:
    r"""$\Pr(s_t = s)$ for $t = 0..H-1$, ``[H, S]``, by forward propagation $p_{t+1} = P_\pi^\top p_t$.

    Raises:
        ValueError: if ``horizon`` is below 1, above ``rlmath._validation.MAX_HORIZON``
            (10^6), or the ``[H, S]`` output would take more than
            ``rlmath._validation.MAX_ARRAY_BYTES`` (4 GiB).
    """
    mdp = _check_mdp(mdp)
    what = f"the [H, S] float64 distributions (S = {mdp.n_states})"
    horizon = check_horizon(horizon, bytes_per_step=8 * mdp.n_states, what=what)
    check_array_bytes(8 * horizon * mdp.n_states, what, name="horizon", value=horizon)
    P_pi = _policy_transitions(mdp, _probabilities(mdp, policy))
    out = np.empty((horizon, mdp.n_states))
    out[0] = mdp.rho0
    for t in range(1, horizon):
        out[t] = P_pi.T @ out[t - 1]
    return out


def _discount_weights(gamma: float, horizon: int) -> FloatArray:
    return gamma ** np.arange(horizon, dtype=np.float64)


# ----------------------------------------------------------------------------- public quantities
def value(mdp: TabularMDP, policy: PolicyLike) -> FloatArray:
    r"""State values $V^\pi(s) = \mathbb E_\pi[\sum_t \gamma^t r_t \mid s_0 = s]$, ``[S]``.

    Infinite horizon: $V^\pi = (I - \gamma P_\pi)^{-1} r_\pi$. Finite horizon: $V_0$ of
    :func:`finite_horizon_values`.

    Args:
        mdp: a :class:`~rlmath.TabularMDP`.
        policy: a :class:`~rlmath.SoftmaxPolicy` or a row-stochastic ``[S, A]`` array.

    Returns:
        ``[S]`` float64.

    Examples:
        >>> import numpy as np
        >>> from rlmath import TabularMDP
        >>> mdp = TabularMDP(np.ones((1, 1, 1)), r=[[1.0]], rho0=[1.0], gamma=0.5)
        >>> value(mdp, [[1.0]]).tolist()  # 1 + 1/2 + 1/4 + ... = 2
        [2.0]
    """
    mdp = _check_mdp(mdp)
    if mdp.horizon is not None:
        V, _ = finite_horizon_values(mdp, policy)
        V0: FloatArray = V[0]
        return V0
    pi = _probabilities(mdp, policy)
    return _DiscountedSystem(mdp, pi).solve((pi * mdp.r).sum(axis=1))


def q_value(mdp: TabularMDP, policy: PolicyLike) -> FloatArray:
    r"""Action values $Q^\pi(s, a) = r(s, a) + \gamma \sum_{s'} P(s'|s,a) V^\pi(s')$, ``[S, A]``.

    For a finite horizon, $Q_0$ (the first step of an $H$-step episode).
    """
    mdp = _check_mdp(mdp)
    if mdp.horizon is not None:
        _, Q_t = finite_horizon_values(mdp, policy)
        Q0: FloatArray = Q_t[0]
        return Q0
    Q: FloatArray = mdp.r + mdp.gamma * _expected_next_value(mdp, value(mdp, policy))
    return Q


def advantage(mdp: TabularMDP, policy: PolicyLike) -> FloatArray:
    r"""Advantages $A^\pi(s, a) = Q^\pi(s, a) - V^\pi(s)$, ``[S, A]``; $\sum_a \pi(a|s) A^\pi(s,a) = 0$."""
    mdp = _check_mdp(mdp)
    if mdp.horizon is not None:
        V, Q = finite_horizon_values(mdp, policy)
        return Q[0] - V[0][:, None]  # type: ignore[no-any-return]
    V = value(mdp, policy)
    return mdp.r + mdp.gamma * _expected_next_value(mdp, V) - V[:, None]  # type: ignore[no-any-return]


def occupancy(mdp: TabularMDP, policy: PolicyLike) -> FloatArray:
    r"""Normalised discounted state occupancy $d_\rho^\pi$, ``[S]``, summing to 1.

    $$ d_\rho^\pi(s) = (1 - \gamma) \sum_{t=0}^\infty \gamma^t \Pr(s_t = s \mid s_0 \sim \rho_0, \pi)
       = (1 - \gamma) \left[(I - \gamma P_\pi)^{-\top} \rho_0\right](s). $$

    Finite horizon: $\sum_{t<H} \gamma^t \Pr(s_t = s) / \sum_{t<H} \gamma^t$.

    References:
        Kakade, S. and Langford, J. "Approximately Optimal Approximate Reinforcement
        Learning", ICML 2002, Sec. 2 (definition of $d_{\pi,\mu}$).
    """
    mdp = _check_mdp(mdp)
    if mdp.horizon is not None:
        weights = _discount_weights(mdp.gamma, mdp.horizon)
        return weights @ state_distributions(mdp, policy, mdp.horizon) / weights.sum()  # type: ignore[no-any-return]
    pi = _probabilities(mdp, policy)
    return (1.0 - mdp.gamma) * _DiscountedSystem(mdp, pi).solve(np.array(mdp.rho0), transpose=True)


def objective(mdp: TabularMDP, policy: PolicyLike) -> float:
    r"""The expected discounted return $J(\theta) = \mathbb E[\sum_{t} \gamma^t r_t]$, $s_0 \sim \rho_0$.

    $$ J = \rho_0^\top V^\pi $$

    Returns:
        A float.
    """
    mdp = _check_mdp(mdp)
    return float(mdp.rho0 @ value(mdp, policy))


def policy_gradient(mdp: TabularMDP, policy: SoftmaxPolicy) -> FloatArray:
    r"""Exact $\nabla_\theta J(\theta)$ of a tabular softmax policy, ``[S, A]``.

    By the policy gradient theorem with the softmax score
    $\partial \log\pi(a|s)/\partial\theta_{s,b} = \mathbb 1[a=b] - \pi(b|s)$:

    $$ \frac{\partial J}{\partial \theta_{s,a}}
       = \frac{1}{1 - \gamma}\, d_\rho^\pi(s)\, \pi_\theta(a \mid s)\, A^\pi(s, a). $$

    $V^\pi$ and $d_\rho^\pi$ come from one factorisation of $I - \gamma P_\pi$ (a solve and an
    adjoint solve). Finite horizon: $\sum_{t<H} \gamma^t \Pr(s_t=s)\, \pi(a|s)\,
    (Q_t(s,a) - V_t(s))$.

    Args:
        mdp: a :class:`~rlmath.TabularMDP`.
        policy: a :class:`~rlmath.SoftmaxPolicy` of the same shape.

    Returns:
        ``[S, A]`` float64, the gradient with respect to ``policy.theta``.

    References:
        Sutton et al. 2000, Thm. 1; Agarwal et al. 2021, Lemma C.1.

    Examples:
        >>> import numpy as np
        >>> from rlmath import TabularMDP, SoftmaxPolicy
        >>> bandit = TabularMDP(np.ones((1, 2, 1)), r=[[1.0, 0.0]], rho0=[1.0], gamma=0.0)
        >>> policy_gradient(bandit, SoftmaxPolicy.uniform(1, 2)).tolist()  # pi (r - pi.r)
        [[0.25, -0.25]]
    """
    mdp = _check_mdp(mdp)
    if not isinstance(policy, SoftmaxPolicy):
        raise TypeError(f"policy must be a SoftmaxPolicy, got {type(policy).__name__}")
    pi = _probabilities(mdp, policy)
    if mdp.horizon is not None:
        V, Q = finite_horizon_values(mdp, pi)
        p = (
            state_distributions(mdp, pi, mdp.horizon)
            * _discount_weights(mdp.gamma, mdp.horizon)[:, None]
        )
        return np.einsum("ts,sa,tsa->sa", p, pi, Q - V[:-1, :, None])  # type: ignore[no-any-return]
    system = _DiscountedSystem(mdp, pi)
    V = system.solve((pi * mdp.r).sum(axis=1))
    unnormalised_occupancy = system.solve(np.array(mdp.rho0), transpose=True)  # = d / (1 - gamma)
    A = mdp.r + mdp.gamma * _expected_next_value(mdp, V) - V[:, None]
    return unnormalised_occupancy[:, None] * pi * A  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------- trajectories
@dataclass(frozen=True)
class Trajectories:
    r"""Every trajectory $\tau = (s_0, a_0, \dots, s_{H-1}, a_{H-1})$ of positive probability.

    Attributes:
        states: ``[N, H]`` int, $s_t$ for times 0..H-1.
        actions: ``[N, H]`` int, $a_t$ for times 0..H-1.
        probabilities: ``[N]``, $p_\theta(\tau) = \rho_0(s_0) \prod_{t<H} \pi(a_t|s_t)
            \prod_{t<H-1} P(s_{t+1}|s_t,a_t)$; they sum to 1.
        returns: ``[N]``, $R(\tau) = \sum_{t<H} \gamma^t r(s_t, a_t)$.
    """

    states: Any
    actions: Any
    probabilities: FloatArray
    returns: FloatArray

    def expected_return(self) -> float:
        r"""$\bar R(\theta) = \sum_\tau R(\tau)\, p_\theta(\tau)$, summed literally."""
        return float(self.probabilities @ self.returns)


def trajectories(
    mdp: TabularMDP, policy: PolicyLike, horizon: int, *, max_trajectories: int = MAX_TRAJECTORIES
) -> Trajectories:
    r"""Enumerate every length-$H$ trajectory with $p_\theta(\tau) > 0$ (tiny MDPs only).

    The count is at most $|\mathrm{supp}\,\rho_0| \, A^H S^{H-1}$; zero-probability branches are
    pruned as they appear.

    Args:
        mdp: a :class:`~rlmath.TabularMDP` (its ``gamma`` discounts the returns).
        policy: a :class:`~rlmath.SoftmaxPolicy` or row-stochastic ``[S, A]`` array.
        horizon: number of steps $1 \le H \le$ ``rlmath._validation.MAX_HORIZON`` (10^6).
        max_trajectories: refuse (``ValueError``) once more than this many trajectories of
            positive probability would be held.

    Returns:
        :class:`Trajectories`.

    Raises:
        ValueError: if the enumeration exceeds ``max_trajectories``, or its ``[N, H]`` states
            and actions would take more than ``rlmath._validation.MAX_ARRAY_BYTES`` (4 GiB;
            checked as soon as the count $N$ so far, which never decreases, implies it).

    Examples:
        >>> import numpy as np
        >>> from rlmath import TabularMDP
        >>> mdp = TabularMDP(np.ones((1, 2, 1)), r=[[1.0, 0.0]], rho0=[1.0],
        ...                  gamma=1.0, horizon=2)
        >>> # (a0, a1) = 00, 01, 10, 11
        >>> trajectories(mdp, [[0.5, 0.5]], 2).returns.tolist()
        [2.0, 1.0, 1.0, 0.0]
    """
    mdp = _check_mdp(mdp)
    # each trajectory holds H states and H actions (intp): 16 bytes per step on 64-bit
    bytes_per_step = 2 * np.dtype(np.intp).itemsize
    what = "the states and actions of one trajectory ([H] intp each)"
    horizon = check_horizon(horizon, bytes_per_step=bytes_per_step, what=what)
    max_trajectories = check_integer(max_trajectories, "max_trajectories", minimum=1)
    pi = _probabilities(mdp, policy)
    P = mdp.dense_transitions()

    def refuse(count: int, t: int) -> None:
        if count > max_trajectories:
            raise ValueError(
                f"trajectories: enumerating horizon {horizon} would hold {count} trajectories by "
                f"step {t}, more than max_trajectories = {max_trajectories}; use a smaller MDP "
                "or horizon (or rlmath.exact.objective, which uses dynamic programming)"
            )
        # every trajectory has a successor at each step, so the count never decreases: the
        # output will hold at least count * horizon states and actions
        check_array_bytes(
            count * horizon * bytes_per_step,
            f"the states and actions of at least {count} trajectories ([N, H] intp each)",
            name="horizon",
            value=horizon,
        )

    start = np.flatnonzero(mdp.rho0 > 0)
    refuse(start.size, 0)
    states = start[:, None]
    actions = np.empty((start.size, 0), dtype=np.intp)
    prob = mdp.rho0[start].copy()
    ret = np.zeros(start.size)
    for t in range(horizon):
        s = states[:, -1]
        keep_i, keep_a = np.nonzero(pi[s] > 0)
        refuse(keep_i.size, t)
        states, actions = states[keep_i], np.column_stack([actions[keep_i], keep_a])
        prob = prob[keep_i] * pi[s[keep_i], keep_a]
        ret = ret[keep_i] + mdp.gamma**t * mdp.r[s[keep_i], keep_a]
        if t == horizon - 1:
            break
        keep_i, keep_next = np.nonzero(P[states[:, -1], actions[:, -1]] > 0)
        refuse(keep_i.size, t)
        prob = prob[keep_i] * P[states[keep_i, -1], actions[keep_i, -1], keep_next]
        states = np.column_stack([states[keep_i], keep_next])
        actions, ret = actions[keep_i], ret[keep_i]
    return Trajectories(states, actions, prob, ret)


def trajectory_policy_gradient(mdp: TabularMDP, policy: SoftmaxPolicy, horizon: int) -> FloatArray:
    r"""$\nabla_\theta \bar R = \sum_\tau R(\tau)\, p_\theta(\tau) \sum_{t<H} \nabla_\theta \log \pi_\theta(a_t|s_t)$.

    Computed literally over :func:`trajectories` (the log-derivative trick with the dynamics
    dropped from the score), so it is independent of the Bellman machinery in
    :func:`policy_gradient`. ``[S, A]``.
    """
    if not isinstance(policy, SoftmaxPolicy):
        raise TypeError(f"policy must be a SoftmaxPolicy, got {type(policy).__name__}")
    paths = trajectories(mdp, policy, horizon)
    pi = policy.probabilities()
    weight = paths.probabilities * paths.returns
    grad = np.zeros((mdp.n_states, mdp.n_actions))
    for t in range(horizon):
        s, a = paths.states[:, t], paths.actions[:, t]
        np.add.at(grad, (s, a), weight)  # + 1[b = a_t]
        np.add.at(grad, s, -weight[:, None] * pi[s])  # - pi(b | s_t)
    return grad


# ----------------------------------------------------------------------------- optimal control
def policy_iteration(
    mdp: TabularMDP, *, max_iterations: int = 10_000
) -> tuple[FloatArray, FloatArray]:
    r"""Optimal values $V^*$ and a deterministic optimal policy, by Howard's policy iteration.

    Evaluate exactly, improve greedily ($\arg\max_a Q(s,a)$, keeping the current action on
    ties up to ``1e-12`` relative so the loop terminates), stop when the policy is stable.

    Args:
        mdp: an infinite-horizon :class:`~rlmath.TabularMDP`.
        max_iterations: safety bound, an integer $\ge 1$; policy iteration stops after at most
            $A^S$ steps and in practice a handful.

    Returns:
        ``(V_star, pi_star)``: ``[S]`` values and ``[S, A]`` one-hot policy.

    Raises:
        ValueError: if ``mdp`` has a finite horizon or ``max_iterations < 1``.
        RuntimeError: if the policy is still changing after ``max_iterations`` improvements.

    References:
        Howard, R. A. *Dynamic Programming and Markov Processes*, 1960; Puterman 1994, Sec. 6.4.
    """
    mdp = _check_mdp(mdp)
    max_iterations = check_integer(max_iterations, "max_iterations", minimum=1)
    if mdp.horizon is not None:
        raise ValueError(
            "policy_iteration needs an infinite-horizon MDP; a finite-horizon optimum is "
            "non-stationary (use backward induction)"
        )
    S, A = mdp.n_states, mdp.n_actions
    current = np.zeros(S, dtype=np.intp)
    for _ in itertools.repeat(None, max_iterations):
        pi = np.zeros((S, A))
        pi[np.arange(S), current] = 1.0
        V = value(mdp, pi)
        Q = mdp.r + mdp.gamma * _expected_next_value(mdp, V)
        best = Q.max(axis=1)
        slack = 1e-12 * float(np.abs(Q).max())  # relative: independent of reward units
        keep = Q[np.arange(S), current] >= best - slack
        improved = np.where(keep, current, Q.argmax(axis=1))
        if np.array_equal(improved, current):
            return V, pi
        current = improved
    raise RuntimeError(f"policy iteration did not converge in {max_iterations} iterations")
