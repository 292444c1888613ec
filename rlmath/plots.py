r"""The figures of the documentation: deterministic PNGs drawn with matplotlib.

Each :class:`Figure` has a file name, a caption and a ``draw`` function; :func:`render_png`
draws it on a fresh Agg canvas and returns the PNG bytes. Every random number comes from a
fixed seed and the PNG carries no metadata (no matplotlib version, no date), so the same
versions of NumPy and matplotlib give byte-identical files.

matplotlib is an optional dependency (``pip install "rlmath[docs]"``): it is imported inside
:func:`render_png` only. The numbers behind the figures (:func:`kl_estimator_moments`,
:func:`ascent_path`, :func:`trust_region_line`, ...) need NumPy and :mod:`rlmath` alone.

Figures:

- ``mc_convergence``: REINFORCE estimates of a policy-gradient component against the number
  of episodes $N$, with their 95% confidence band, and the error against $N$ with the
  $\sigma/\sqrt N$ rate;
- ``gradient_variance``: total variance of the per-episode gradient with the total return,
  with a constant baseline, with reward-to-go, and with reward-to-go minus $V(s_t)$;
- ``kl_estimators``: distributions of $k_1, k_2, k_3$ and their bias and standard deviation;
- ``ppo_clip``: the clipped surrogate $\min(\rho A, \operatorname{clip}(\rho, 1\pm\epsilon)A)$
  as a function of the ratio for $A > 0$ and $A < 0$;
- ``policy_gradient_ascent``: the exact gradient-ascent path on $J(\theta)$ of a 3-armed bandit;
- ``length_bias``: how each LLM loss aggregation's expected update moves the mean length of
  correct and incorrect responses, per unit of $J$ gained;
- ``group_estimators``: the expected update along $\nabla J$ and the variance of RLOO, the
  group mean, GRPO and REINFORCE against the group size;
- ``ppo_trust_region``: along a line $\theta' + t u$ in parameter space, the true $J$, the
  surrogate $L_{\theta'}$, PPO's clipped surrogate and the KL-penalised lower bound of TRPO.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlmath import exact
from rlmath._validation import FloatArray
from rlmath.mdp import TabularMDP
from rlmath.policy import SoftmaxPolicy

__all__ = [
    "FIGURES",
    "Figure",
    "aggregation_weights",
    "ascent_path",
    "group_estimator_moments",
    "length_drift",
    "kl_estimator_moments",
    "render_png",
    "trust_region_line",
]

#: Seed of every random draw in the figures.
SEED = 20240601
DPI = 100
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


@dataclass(frozen=True)
class Figure:
    """One figure of the documentation.

    Attributes:
        name: file stem (``plots/<name>.png``).
        title: short title (the heading on the figures page).
        caption: Markdown paragraph under the figure (may contain ``$...$`` math).
        draw: ``matplotlib.figure.Figure -> None``, draws the panels.
        size: width and height in inches.
    """

    name: str
    title: str
    caption: str
    draw: Callable[[Any], None]
    size: tuple[float, float] = (10.0, 4.0)


def render_png(figure: Figure) -> bytes:
    """Draw ``figure`` with matplotlib's Agg backend and return PNG bytes (no metadata).

    Raises:
        ImportError: if matplotlib is not installed (``pip install "rlmath[docs]"``).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure as MplFigure
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError('the figures need matplotlib: pip install "rlmath[docs]"') from error
    import matplotlib

    with matplotlib.rc_context(
        {"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "svg.hashsalt": "rlmath"}
    ):
        mpl_figure = MplFigure(figsize=figure.size, dpi=DPI, layout="constrained")
        FigureCanvasAgg(mpl_figure)
        figure.draw(mpl_figure)
        buffer = io.BytesIO()
        mpl_figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


# ============================================================================ Monte Carlo
def _small_mdp() -> tuple[TabularMDP, SoftmaxPolicy]:
    mdp = TabularMDP.random(3, 2, seed=SEED, gamma=0.9, horizon=5)
    policy = SoftmaxPolicy(np.random.default_rng(SEED).normal(size=(3, 2)))
    return mdp, policy


def gradient_samples(n_episodes: int = 20_000) -> tuple[dict[str, FloatArray], FloatArray]:
    r"""Per-episode REINFORCE gradient samples ``[N, S, A]`` by estimator, and the exact gradient.

    A random 3-state, 2-action MDP with $\gamma = 0.9$ and horizon $T = 5$, a random softmax
    policy, ``n_episodes`` episodes from one seeded :func:`rlmath.sampling.rollouts` call.
    Every estimator is unbiased for $\nabla J_T$ (``rlmath.exact.policy_gradient``).
    """
    from rlmath import estimators, sampling

    mdp, policy = _small_mdp()
    assert mdp.horizon is not None
    rollouts = sampling.rollouts(mdp, policy, n_episodes=n_episodes, horizon=mdp.horizon, seed=SEED)
    discounts = mdp.gamma ** np.arange(rollouts.n_steps)[:, None]
    total_return = (discounts * rollouts.rewards).sum(axis=0)
    J = exact.objective(mdp, policy)
    samples = {
        "total return $R$": estimators.reinforce_total_return(rollouts, policy, gamma=mdp.gamma),
        "$R - J$ (constant baseline)": estimators.weighted_score_sum(
            rollouts, policy, np.broadcast_to(total_return - J, rollouts.rewards.shape)
        ),
        "reward-to-go $G_t$": estimators.reinforce_reward_to_go(rollouts, policy, gamma=mdp.gamma),
        "$G_t - V(s_t)$": estimators.reinforce_with_baseline(
            rollouts, policy, gamma=mdp.gamma, baseline=exact.value(mdp, policy)
        ),
    }
    return samples, exact.policy_gradient(mdp, policy)


def _draw_mc_convergence(fig: Any) -> None:
    samples, gradient = gradient_samples()
    chosen = {k: v for k, v in samples.items() if "constant" not in k}
    component = np.unravel_index(int(np.argmax(np.abs(gradient))), gradient.shape)
    n_total = next(iter(chosen.values())).shape[0]
    grid = np.unique(np.geomspace(20, n_total, 40).astype(int))
    left, right = fig.subplots(1, 2)
    for color, (label, x) in zip(COLORS, chosen.items(), strict=False):
        flat = x.reshape(n_total, -1)
        cumulative, squares = np.cumsum(flat, axis=0), np.cumsum(flat**2, axis=0)
        n = grid[:, None].astype(float)
        mean = cumulative[grid - 1] / n
        variance = (squares[grid - 1] - n * mean**2) / (n - 1)
        index = int(np.ravel_multi_index(component, gradient.shape))
        se = np.sqrt(np.maximum(variance[:, index], 0.0) / n[:, 0])
        left.plot(grid, mean[:, index], color=color, label=label)
        left.fill_between(
            grid, mean[:, index] - 1.96 * se, mean[:, index] + 1.96 * se, color=color, alpha=0.15
        )
        error = np.linalg.norm(mean - gradient.ravel()[None, :], axis=1)
        rate = np.sqrt(variance[-1].sum() / grid)
        right.loglog(grid, error, color=color, label=label)
        right.loglog(grid, rate, color=color, linestyle="--", linewidth=1)
    left.axhline(gradient[component], color="black", linewidth=1, label="exact")
    left.set(
        xscale="log",
        xlabel="episodes $N$",
        ylabel=rf"$\partial J / \partial\theta_{{{component[0]},{component[1]}}}$",
        title="estimate with 95% confidence band",
    )
    left.legend(loc="upper right")
    right.set(
        xlabel="episodes $N$",
        ylabel=r"$\|\hat g_N - \nabla J\|_2$",
        title=r"error (solid) and $\sqrt{\mathrm{tr}\,\Sigma / N}$ (dashed)",
    )


def _draw_gradient_variance(fig: Any) -> None:
    samples, _ = gradient_samples()
    labels = list(samples)
    variances = [
        float(x.reshape(x.shape[0], -1).var(axis=0, ddof=1).sum()) for x in samples.values()
    ]
    ax = fig.subplots()
    bars = ax.barh(range(len(labels)), variances, color=COLORS[: len(labels)])
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set(
        xlabel=r"total variance $\mathrm{tr}\,\mathrm{Cov}[g]$ of one episode's gradient",
        title="same episodes, same mean $\\nabla J$: variance by estimator",
    )
    for bar, value in zip(bars, variances, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {value:.3g}", va="center")
    ax.set_xlim(0, max(variances) * 1.2)


# ============================================================================ KL estimators
def kl_estimator_moments(mu: float, *, n_nodes: int = 200) -> dict[str, tuple[float, float]]:
    r"""Exact mean and standard deviation of $k_1, k_2, k_3$ for $p = N(0, 1)$, $q = N(\mu, 1)$.

    Samples $x \sim p$; $\log r = \log q(x) - \log p(x) = \mu x - \mu^2/2$;
    $k_1 = -\log r$, $k_2 = (\log r)^2/2$, $k_3 = (r - 1) - \log r$, each estimating
    $\mathrm{KL}(p \,\|\, q) = \mu^2/2$. Moments by Gauss-Hermite quadrature (exact for the
    polynomial $k_1$, $k_2$; to float precision for $k_3$ with ``n_nodes`` = 200).

    Returns:
        ``{"k1": (mean, std), "k2": ..., "k3": ...}``.

    Examples:
        >>> m = kl_estimator_moments(0.1)
        >>> round(m["k1"][0], 6), round(m["k3"][0], 6), round(m["k2"][0] - 0.005, 8)
        (0.005, 0.005, 1.25e-05)
    """
    from rlmath import estimators

    nodes, weights = np.polynomial.hermite_e.hermegauss(n_nodes)
    weights = weights / weights.sum()
    # log p(x) and log q(x) up to their common constant -log sqrt(2 pi), which cancels in log r
    log_p, log_q = -(nodes**2) / 2, -((nodes - mu) ** 2) / 2
    out = {}
    for name, estimator in (
        ("k1", estimators.kl_k1),
        ("k2", estimators.kl_k2),
        ("k3", estimators.kl_k3),
    ):
        values = estimator(log_p, log_q)  # samples of p: log r = log q - log p
        mean = float(weights @ values)
        out[name] = (mean, math.sqrt(max(float(weights @ (values - mean) ** 2), 0.0)))
    return out


def _draw_kl_estimators(fig: Any) -> None:
    from rlmath import estimators

    left, right = fig.subplots(1, 2)
    mu = 1.0
    x = np.random.default_rng(SEED).standard_normal(100_000)
    log_p, log_q = -(x**2) / 2, -((x - mu) ** 2) / 2  # common constant dropped (cancels)
    for color, (name, estimator) in zip(
        COLORS,
        (("$k_1$", estimators.kl_k1), ("$k_2$", estimators.kl_k2), ("$k_3$", estimators.kl_k3)),
        strict=False,
    ):
        values = estimator(log_p, log_q)
        left.hist(
            values,
            bins=np.linspace(-3, 6, 91),
            density=True,
            histtype="step",
            color=color,
            label=f"{name}: mean {values.mean():.3f}",
        )
    left.axvline(mu**2 / 2, color="black", linewidth=1, label=r"$\mathrm{KL} = \mu^2/2$")
    left.set(
        xlabel="per-sample value",
        ylabel="density",
        title=rf"$x\sim N(0,1)$, $q = N({mu:g}, 1)$, $10^5$ samples",
    )
    left.legend()
    mus = np.linspace(0.05, 2.0, 40)
    moments = [kl_estimator_moments(float(m)) for m in mus]
    for color, name in zip(COLORS, ("k1", "k2", "k3"), strict=False):
        kl = mus**2 / 2
        bias = np.array([m[name][0] for m in moments]) - kl
        std = np.array([m[name][1] for m in moments])
        right.plot(mus, std / kl, color=color, label=f"$k_{name[1]}$ std / KL")
        right.plot(mus, bias / kl, color=color, linestyle="--", label=f"$k_{name[1]}$ bias / KL")
    right.set(
        yscale="symlog",
        xlabel=r"$\mu$",
        ylabel="relative to KL",
        title="exact bias (dashed) and standard deviation (solid)",
    )
    right.legend(fontsize=7, ncols=2)


# ============================================================================ PPO clip
def _draw_ppo_clip(fig: Any) -> None:
    from rlmath import reference

    epsilon = 0.2
    ratio = np.linspace(0.0, 2.0, 401)
    axes = fig.subplots(1, 2, sharey=False)
    for ax, advantage in zip(axes, (1.0, -1.0), strict=True):
        clipped = np.array(
            [
                -reference.ppo_clipped_surrogate_loss(
                    [math.log(r) if r > 0 else -1e3], [0.0], [advantage], clip_epsilon=epsilon
                )
                for r in ratio
            ]
        )
        ax.plot(ratio, ratio * advantage, color="gray", linestyle="--", label=r"$\rho A$")
        ax.plot(ratio, clipped, color=COLORS[0], linewidth=2, label=r"$L^{\mathrm{CLIP}}$")
        for edge in (1 - epsilon, 1 + epsilon):
            ax.axvline(edge, color="black", linewidth=0.6, linestyle=":")
        ax.axvline(1.0, color=COLORS[1], linewidth=0.8)
        sign = ">" if advantage > 0 else "<"
        ax.set(
            xlabel=r"ratio $\rho = \pi_\theta(a|s) / \pi_{\theta_\mathrm{old}}(a|s)$",
            ylabel="objective term",
            title=f"$A {sign} 0$ ($\\epsilon = {epsilon}$)",
        )
        ax.legend(loc="upper left" if advantage > 0 else "lower left")


# ============================================================================ ascent path
BANDIT_REWARDS = (1.0, 0.7, 0.0)


def _bandit() -> TabularMDP:
    return TabularMDP(
        np.ones((1, 3, 1)), r=[list(BANDIT_REWARDS)], rho0=[1.0], gamma=1.0, horizon=1
    )


def ascent_path(
    start: tuple[float, float] = (-1.0, 1.0), *, step_size: float = 5.0, n_steps: int = 60
) -> tuple[FloatArray, FloatArray]:
    r"""Exact gradient ascent on a 3-armed bandit with logits $(\theta_1, \theta_2, 0)$.

    $J(\theta) = \sum_a \pi_\theta(a) r(a)$ with ``BANDIT_REWARDS``; the gradient is
    ``rlmath.exact.policy_gradient`` (the third logit is held at 0).

    Returns:
        ``(thetas, values)``: ``[n_steps + 1, 2]`` iterates and ``[n_steps + 1]`` $J$ values.
    """
    mdp = _bandit()
    theta = np.array(start, dtype=np.float64)
    thetas, values = [theta.copy()], []
    for _ in range(n_steps):
        policy = SoftmaxPolicy(np.array([[theta[0], theta[1], 0.0]]))
        values.append(exact.objective(mdp, policy))
        theta = theta + step_size * exact.policy_gradient(mdp, policy)[0, :2]
        thetas.append(theta.copy())
    values.append(exact.objective(mdp, SoftmaxPolicy(np.array([[theta[0], theta[1], 0.0]]))))
    return np.array(thetas), np.array(values)


def _draw_ascent(fig: Any) -> None:
    left, right = fig.subplots(1, 2)
    grid = np.linspace(-4.0, 6.0, 201)
    t1, t2 = np.meshgrid(grid, grid)
    logits = np.stack([t1, t2, np.zeros_like(t1)], axis=-1)
    logits -= logits.max(axis=-1, keepdims=True)
    pi = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    J = pi @ np.array(BANDIT_REWARDS)
    contours = left.contourf(t1, t2, J, levels=20, cmap="viridis")
    fig.colorbar(contours, ax=left, label=r"$J(\theta)$")
    thetas, values = ascent_path()
    left.plot(thetas[:, 0], thetas[:, 1], color="white", marker="o", markersize=2.5, linewidth=1)
    left.annotate("start", thetas[0], color="white", xytext=(5, -10), textcoords="offset points")
    left.set(
        xlabel=r"$\theta_1$ (logit of the best arm)",
        ylabel=r"$\theta_2$",
        title=rf"exact gradient ascent, step size 5, rewards {BANDIT_REWARDS}",
    )
    steps = np.arange(len(values))
    right.plot(steps, values, color="black", label=r"$J(\theta_k)$")
    probabilities = []
    for theta in thetas:
        z = np.array([theta[0], theta[1], 0.0])
        probabilities.append(np.exp(z - z.max()) / np.exp(z - z.max()).sum())
    probabilities_array = np.array(probabilities)
    for a in range(3):
        right.plot(
            steps,
            probabilities_array[:, a],
            color=COLORS[a],
            linestyle="--",
            label=rf"$\pi(a_{a + 1})$, $r = {BANDIT_REWARDS[a]:g}$",
        )
    right.set(
        xlabel="step $k$",
        ylim=(-0.02, 1.02),
        title="slow start on the plateau, then the best arm wins",
    )
    right.legend(loc="center right")


# ============================================================================ trust region
def trust_region_line(
    ts: FloatArray | None = None, *, epsilon: float = 0.2, beta: float = 1.0
) -> dict[str, FloatArray]:
    r"""The PPO/TRPO objectives along the line $\theta = \theta' + t u$, $u = \nabla J(\theta') / \|\nabla J(\theta')\|$.

    A random 5-state, 3-action MDP with near-deterministic transitions (Dirichlet
    concentration 0.1, seed 54, chosen because its surrogate visibly overshoots),
    $\gamma = 0.9$, and random old logits $\theta'$. With $d'$,
    $\pi'$, $A'$ the normalised occupancy, policy and advantage of $\theta'$:

    $$ L(\theta) = J(\theta') + \frac{1}{1-\gamma} \sum_s d'(s) \sum_a \pi_\theta(a|s) A'(s, a), $$

    $$ L^{\mathrm{CLIP}}(\theta) = J(\theta') + \frac{1}{1-\gamma} \sum_s d'(s) \sum_a \pi'(a|s)
       \min\big(\rho A', \operatorname{clip}(\rho, 1 \pm \epsilon) A'\big), \quad
       \rho = \pi_\theta / \pi', $$

    PPO's KL-penalised objective
    $L(\theta) - \frac{\beta}{1-\gamma} \sum_s d'(s)\, \mathrm{KL}(\pi'(\cdot|s) \,\|\, \pi_\theta(\cdot|s))$,
    and TRPO's lower bound $L(\theta) - C \max_s \mathrm{KL}(\pi'(\cdot|s) \,\|\, \pi_\theta(\cdot|s))$
    with $C = 4 \max|A'| \gamma / (1 - \gamma)^2$, which is $\le J(\theta)$ everywhere.

    Returns:
        ``{"t", "J", "surrogate", "clipped", "penalised", "bound"}``, each ``[len(ts)]``.
    """
    mdp = TabularMDP.random(5, 3, seed=54, gamma=0.9, concentration=0.1)
    old = SoftmaxPolicy(np.random.default_rng(55).normal(size=(5, 3)))
    d_old, pi_old = exact.occupancy(mdp, old), old.probabilities()
    advantage = exact.advantage(mdp, old)
    J_old = exact.objective(mdp, old)
    direction = exact.policy_gradient(mdp, old)
    direction = direction / np.linalg.norm(direction)
    t = np.linspace(-1.0, 8.0, 181) if ts is None else np.asarray(ts, dtype=np.float64)
    scale = 1.0 / (1.0 - mdp.gamma)
    C = 4.0 * float(np.abs(advantage).max()) * mdp.gamma / (1.0 - mdp.gamma) ** 2
    out: dict[str, list[float]] = {
        "J": [],
        "surrogate": [],
        "clipped": [],
        "penalised": [],
        "bound": [],
    }
    for step in t:
        policy = SoftmaxPolicy(old.theta + step * direction)
        pi = policy.probabilities()
        ratio = pi / pi_old
        clipped = np.minimum(
            ratio * advantage, np.clip(ratio, 1 - epsilon, 1 + epsilon) * advantage
        )
        surrogate = J_old + scale * float(d_old @ (pi * advantage).sum(axis=1))
        kl = (pi_old * (old.log_probabilities() - policy.log_probabilities())).sum(axis=1)
        out["J"].append(exact.objective(mdp, policy))
        out["surrogate"].append(surrogate)
        out["clipped"].append(J_old + scale * float(d_old @ (pi_old * clipped).sum(axis=1)))
        out["penalised"].append(surrogate - beta * scale * float(d_old @ kl))
        out["bound"].append(surrogate - C * float(kl.max()))
    return {"t": t, **{key: np.array(value) for key, value in out.items()}}


def _draw_trust_region(fig: Any) -> None:
    line = trust_region_line()
    ax = fig.subplots()
    t = line["t"]
    curves = (
        ("J", r"true $J(\theta' + t u)$", "black", "-"),
        ("surrogate", r"surrogate $L_{\theta'}$ (tangent at $t = 0$)", COLORS[0], "--"),
        ("clipped", r"PPO clipped $L^{\mathrm{CLIP}}_{\theta'}$, $\epsilon = 0.2$", COLORS[2], "-"),
        (
            "penalised",
            r"KL-penalised $L_{\theta'} - \frac{\beta}{1-\gamma}\overline{\mathrm{KL}}$, $\beta = 1$",
            COLORS[3],
            "-",
        ),
        ("bound", r"TRPO bound $L_{\theta'} - C\,\mathrm{KL}^{\max} \leq J$", COLORS[1], ":"),
    )
    for key, label, color, style in curves:
        ax.plot(t, line[key], color=color, linestyle=style, label=label)
        best = int(np.argmax(line[key]))
        ax.plot(t[best], line[key][best], marker="o", color=color)
    low = min(float(line["J"].min()), float(line["clipped"].min()))
    high = max(float(line["J"].max()), float(line["surrogate"].max()))
    pad = 0.1 * (high - low)
    ax.set(
        ylim=(low - pad, high + pad),
        xlabel=r"$t$ along $u = \nabla J(\theta') / \|\nabla J(\theta')\|$",
        ylabel="objective",
        title="the surrogate is trusted only near the old policy (dots: maxima)",
    )
    ax.axvline(0.0, color="gray", linewidth=0.8)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))


# ============================================================================ LLM-RL: aggregation
#: The loss aggregations of the length-bias figure: the factor multiplying member i's
#: advantage times its sequence score, for a group of G with lengths |y_j| and max length L.
AGGREGATIONS: tuple[str, ...] = (
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
    "token-mean",
    "seq-mean-token-mean",
)


def aggregation_weights(lengths: Any, aggregation: str, max_length: int) -> FloatArray:
    r"""Per-member factor $c_i$ of $\hat g = \sum_i c_i A_i s_i$ for one loss aggregation.

    seq-mean-token-sum: $1/G$; seq-mean-token-sum-norm (Dr. GRPO): $1/(G L)$; token-mean:
    $1 / \sum_j |y_j|$; seq-mean-token-mean (GRPO): $1/(G |y_i|)$. ``lengths`` is ``[B, G]``.
    """
    n = np.asarray(lengths, dtype=np.float64)
    G = n.shape[-1]
    if aggregation == "seq-mean-token-sum":
        return np.full_like(n, 1.0 / G)
    if aggregation == "seq-mean-token-sum-norm":
        return np.full_like(n, 1.0 / (G * max_length))
    if aggregation == "token-mean":
        return np.broadcast_to(1.0 / n.sum(axis=-1, keepdims=True), n.shape).copy()
    if aggregation == "seq-mean-token-mean":
        return 1.0 / (G * n)
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")


def _first_token_model() -> Any:
    """One prompt, tokens {0, 1} + EOS, L = 4, uniform logits; reward 1 iff y_1 = 0.

    The reward does not depend on the length, so J has no reason to move it.
    """
    from rlmath.sequence_model import SequenceModel, count_nodes

    n_tokens, max_length = 2, 4
    theta = np.zeros((1, count_nodes(n_tokens, max_length), n_tokens + 1))
    return SequenceModel(
        theta,
        max_length,
        [1.0],
        rewards=lambda prompt, tokens: 1.0 if tokens[0] == 0 else 0.0,
    )


def expected_group_update(
    model: Any, group_size: int, advantages: Callable[[FloatArray], FloatArray], weights: Any
) -> FloatArray:
    r"""$\mathbb E[\sum_i c_i A_i s_i]$ exactly (all groups enumerated), flattened ``[P]``.

    ``advantages`` maps group rewards ``[B, G]`` to advantages ``[B, G]``; ``weights`` maps
    lengths ``[B, G]`` to the factors $c_i$ (``None``: $1/G$).
    """
    from rlmath.sequence_model import expected_over_groups

    scores = model.response_scores()  # [X, R, X, N, V]

    def statistic(batch: Any) -> FloatArray:
        a = advantages(batch.rewards)
        c = np.full(a.shape, 1.0 / group_size) if weights is None else weights(batch.lengths)
        members = scores[batch.prompt][batch.responses]  # [B, G, X, N, V]
        out: FloatArray = np.einsum("bg,bg...->b...", a * c, members).reshape(len(a), -1)
        return out

    result: FloatArray = expected_over_groups(model, group_size, statistic)
    return result


def _mean_advantages(rewards: FloatArray) -> FloatArray:
    return rewards - rewards.mean(axis=1, keepdims=True)


def _conditional_mean_length(model: Any, correct: bool) -> float:
    """E[|y| | r = 1] (``correct``) or E[|y| | r = 0], exactly."""
    p = model.probabilities()[0]
    lengths = model.responses.lengths.astype(np.float64)
    chosen = (model.total_rewards()[0] > 0.5) == correct
    return float((p[chosen] * lengths[chosen]).sum() / p[chosen].sum())


def length_drift(group_size: int = 4, h: float = 1e-5) -> dict[str, tuple[float, float]]:
    r"""Change of $\mathbb E[|y| \mid r = 1]$ and $\mathbb E[|y| \mid r = 0]$ per unit of $J$.

    For each aggregation, the exact expected update $g$ (group-mean advantage, groups of
    ``group_size``) of the model of :func:`_first_token_model` is rescaled so that it raises
    $J$ at unit rate ($\tilde g = g / (\nabla J \cdot g)$), and the conditional mean lengths
    are differentiated along $\tilde g$ by central differences. ``"J"`` is the exact
    $\nabla J$ itself. Returns name -> (drift of correct, drift of incorrect responses).
    """
    model = _first_token_model()
    theta = np.asarray(model.theta, dtype=np.float64)
    grad_j = model.objective_gradient().reshape(-1)
    directions = {"J": grad_j}
    for name in AGGREGATIONS:
        directions[name] = expected_group_update(
            model,
            group_size,
            _mean_advantages,
            lambda n, name=name: aggregation_weights(n, name, model.max_length),
        )
    out = {}
    for name, g in directions.items():
        unit = (g / float(grad_j @ g)).reshape(theta.shape)
        up, down = model.with_theta(theta + h * unit), model.with_theta(theta - h * unit)
        out[name] = tuple(
            (_conditional_mean_length(up, c) - _conditional_mean_length(down, c)) / (2 * h)
            for c in (True, False)
        )
    return out  # type: ignore[return-value]


def _draw_length_bias(fig: Any) -> None:
    drift = length_drift()
    names = list(drift)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(names))
    for k, (label, color) in enumerate(
        (("correct (r = 1)", COLORS[2]), ("incorrect (r = 0)", COLORS[1]))
    ):
        values = [drift[n][k] for n in names]
        ax.bar(x + (k - 0.5) * 0.38, values, 0.38, label=label, color=color)
        for xi, v in zip(x + (k - 0.5) * 0.38, values, strict=True):
            ax.annotate(
                "0" if abs(v) < 5e-3 else f"{v:+.2f}",
                (xi, v),
                ha="center",
                va="bottom" if v >= 0 else "top",
                fontsize=8,
                xytext=(0, 2 if v >= 0 else -2),
                textcoords="offset points",
            )
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(["exact $\\nabla J$", *names[1:]], rotation=12)
    ax.set(
        ylabel="d E[|y| | r] / dJ along the expected update",
        title="the expected update's pull on response length (reward ignores length)",
    )
    ax.legend(loc="best")


# ============================================================================ LLM-RL: group baselines
def _leave_one_out(rewards: FloatArray) -> FloatArray:
    G = rewards.shape[1]
    return (G * rewards - rewards.sum(axis=1, keepdims=True)) / (G - 1)


def _standardised(rewards: FloatArray) -> FloatArray:
    deviation = _mean_advantages(rewards)
    spread = rewards.std(axis=1, ddof=1, keepdims=True)
    safe = np.where(spread > 0, spread, 1.0)
    return np.where(spread > 0, deviation / safe, 0.0)


#: The group estimators compared: name -> advantages of a group's rewards ``[B, G]``.
GROUP_ESTIMATORS: dict[str, Callable[[FloatArray], FloatArray]] = {
    "no baseline (REINFORCE)": lambda r: r,
    "RLOO (leave one out)": _leave_one_out,
    "group mean (Dr. GRPO)": _mean_advantages,
    "GRPO (mean and std)": _standardised,
}


def group_estimator_moments(
    group_sizes: tuple[int, ...] = (2, 3, 4, 6, 8),
) -> dict[str, list[tuple[float, float, float]]]:
    r"""Per estimator and $G$: (scale, cosine, total variance) of $\hat g = \frac1G \sum_i A_i s_i$.

    Exact over all groups, on one prompt with tokens {0, 1} + EOS, $L = 2$, random logits
    and binary rewards (seeded): scale $= \mathbb E[\hat g] \cdot \nabla J / \|\nabla J\|^2$,
    cosine between $\mathbb E[\hat g]$ and $\nabla J$, and total variance
    $\mathbb E\|\hat g\|^2 - \|\mathbb E \hat g\|^2$ relative to $\|\nabla J\|^2$.
    """
    from rlmath.sequence_model import SequenceModel, expected_over_groups

    base = SequenceModel.random(1, 2, 2, seed=SEED)
    rng = np.random.default_rng(SEED)
    binary = (rng.random(base.n_responses) < 0.5).astype(np.float64)[None, :]
    model = SequenceModel(base.theta, base.max_length, [1.0], rewards=binary)
    grad_j = model.objective_gradient().reshape(-1)
    norm2 = float(grad_j @ grad_j)
    scores = model.response_scores()
    out: dict[str, list[tuple[float, float, float]]] = {}
    for name, advantages in GROUP_ESTIMATORS.items():
        rows = []
        for G in group_sizes:

            def statistic(batch: Any, advantages: Any = advantages, G: int = G) -> FloatArray:
                members = scores[batch.prompt][batch.responses]
                g = np.einsum("bg,bg...->b...", advantages(batch.rewards) / G, members)
                g = g.reshape(len(g), -1)
                return np.concatenate([g, (g * g).sum(axis=1, keepdims=True)], axis=1)

            moments = expected_over_groups(model, G, statistic)
            mean, second = moments[:-1], float(moments[-1])
            cosine = float(mean @ grad_j) / math.sqrt(float(mean @ mean) * norm2)
            rows.append(
                (float(mean @ grad_j) / norm2, cosine, (second - float(mean @ mean)) / norm2)
            )
        out[name] = rows
    return out


def _draw_group_estimators(fig: Any) -> None:
    sizes = (2, 3, 4, 6, 8)
    moments = group_estimator_moments(sizes)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    styles = ("x--", "o-", "s-", "^-")  # REINFORCE and RLOO coincide on the left: both 1
    for (name, rows), color, style in zip(moments.items(), COLORS, styles, strict=False):
        left.plot(sizes, [r[0] for r in rows], style, color=color, label=name)
        right.plot(sizes, [r[2] for r in rows], style, color=color, label=name)
    left.plot(sizes, [1 - 1 / G for G in sizes], ":", color="gray", label="1 - 1/G")
    left.set(
        xlabel="group size G",
        ylabel="E[g] . grad J / |grad J|^2",
        title="expected update, in units of grad J",
    )
    right.set(
        xlabel="group size G",
        ylabel="total variance / |grad J|^2",
        title="variance of one group's update",
        yscale="log",
    )
    left.legend(loc="lower right", fontsize=8)


# ============================================================================ the list
FIGURES: tuple[Figure, ...] = (
    Figure(
        "mc_convergence",
        "Monte-Carlo estimates converge at the rate $N^{-1/2}$",
        "Left: the running REINFORCE estimate of the largest component of $\\nabla J$ on a random "
        "3-state, 2-action MDP ($\\gamma = 0.9$, horizon 5) against the number of episodes, with "
        "its 95% confidence band $\\pm 1.96\\,\\hat\\sigma/\\sqrt N$; the black line is the exact "
        "gradient from `rlmath.exact`. Right: the error of the whole gradient (solid) follows "
        "$\\sqrt{\\mathrm{tr}\\,\\Sigma/N}$ (dashed), the $N^{-1/2}$ rate.",
        _draw_mc_convergence,
    ),
    Figure(
        "gradient_variance",
        "Baselines and reward-to-go reduce the variance",
        "Total variance of one episode's gradient estimate, four unbiased estimators on the same "
        "20 000 episodes as above: the total return $R$, $R$ minus the constant baseline $J$, "
        "reward-to-go $G_t$, and $G_t - V(s_t)$ (claims `baseline-unbiased`, "
        "`reward-to-go-unbiased`). All four have the same mean $\\nabla J$.",
        _draw_gradient_variance,
        (8.0, 3.0),
    ),
    Figure(
        "kl_estimators",
        "The KL estimators $k_1$, $k_2$, $k_3$",
        "Per-sample KL estimators of $\\KL(p \\,\\|\\, q)$ from $x \\sim p = N(0, 1)$ with "
        "$q = N(\\mu, 1)$ and $\\log r = \\log q(x) - \\log p(x)$: $k_1 = -\\log r$ (unbiased, "
        "takes negative values), $k_2 = (\\log r)^2/2$ (biased, low variance), "
        "$k_3 = (r - 1) - \\log r$ (unbiased, non-negative, low variance). The table below gives "
        "the exact bias and standard deviation.",
        _draw_kl_estimators,
    ),
    Figure(
        "ppo_clip",
        "PPO's clipped objective as a function of the ratio",
        "One term $\\min(\\rho A, \\operatorname{clip}(\\rho, 1-\\epsilon, 1+\\epsilon) A)$ of "
        "PPO's objective (computed with `rlmath.reference.ppo_clipped_surrogate_loss`). For "
        "$A > 0$ it stops rewarding $\\rho > 1 + \\epsilon$; for $A < 0$ it stops rewarding "
        "$\\rho < 1 - \\epsilon$, and it is never above the unclipped $\\rho A$ (claim "
        "`ppo-clip-lower-bound`). Where it is flat its gradient is zero (`ppo-clip-gradient`).",
        _draw_ppo_clip,
        (10.0, 3.6),
    ),
    Figure(
        "policy_gradient_ascent",
        "How a policy-gradient step moves a policy",
        "Exact gradient ascent on $J(\\theta) = \\sum_a \\pi_\\theta(a) r(a)$ for a 3-armed bandit "
        "with rewards $(1, 0.7, 0)$ and softmax logits $(\\theta_1, \\theta_2, 0)$. Starting "
        "with most mass on the second-best arm, the path first crawls along the plateau "
        "(the softmax gradient $\\pi(a)(r(a) - J)$ is small where the policy is nearly "
        "deterministic), then turns towards the best arm; $J$ rises monotonically.",
        _draw_ascent,
    ),
    Figure(
        "ppo_trust_region",
        "How a PPO update stays near the old policy",
        "Along the line $\\theta' + t u$ through the old logits $\\theta'$ in the direction of "
        "the exact gradient, on a random 4-state, 3-action MDP with $\\gamma = 0.9$: the true "
        "$J$, the surrogate $L_{\\theta'}(\\theta) = J(\\theta') + \\frac{1}{1-\\gamma}"
        "\\E_{s\\sim d', a\\sim\\pi_\\theta}[A'(s,a)]$ (equal to $J$ to first order at $t = 0$, "
        "claim `surrogate-matches-policy-gradient`), PPO's clipped surrogate, which stops "
        "improving once the ratios leave $[1-\\epsilon, 1+\\epsilon]$, and TRPO's KL-penalised "
        "bound $L_{\\theta'} - C\\,\\max_s \\KL(\\pi'(\\cdot|s) \\,\\|\\, \\pi_\\theta(\\cdot|s))$, "
        "which lies below $J$ everywhere. Maximising the surrogate alone would overshoot; the "
        "clipped and penalised objectives stop near $\\theta'$.",
        _draw_trust_region,
        (11.0, 4.5),
    ),
    Figure(
        "length_bias",
        "Which way does each loss aggregation push response length?",
        "One prompt, tokens $\\{0, 1\\}$ plus EOS, $L = 4$, uniform logits; the reward is 1 "
        "when the first token is 0, so the length is irrelevant to $J$. For each aggregation "
        "the exact expected update (groups of $G = 4$, group-mean advantage $A_i = r_i - "
        "\\bar r$, all groups enumerated) is rescaled to raise $J$ at unit rate, and the bars "
        "give the resulting rate of change of the mean length of correct and of incorrect "
        "responses. GRPO's per-response $1/|y_i|$ (seq-mean-token-mean) shortens correct "
        "responses and *lengthens* incorrect ones, whose per-token penalty shrinks with their "
        "length (Liu et al. 2025, Dr. GRPO); the constant normaliser (seq-mean-token-sum-norm) "
        "moves the policy exactly like $\\nabla J$ (claim `grpo-length-normalisation-bias`).",
        _draw_length_bias,
        (10.0, 4.2),
    ),
    Figure(
        "group_estimators",
        "Group baselines: what they estimate and how noisy they are",
        "Exact moments over all groups of $G$ responses (one prompt, tokens $\\{0, 1\\}$ "
        "plus EOS, $L = 2$, seeded random logits, binary rewards) of one group's update "
        "$\\hat g = \\frac1G \\sum_i A_i s_i$. Left: its mean along $\\nabla J$: 1 for "
        "REINFORCE and RLOO (unbiased, claim `rloo-unbiased`), $1 - 1/G$ for the group mean "
        "(claim `group-mean-baseline-shrinks`), a $G$-dependent factor for GRPO's std "
        "normalisation (claim `group-std-normalisation`; $1/\\sqrt 2$ and $2/\\sqrt 3$ at "
        "$G = 2, 3$). Right: its total variance relative to $\\|\\nabla J\\|^2$. RLOO's "
        "falls faster with $G$ than REINFORCE's (here it is above at $G = 2$, below from "
        "$G = 3$); the group mean is lower still, at the price of its $1 - 1/G$ shrinkage.",
        _draw_group_estimators,
        (11.0, 4.2),
    ),
)
