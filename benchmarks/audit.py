r"""Time a gradient audit of a PyTorch GRPO-style loss against one batched forward and backward pass.

Run: ``python benchmarks/audit.py`` (``--repeats 1`` by default). Prints one table; nothing is
asserted on time (the acceptance of issue 13 is "at most 30 s on the 2-core machine").

Model: ``SequenceModel.random(2, 3, 3, seed=0)`` with 0/1 rewards: 2 prompts, 3 ordinary
tokens + EOS, maximum length 3, so $R = 13 + 27 = 40$ responses per prompt and
$\binom{43}{4} = 123410$ multisets of $G = 4$ per prompt (246820 groups in all).

Loss of one group (GRPO: PPO ratio against the detached old log-probs, clip 0.2, std
normalisation with ``torch.std`` (ddof = 1) and $\epsilon = 10^{-4}$, seq-mean-token-mean):

$$ \mathcal L = -\frac1G \sum_j \frac{1}{|y_j|} \sum_t
   \min\big(\rho_{j,t} A_j, \mathrm{clip}(\rho_{j,t}, 0.8, 1.2) A_j\big), \qquad
   \rho_{j,t} = e^{z_{j,t} - \mathrm{sg}(z^\mathrm{old}_{j,t})}. $$

What is timed (CPU time of this process, ``time.process_time``; wall time alongside):

- **baseline**: one batched forward and backward pass of the same loss over all 246820
  enumerated groups at once (the loss, written with reductions over the last axes, called on
  a ``[123410, 4, 3]`` tensor of log-probs per prompt, then one ``backward`` of the
  probability-weighted sum): the cheapest possible autograd pass over the enumeration.
- **audit**: ``rlmath.audit.audit(loss, models=[model], group_size=4)``: the exact expected
  gradient (chunks of groups through ``vmap(grad)``, scatter onto the logits), the named
  objectives and the verdict.

References:
    Shao, Z. et al. "DeepSeekMath", 2024, Sec. 4.1 (GRPO).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from rlmath.audit import audit
from rlmath.sequence_model import SequenceModel, count_groups, group_indices

G = 4


def grpo_loss(log_probs, *, old_log_probs, rewards, response_mask):
    """GRPO, seq-mean-token-mean, clipped ratio, std normalisation (ddof = 1, eps = 1e-4)."""
    advantages = (rewards - rewards.mean(-1, keepdim=True)) / (rewards.std(-1, keepdim=True) + 1e-4)
    ratio = torch.exp(log_probs - old_log_probs.detach())
    adv = advantages.unsqueeze(-1)
    per_token = -torch.minimum(ratio * adv, torch.clamp(ratio, 0.8, 1.2) * adv)
    mask = response_mask.to(log_probs.dtype)
    return ((per_token * mask).sum(-1) / mask.sum(-1)).mean(-1)


def model_with_binary_rewards() -> SequenceModel:
    base = SequenceModel.random(2, 3, 3, seed=0)
    rewards = (base.rewards > 0).astype(np.float64)
    return SequenceModel(
        base.theta, 3, base.prompt_probabilities, rewards, None, base.reference_theta
    )


def batched_pass(model: SequenceModel) -> float:
    """One forward + backward pass over every enumerated group at once; returns E[loss]."""
    groups, log_multiplicity = group_indices(model.n_responses, G)
    token_lp = model.token_log_probabilities()
    mask = model.responses.mask
    total = 0.0
    for x in range(model.n_prompts):
        lp = torch.tensor(token_lp[x][groups], requires_grad=True)
        weight = torch.tensor(
            model.prompt_probabilities[x]
            * np.exp(log_multiplicity + model.log_probabilities()[x][groups].sum(axis=1))
        )
        values = grpo_loss(  # written with axis -1 / -2 ops, so it batches over groups as is
            lp,
            old_log_probs=lp.detach().clone(),
            rewards=torch.tensor(model.rewards[x][groups]),
            response_mask=torch.tensor(mask[groups]),
        )
        expected = (weight * values).sum()
        expected.backward()
        total += float(expected.detach())
    return total


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = model_with_binary_rewards()
    n = count_groups(model.n_responses, G)
    print(
        f"{model}: G = {G}, {n} multisets per prompt, {model.n_prompts * n} groups; "
        f"torch {torch.__version__}, 1 thread",
        flush=True,
    )
    baseline, audits = [], []
    for _ in range(args.repeats):
        baseline.append(timed(lambda: batched_pass(model)))
        audits.append(
            timed(lambda: audit(grpo_loss, models=[model], group_size=G, std_epsilon=1e-4))
        )
    b_cpu, b_wall, _ = min(baseline, key=lambda item: item[0])
    a_cpu, a_wall, report = min(audits, key=lambda item: item[0])
    print(f"  batched forward + backward over all groups  {b_cpu:7.2f} s CPU  {b_wall:7.2f} s wall")
    print(
        f"  audit (expected gradient + verdict)          {a_cpu:7.2f} s CPU  {a_wall:7.2f} s wall"
        f"   ratio {a_cpu / b_cpu:.2f}x (CPU)"
    )
    print("  verdict: " + report.summary().splitlines()[0])


if __name__ == "__main__":
    main()
