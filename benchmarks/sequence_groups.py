r"""Exact expected gradient of a GRPO-style loss over all groups, timed against a forward pass.

Run: ``python benchmarks/sequence_groups.py`` (``--repeats 3`` by default; ``--no-check``
skips the complex-step check). Prints one table; nothing is asserted except that the three
gradients agree.

Model: ``SequenceModel.random(2, 3, 3, seed=0)``: 2 prompts, 3 ordinary tokens + EOS,
maximum length 3, so $R = 13 + 27 = 40$ responses per prompt. Groups of $G = 4$ i.i.d.
responses per prompt, enumerated as multisets (type classes): $\binom{43}{4} = 123410$ per
prompt instead of $40^4 = 2.56$M ordered tuples, each weighted by its multinomial probability
(the loss is invariant under permuting the group).

Loss of one group $y_{1:G}$ for prompt $x$ (GRPO with the PPO ratio at 1, no clipping, no
KL; token-mean aggregation over the whole group; advantages detached):

$$ A_j = \frac{R(x, y_j) - \mathrm{mean}_k R(x, y_k)}{\mathrm{std}_k R(x, y_k) + 10^{-4}},
   \qquad
   \mathcal L(\theta; y_{1:G}) = -\frac{1}{\sum_k |y_k|}
   \sum_{j=1}^{G} A_j \sum_{t=1}^{|y_j|} \log\pi_\theta(y_{j,t} \mid x, y_{j,<t}), $$

std the population one (ddof = 0; TRL's ``torch.std`` uses ddof = 1), $|y|$ counts EOS. At
$\pi_{\mathrm{old}} = \pi_\theta$ the ratio form $\exp(\log\pi - \mathrm{sg}(\log\pi))$ has the
same value gradient as the log-probability form written here (Shao et al. 2024, eq. (3)).
Its analytic gradient is $\nabla \mathcal L = \sum_j c_j \nabla_\theta \log\pi_\theta(y_j|x)$,
$c_j = -A_j / \sum_k |y_k|$.

What is timed (CPU time of this process, ``time.process_time``, best of ``--repeats``
rounds, the three measured back to back in each round):

- **forward**: $\mathbb E[\mathcal L]$ over all enumerated groups of both prompts
  (``expected_over_groups`` with a statistic returning the loss of each group): the baseline.
- **gradient, aggregated**: $\mathbb E[\nabla\mathcal L]$: the statistic returns each group's
  weights $c_j$ scattered onto its members' response indices (``[B, R]``); their expectation
  is one weight per response, turned into the gradient by one
  ``SequenceModel.weighted_score_sum`` (linearity: the loss is linear in the log-probs).
- **gradient, dense**: the statistic returns each group's full gradient
  $\sum_j c_j \nabla\log\pi(y_j|x)$, ``[B, X, N, K + 1]``, from
  ``SequenceModel.response_scores()`` (the generic path for a statistic that is not linear
  in the log-probs).

Check (not timed): both gradients agree, and agree with complex-step differences of
$F(\theta) = \mathbb E_{y_{1:G} \sim \pi_{\theta_0}}[\mathcal L(\theta; y_{1:G})]$ at
$\theta = \theta_0$ (group probabilities frozen at $\theta_0$, log-probs complex), one forward
pass per logit.

References:
    Shao, Z. et al. "DeepSeekMath", 2024, Sec. 4.1 (GRPO).
    Liu, Z. et al. "Understanding R1-Zero-Like Training: A Critical Perspective", 2025
    (Dr. GRPO; token-mean versus per-sequence aggregation).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rlmath.sequence_model import SequenceModel, count_groups, expected_over_groups

EPS_STD = 1e-4


def advantages(rewards: np.ndarray) -> np.ndarray:
    """Group-mean-and-std advantages, ``[B, G]``."""
    return (rewards - rewards.mean(axis=1, keepdims=True)) / (
        rewards.std(axis=1, keepdims=True) + EPS_STD
    )


def gradient_weights(batch) -> np.ndarray:
    """c_j = -A_j / sum_k |y_k|, ``[B, G]``."""
    return -advantages(batch.rewards) / batch.lengths.sum(axis=1, keepdims=True)


def loss_statistic(log_probabilities=None):
    """The group loss, from the batch's log-probs or from a given ``[X, R]`` (real or complex)."""

    def statistic(batch):
        if log_probabilities is None:
            lp = batch.log_probabilities
        else:
            lp = log_probabilities[batch.prompt][batch.responses]
        value = (gradient_weights(batch) * lp).sum(axis=1)
        if np.iscomplexobj(value):
            return np.stack([value.real, value.imag], axis=1)
        return value

    return statistic


def aggregated_gradient(model: SequenceModel, G: int) -> np.ndarray:
    X, R = model.n_prompts, model.n_responses

    def member_weights(batch):
        B = batch.responses.shape[0]
        out = np.zeros((B, X, R))
        np.add.at(
            out, (np.arange(B)[:, None], batch.prompt, batch.responses), gradient_weights(batch)
        )
        return out.reshape(B, X * R)

    per_response = expected_over_groups(model, G, member_weights).reshape(X, R)
    return model.weighted_score_sum(per_response)


def dense_gradient(model: SequenceModel, G: int, scores: np.ndarray) -> np.ndarray:
    def full_gradient(batch):
        member_scores = scores[batch.prompt][batch.responses]  # [B, G, X, N, V]
        return np.einsum("bg,bgynv->bynv", gradient_weights(batch), member_scores)

    return expected_over_groups(model, G, full_gradient, batch_size=16_384)


def complex_log_probabilities(model: SequenceModel, theta: np.ndarray) -> np.ndarray:
    shift = theta.real.max(axis=-1, keepdims=True)
    log_pi = theta - shift - np.log(np.exp(theta - shift).sum(axis=-1, keepdims=True))
    r = model.responses
    gathered = log_pi[:, np.maximum(r.nodes, 0), np.maximum(r.tokens, 0)]
    return np.where(r.mask[None], gathered, 0.0).sum(axis=2)


def complex_step_gradient(model: SequenceModel, G: int, h: float = 1e-20) -> np.ndarray:
    grad = np.zeros(model.theta.shape)
    for index in np.ndindex(*model.theta.shape):
        z = model.theta.astype(np.complex128)
        z[index] += 1j * h
        value = expected_over_groups(model, G, loss_statistic(complex_log_probabilities(model, z)))
        grad[index] = value[1] / h
    return grad


def cpu_time(fn) -> tuple[float, object]:
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-check", action="store_true", help="skip the complex-step check")
    args = parser.parse_args()

    model = SequenceModel.random(2, 3, 3, seed=0)
    G = 4
    n_groups = count_groups(model.n_responses, G)
    print(
        f"{model}: {model.n_responses} responses per prompt, G = {G}: {n_groups} multisets "
        f"per prompt ({model.n_responses**G} ordered tuples), {model.n_prompts} prompts"
    )
    scores = model.response_scores()
    forward_times, aggregated_times, dense_times = [], [], []
    for _ in range(args.repeats):
        t, loss = cpu_time(lambda: expected_over_groups(model, G, loss_statistic()))
        forward_times.append(t)
        t, g_agg = cpu_time(lambda: aggregated_gradient(model, G))
        aggregated_times.append(t)
        t, g_dense = cpu_time(lambda: dense_gradient(model, G, scores))
        dense_times.append(t)
    t_forward = min(forward_times)
    t_agg, t_dense = min(aggregated_times), min(dense_times)
    difference = float(np.abs(g_agg - g_dense).max())
    print(f"  E[loss] (forward pass over all groups)   {t_forward * 1e3:8.1f} ms   (baseline)")
    print(
        f"  E[grad], aggregated weights + one VJP     {t_agg * 1e3:8.1f} ms   "
        f"ratio {t_agg / t_forward:.2f}x"
    )
    print(
        f"  E[grad], dense per-group gradients         {t_dense * 1e3:8.1f} ms   "
        f"ratio {t_dense / t_forward:.2f}x"
    )
    print(f"  E[loss] = {float(loss):.6g}; |grad| max = {float(np.abs(g_agg).max()):.6g}")
    print(f"  max |aggregated - dense| = {difference:.2e}")
    if difference > 1e-12:
        raise SystemExit("the two gradients disagree")
    if not args.no_check:
        t, g_cs = cpu_time(lambda: complex_step_gradient(model, G))
        cs_difference = float(np.abs(g_cs - g_agg).max())
        print(
            f"  max |aggregated - complex step| = {cs_difference:.2e} "
            f"({model.theta.size} complex forward passes, {t:.1f} s)"
        )
        if cs_difference > 1e-12:
            raise SystemExit("the gradient disagrees with complex-step differences")


if __name__ == "__main__":
    main()
