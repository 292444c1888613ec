r"""Tabular softmax policies $\pi_\theta(a \mid s) = \exp\theta_{s,a} / \sum_b \exp\theta_{s,b}$.

The parameter is one logit per state-action pair, ``theta[s, a]`` (shape ``[S, A]``), and every
gradient in rlmath is taken with respect to that array, so gradients also have shape
``[S, A]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rlmath._validation import (
    FloatArray,
    as_float_array,
    check_finite,
    check_probabilities,
    first_index,
)

__all__ = ["SoftmaxPolicy", "as_probabilities", "log_softmax"]


def log_softmax(logits: ArrayLike, axis: int = -1) -> FloatArray:
    r"""Stable $\log \mathrm{softmax}$: $x_i - m - \log \sum_j e^{x_j - m}$ with $m = \max_j x_j$.

    Subtracting the maximum makes every exponent $\le 0$, so nothing overflows and the largest
    term is exactly 1 (no underflow of the normaliser). The result is finite unless a logit
    trails its row's maximum by more than the float64 range ($\approx 1.8 \times 10^{308}$):
    that difference rounds to $-\infty$, the correctly rounded log of a probability below
    every float, and the probability is exactly 0.

    Args:
        logits: array-like of any non-empty shape (converted to float64). Entries must be
            finite or $-\infty$ (an action of probability 0), with a finite entry in every
            slice along ``axis``.
        axis: the axis that indexes the outcomes.

    Returns:
        Log-probabilities, a new float64 array of the shape of ``logits``.

    Raises:
        TypeError: if ``logits`` is not numeric.
        ValueError: if ``logits`` is empty, has a NaN or $+\infty$ entry, or a slice along
            ``axis`` with no finite entry.

    Examples:
        >>> import numpy as np
        >>> log_softmax(np.array([1e4, 0.0])).tolist()
        [0.0, -10000.0]
        >>> log_softmax([0.0, 0.0]).round(6).tolist()
        [-0.693147, -0.693147]
    """
    array = as_float_array(logits, "logits")
    if array.size == 0:
        raise ValueError(f"logits must not be empty, got shape {array.shape}")
    bad = np.isnan(array) | np.isposinf(array)
    if bad.any():
        index = first_index(bad)
        raise ValueError(
            f"logits must be finite or -inf (probability 0), got {array[index]!r} at index {index}"
        )
    if np.isneginf(array).all(axis=axis).any():
        raise ValueError(f"logits must have a finite entry along axis {axis}, got all -inf")
    return _log_softmax(array, axis)


def _log_softmax(logits: FloatArray, axis: int = -1) -> FloatArray:
    """:func:`log_softmax` of a float64 array already validated (finite or -inf, non-empty)."""
    with np.errstate(over="ignore"):  # x - m below -1.8e308 rounds to -inf: probability 0
        shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))  # type: ignore[no-any-return]


@dataclass(frozen=True, eq=False)
class SoftmaxPolicy:
    r"""Tabular softmax policy with logits ``theta[s, a]``.

    $$ \pi_\theta(a \mid s) = \frac{\exp \theta_{s,a}}{\sum_{b} \exp \theta_{s,b}} $$

    Args:
        theta: logits, ``[S, A]`` float64, finite.

    Raises:
        TypeError: if ``theta`` is not numeric.
        ValueError: if ``theta`` is not 2-D, is empty, or has a non-finite entry.

    Examples:
        >>> import numpy as np
        >>> policy = SoftmaxPolicy(np.zeros((2, 4)))
        >>> policy.probabilities()[0].tolist()
        [0.25, 0.25, 0.25, 0.25]
    """

    theta: Any

    def __post_init__(self) -> None:
        theta = as_float_array(self.theta, "theta", ndim=2)
        if theta.size == 0:
            raise ValueError(
                f"theta must have at least one state and action, got shape {theta.shape}"
            )
        check_finite(theta, "theta")
        theta.setflags(write=False)
        object.__setattr__(self, "theta", theta)

    @classmethod
    def uniform(cls, n_states: int, n_actions: int) -> SoftmaxPolicy:
        """The uniform policy (all logits zero)."""
        return cls(np.zeros((n_states, n_actions)))

    @property
    def n_states(self) -> int:
        """Number of states $S$."""
        return int(self.theta.shape[0])

    @property
    def n_actions(self) -> int:
        """Number of actions $A$."""
        return int(self.theta.shape[1])

    def log_probabilities(self) -> FloatArray:
        r"""$\log \pi_\theta(a \mid s)$, ``[S, A]`` (see :func:`log_softmax`).

        Finite unless a logit trails its row's maximum by more than the float64 range; then
        $-\infty$ (the action's probability is exactly 0 in float64).
        """
        return _log_softmax(self.theta)

    def probabilities(self) -> FloatArray:
        r"""$\pi_\theta(a \mid s)$, ``[S, A]``; each row sums to 1."""
        return np.exp(self.log_probabilities())

    def score(self, states: ArrayLike, actions: ArrayLike) -> FloatArray:
        r"""The score $\nabla_\theta \log \pi_\theta(a \mid s)$ for each given pair.

        $$ \frac{\partial \log \pi_\theta(a \mid s)}{\partial \theta_{s', a'}}
           = \mathbb 1[s' = s] \left(\mathbb 1[a' = a] - \pi_\theta(a' \mid s)\right) $$

        Args:
            states: integer array of states, any shape ``B``.
            actions: integer array of actions, the same shape ``B``.

        Returns:
            ``B + [S, A]`` float64: the full gradient for each pair (only row ``s`` is non-zero;
            :meth:`score_row` returns that row alone, ``B + [A]``).

        References:
            Sutton, R. S. and Barto, A. G. *Reinforcement Learning: An Introduction*, 2nd ed.,
            2018, eq. (13.9) (softmax in action preferences).

        Examples:
            >>> import numpy as np
            >>> SoftmaxPolicy(np.zeros((2, 2))).score(1, 0).tolist()
            [[0.0, 0.0], [0.5, -0.5]]
        """
        states_, actions_ = self._check_pairs(states, actions)
        out = np.zeros(states_.shape + (self.n_states, self.n_actions))
        rows = self.score_row(states_, actions_)
        index = np.indices(states_.shape)
        out[(*index, states_)] = rows
        return out

    def score_row(self, states: ArrayLike, actions: ArrayLike) -> FloatArray:
        r"""Row $s$ of the score: $e_a - \pi_\theta(\cdot \mid s)$, shape ``B + [A]``."""
        states_, actions_ = self._check_pairs(states, actions)
        rows = -self.probabilities()[states_]
        np.put_along_axis(
            rows, actions_[..., None], np.take_along_axis(rows, actions_[..., None], -1) + 1.0, -1
        )
        return rows

    def entropy(self) -> FloatArray:
        r"""Entropy per state, $H(\pi(\cdot \mid s)) = -\sum_a \pi(a|s) \log \pi(a|s)$, ``[S]`` (nats).

        Computed from log-probabilities, so a near-deterministic row gives 0 rather than NaN;
        an action of probability exactly 0 ($\log\pi = -\infty$, e.g. logits $\pm 1.7 \times
        10^{308}$) contributes $0 \log 0 = 0$.
        """
        log_p = self.log_probabilities()
        finite = np.isfinite(log_p)  # log_p is finite or -inf; 0 log 0 = 0
        terms = np.exp(log_p) * np.where(finite, log_p, 0.0)
        return 0.0 - terms.sum(axis=1)  # type: ignore[no-any-return]  # 0 - 0 = +0, not -0

    def state_fisher_information(self) -> FloatArray:
        r"""Per-state Fisher information of the logits, ``[S, A, A]``.

        $$ F_s = \mathbb E_{a \sim \pi(\cdot|s)}[\nabla \log\pi \, \nabla\log\pi^\top]
              = \mathrm{diag}(\pi_s) - \pi_s \pi_s^\top $$
        """
        p = self.probabilities()
        return np.einsum("sa,ab->sab", p, np.eye(self.n_actions)) - p[:, :, None] * p[:, None, :]  # type: ignore[no-any-return]

    def fisher_information(self, state_weights: ArrayLike) -> FloatArray:
        r"""Fisher information of the whole logit table under a state distribution.

        $$ F = \sum_s w(s)\, \mathbb E_{a \sim \pi(\cdot|s)}\left[\nabla_\theta \log\pi(a|s)\,
               \nabla_\theta \log\pi(a|s)^\top\right] $$

        with $\theta$ flattened in C order (index ``s * A + a``); $F$ is block diagonal with
        blocks $w(s) F_s$ (:meth:`state_fisher_information`).

        Args:
            state_weights: ``[S]`` probability distribution over states, e.g. the discounted
                occupancy ``rlmath.exact.occupancy(mdp, policy)``.

        Returns:
            ``[S * A, S * A]`` float64, symmetric positive semi-definite.
        """
        w = as_float_array(state_weights, "state_weights", ndim=1)
        if w.shape != (self.n_states,):
            raise ValueError(
                f"state_weights must have shape [S] = {(self.n_states,)}, got {w.shape}"
            )
        check_probabilities(w, "state_weights")
        blocks = w[:, None, None] * self.state_fisher_information()
        S, A = self.n_states, self.n_actions
        out = np.zeros((S, A, S, A))
        out[np.arange(S), :, np.arange(S), :] = blocks
        return out.reshape(S * A, S * A)

    def _check_pairs(
        self, states: ArrayLike, actions: ArrayLike
    ) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        s = np.asarray(states)
        a = np.asarray(actions)
        for name, array, bound in (("states", s, self.n_states), ("actions", a, self.n_actions)):
            if not np.issubdtype(array.dtype, np.integer):
                raise TypeError(f"{name} must be integers, got dtype {array.dtype}")
            if array.size and (array.min() < 0 or array.max() >= bound):
                bad = array[(array < 0) | (array >= bound)].ravel()[0]
                raise ValueError(f"{name} must be in [0, {bound}), got {int(bad)}")
        if s.shape != a.shape:
            raise ValueError(
                f"states and actions must have the same shape, got {s.shape} and {a.shape}"
            )
        return s.astype(np.intp), a.astype(np.intp)


def as_probabilities(
    policy: SoftmaxPolicy | ArrayLike, n_states: int, n_actions: int
) -> FloatArray:
    r"""The action probabilities ``pi[s, a]`` of a policy given as an object or an array.

    Args:
        policy: a :class:`SoftmaxPolicy`, or a row-stochastic ``[S, A]`` array.
        n_states: expected $S$.
        n_actions: expected $A$.

    Returns:
        ``[S, A]`` float64 probabilities.

    Raises:
        ValueError: if the shape differs from ``[S, A]`` or a row is not a distribution.
    """
    if isinstance(policy, SoftmaxPolicy):
        pi = policy.probabilities()
    else:
        pi = as_float_array(policy, "policy", ndim=2)
        check_probabilities(pi, "policy")
    if pi.shape != (n_states, n_actions):
        raise ValueError(f"policy must have shape [S, A] = {(n_states, n_actions)}, got {pi.shape}")
    return pi
