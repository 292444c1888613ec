r"""Error-injection campaign: is each plausible bug caught by ``rlmath verify``, by pytest, by both?

Opt-in and rerunnable (acceptance of the "Sound verdicts" issue). Every entry of :data:`ERRORS`
is one plausible mathematical or logical bug: a file, an exact ``old`` snippet that must occur
exactly once in it, its ``new`` replacement, a class (sign flip, dropped factor, off-by-one,
...) and a one-line description. For each error the script

1. copies the working tree (``git ls-files -co --exclude-standard``) once into a *snapshot*,
   so that every run sees the same files even while the tree is being edited, then copies the
   snapshot again per error and applies the patch there (the real tree is never touched);
2. runs ``python -m rlmath verify --seed 0 --quiet --jobs 2 --json ...`` in the copy with
   ``PYTHONPATH`` set to it (checked: ``rlmath`` and ``proofs/`` resolve to the copy);
3. runs the pytest files relevant to the patched module (targeted files, *not* the full
   suite, unless ``--full-pytest``) with ``-q -p no:cacheprovider`` (and ``-x`` when the
   baseline of those files is green), ``HYPOTHESIS_PROFILE=ci`` unless set.

Detection is judged against a **baseline** (the unpatched snapshot, run the same way):

- verify: when the baseline exits 0, an error is *detected* when verify exits non-zero. When
  the baseline already fails, the per-claim JSON is compared: detected means something that
  was good became bad (a leg that verified no longer does; a leg whose check passed and only
  its control was defective now fails its check; a mutant that was rejected now survives or
  gets no verdict; a new coverage problem; a claim missing; verify could not load). Changes
  confined to legs and mutants that were already bad are reported as ``changed``
  (inconclusive until the baseline is clean); bad things that became good are counted as
  *masked* baseline failures (an error that silences verify). ``timeout`` means verify did
  not finish (a hang counts as detected, reported separately); ``stale`` means the snippet no
  longer occurs exactly once (the error was not run: refresh it).
- pytest: when the targeted files pass on the baseline, detected means a non-zero exit;
  otherwise, a test that passed on the baseline fails (from ``--junitxml``).

Usage::

    python scripts/inject_errors.py --list
    python scripts/inject_errors.py --check                 # which snippets are stale now
    python scripts/inject_errors.py --only ID[,ID...]       # ids or shell globs
    python scripts/inject_errors.py --jobs 2 --markdown campaign.md --json campaign.json
    python scripts/inject_errors.py --skip-pytest            # verify column only
    python scripts/inject_errors.py --full-pytest            # whole default suite, not targeted
    python scripts/inject_errors.py --merge a.json b.json --markdown all.md   # combine runs

``--fail-fast`` (with a green baseline) stops verify at the first failing claim, running first
the claims of the patched proof file, or of the proof files importing the patched module: the
verdict is the full run's (a failing subset fails the full run), at a fraction of the time.
Other options: ``--timeout S`` (per run; default max(600 s, 5 x the unpatched baseline's
time), so that a loaded machine is not mistaken for a hang), ``--verify-jobs N`` (default 2),
``--seed``, ``--verify-only GLOB`` (passes ``--only`` to verify; for quick development runs,
applied to the baseline too), ``--errors-file PATH`` (more errors as a JSON list of objects
with the fields of :class:`InjectedError`), ``--workdir DIR`` and ``--keep`` (keep the copies).
A full campaign costs about one full ``rlmath verify`` (plus the targeted tests) per error.

Last results: ``scripts/results/campaign.md`` and ``campaign.json``, 148 errors, merged
(``--merge``) from the runs kept in ``scripts/results/runs/``: the verify column of 129 errors
at 0d28926 and of the 19 reference errors added after it (``--fail-fast --skip-pytest --jobs 1
--verify-jobs 2``); the two errors that column missed, rerun at 36a8b73 after their
self-tests; the seven ``es-*`` errors rerun at 92cd899 with the baseline-second-moment claim;
the pytest column of all 148 at 36a8b73 (``--skip-verify``). Verify detected 148 of 148,
targeted pytest 144; verify alone 4, pytest alone 0, both 144.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

#: Where errors may be injected (the code the claims exercise, and the claims themselves).
AREAS = (
    "proofs/",
    "rlmath/symbolic.py",
    "rlmath/claims/",
    "rlmath/exact.py",
    "rlmath/sampling.py",
    "rlmath/estimators.py",
    "rlmath/statistics.py",
    "rlmath/tolerances.py",
    "rlmath/reference.py",
    "rlmath/sequence_model.py",
    "rlmath/llm_reference.py",
)


@dataclass(frozen=True)
class InjectedError:
    """One bug: replace the single occurrence of ``old`` in ``file`` by ``new``.

    Attributes:
        id: unique kebab-case id (the prefix names the area: ``pf-`` proofs, ``ex-`` exact,
            ``sa-`` sampling, ``es-`` estimators, ``st-`` statistics, ``to-`` tolerances,
            ``sy-`` symbolic, ``cl-`` claims, ``rf-`` reference, ``sq-`` sequence_model, ``ll-`` llm_reference).
        file: path relative to the repository root.
        kind: the class of bug (sign flip, dropped factor, off-by-one, ...).
        description: what is wrong, in one line.
        old: exact text that must occur exactly once in ``file``.
        new: its replacement.
        breaks_import: the error makes a module fail to import (trivially detected).
    """

    id: str
    file: str
    kind: str
    description: str
    old: str
    new: str
    breaks_import: bool = False


def _e(
    id_: str, file: str, kind: str, description: str, old: str, new: str, **flags: bool
) -> InjectedError:
    return InjectedError(id_, file, kind, description, old, new, **flags)


PROOFS_EXPECTED_RETURN = "proofs/expected_return.py"
PROOFS_SCORE = "proofs/score_and_baselines.py"
PROOFS_PGT = "proofs/policy_gradient_theorem.py"
PROOFS_PPO_CLIP = "proofs/ppo_clip.py"
EXACT_LEG = "rlmath/claims/exact_leg.py"
MC_LEG = "rlmath/claims/monte_carlo_leg.py"
SYMBOLIC_LEG = "rlmath/claims/symbolic_leg.py"
REFERENCE = "rlmath/reference.py"
LLM_REFERENCE = "rlmath/llm_reference.py"

ERRORS: tuple[InjectedError, ...] = (
    # ------------------------------------------------------------------ proofs/
    _e(
        "pf-expret-step-undiscounted",
        PROOFS_EXPECTED_RETURN,
        "dropped factor (derivation step)",
        "the first step's return written r + G: gamma dropped before the rest of the return",
        "            over_trajectories(r[state, act] + gamma * G[nxt, cont]),",
        "            over_trajectories(r[state, act] + G[nxt, cont]),",
    ),
    _e(
        "pf-expret-mutant-is-truth",
        PROOFS_EXPECTED_RETURN,
        "mutant identical to the truth",
        "the undiscounted-DP mutant calls backup() with its default discount gamma: the truth",
        "UNDISCOUNTED = backup(sp.Integer(1))",
        "UNDISCOUNTED = backup()",
    ),
    _e(
        "pf-expret-mc-discount-off-by-one",
        PROOFS_EXPECTED_RETURN,
        "off-by-one",
        "the sampled discounted return weights r_t by gamma^(t+1)",
        "    return (mdp.gamma ** np.arange(len(rewards))) @ rewards",
        "    return (mdp.gamma ** np.arange(1, len(rewards) + 1)) @ rewards",
    ),
    _e(
        "pf-is-lhs-missing-division",
        "proofs/importance_sampling.py",
        "dropped factor (exact lhs)",
        "the enumerated importance-sampling estimator is f p instead of f p / q",
        "    estimator = fv[support] * pv[support] / qv[support]",
        "    estimator = fv[support] * pv[support]",
    ),
    _e(
        "pf-score-wrong-action",
        PROOFS_SCORE,
        "wrong index (derivation step)",
        "softmax score written 1[a=k] - pi(a) instead of 1[a=k] - pi(k)",
        "    return sp.KroneckerDelta(a, k) - pi(k, total)",
        "    return sp.KroneckerDelta(a, k) - pi(a, total)",
    ),
    _e(
        "pf-baseline-visits-normaliser",
        PROOFS_SCORE,
        "dropped factor (exact rhs)",
        "the baseline claim's rhs weights states by d(s) instead of d(s)/(1 - gamma)",
        "    return exact.occupancy(mdp, policy) / (1.0 - mdp.gamma), exact.q_value(mdp, policy)",
        "    return exact.occupancy(mdp, policy), exact.q_value(mdp, policy)",
    ),
    _e(
        "pf-baseline-mutant-state-only",
        PROOFS_SCORE,
        "mutant identical to the truth (in mean)",
        "the action-dependent-baseline mutant reads b(s, 0): a state baseline, unbiased",
        "        - _discounts(mdp, episodes) * action_baseline[episodes.states, episodes.actions]",
        "        - _discounts(mdp, episodes) * action_baseline[episodes.states, 0]",
    ),
    _e(
        "pf-pgt-prefactor-inverted",
        PROOFS_PGT,
        "wrong factor",
        "softmax gradient prefactor d(s) (1 - gamma) instead of d(s) / (1 - gamma)",
        "prefactor = d_s / (1 - gamma)",
        "prefactor = d_s * (1 - gamma)",
    ),
    _e(
        "pf-pgt-loose-tolerance",
        PROOFS_PGT,
        "wrong tolerance (loosened)",
        "finite-difference rtol loosened by 1e-2 (to quiet a flaky check)",
        "    return finite_difference_bound(example) / float(",
        "    return 1e-2 + finite_difference_bound(example) / float(",
    ),
    _e(
        "pf-ppo-surrogate-parenthesis",
        PROOFS_PPO_CLIP,
        "misplaced parenthesis (exact lhs)",
        "L^CLIP computed as min(r A, clip(r)) A instead of min(r A, clip(r) A)",
        "    return min(ratio * advantage, min(max(ratio, 1 - eps), 1 + eps) * advantage)",
        "    return min(ratio * advantage, min(max(ratio, 1 - eps), 1 + eps)) * advantage",
    ),
    _e(
        "pf-ppo-regions-do-not-cover",
        PROOFS_PPO_CLIP,
        "wrong region (case analysis)",
        "the negative-advantage regions say A >= 0: the cases no longer cover A < 0",
        "    positive, negative = ge(A, 0), le(A, 0)",
        "    positive, negative = ge(A, 0), ge(A, 0)",
    ),
    _e(
        "pf-klest-mutant-is-truth",
        "proofs/kl_estimators.py",
        "mutant identical to the truth",
        "the k1-ratio-inverted mutant's estimator returns -log r: it is k1 itself",
        "    return np.asarray(log_ratio, dtype=np.float64)",
        "    return -np.asarray(log_ratio, dtype=np.float64)",
    ),
    _e(
        "pf-klchain-mutant-is-truth",
        "proofs/kl_divergence.py",
        "mutant identical to the truth",
        "the reversed-KL mutant samples and scores pi_theta: the true chain-rule estimator",
        "reversed_kl_samples = _fresh_action_sampler(walker=1, first=2)",
        "reversed_kl_samples = _fresh_action_sampler(walker=1, first=1)",
    ),
    _e(
        "pf-pdl-difference-reversed",
        "proofs/performance_difference.py",
        "swapped arguments (exact lhs)",
        "J(pi') - J(pi) instead of J(pi) - J(pi') on the lemma's left-hand side",
        "        difference = exact.objective(mdp, policy) - exact.objective(mdp, reference)",
        "        difference = exact.objective(mdp, reference) - exact.objective(mdp, policy)",
    ),
    # ------------------------------------------------------------------ rlmath/exact.py
    _e(
        "ex-occupancy-unnormalised",
        "rlmath/exact.py",
        "dropped factor",
        "exact.occupancy without the (1 - gamma): it sums to 1/(1 - gamma)",
        "    return (1.0 - mdp.gamma) * _DiscountedSystem(mdp, pi).solve(np.array(mdp.rho0), transpose=True)",
        "    return _DiscountedSystem(mdp, pi).solve(np.array(mdp.rho0), transpose=True)",
    ),
    _e(
        "ex-q-value-undiscounted",
        "rlmath/exact.py",
        "dropped factor",
        "Q = r + P V: the discount dropped from the one-step backup",
        "    Q: FloatArray = mdp.r + mdp.gamma * _expected_next_value(mdp, value(mdp, policy))",
        "    Q: FloatArray = mdp.r + _expected_next_value(mdp, value(mdp, policy))",
    ),
    _e(
        "ex-gradient-occupancy-untransposed",
        "rlmath/exact.py",
        "transposed solve",
        "policy_gradient's occupancy from M x = rho0 instead of M^T x = rho0",
        "    unnormalised_occupancy = system.solve(np.array(mdp.rho0), transpose=True)",
        "    unnormalised_occupancy = system.solve(np.array(mdp.rho0), transpose=False)",
    ),
    _e(
        "ex-lu-trans-flags",
        "rlmath/exact.py",
        "swapped arguments",
        "the LU of M^T is used with the trans flags of an LU of M (every solve transposed)",
        "            trans = 0 if transpose else 1",
        "            trans = 1 if transpose else 0",
    ),
    _e(
        "ex-objective-occupancy-weighted",
        "rlmath/exact.py",
        "wrong distribution",
        "J = d^T V (occupancy) instead of rho0^T V",
        "    return float(mdp.rho0 @ value(mdp, policy))",
        "    return float(occupancy(mdp, policy) @ value(mdp, policy))",
    ),
    _e(
        "ex-backward-induction-off-by-one",
        "rlmath/exact.py",
        "off-by-one",
        "backward induction starts at t = H - 2: Q_{H-1} stays 0 (last reward lost)",
        "    for t in range(H - 1, -1, -1):",
        "    for t in range(H - 2, -1, -1):",
    ),
    _e(
        "ex-trajectory-return-exponent",
        "rlmath/exact.py",
        "off-by-one",
        "enumerated returns discount r_t by gamma^(t+1)",
        "        ret = ret[keep_i] + mdp.gamma**t * mdp.r[s[keep_i], keep_a]",
        "        ret = ret[keep_i] + mdp.gamma ** (t + 1) * mdp.r[s[keep_i], keep_a]",
    ),
    _e(
        "ex-state-distributions-untransposed",
        "rlmath/exact.py",
        "transposed matrix",
        "forward propagation p_{t+1} = P_pi p_t instead of P_pi^T p_t",
        "        out[t] = P_pi.T @ out[t - 1]",
        "        out[t] = P_pi @ out[t - 1]",
    ),
    # ------------------------------------------------------------------ rlmath/sampling.py
    _e(
        "sa-alias-unscaled",
        "rlmath/sampling.py",
        "wrong threshold (alias table)",
        "Vose pairing on p instead of K p: every slot is small, tables stay uniform",
        "    thresholds, alias_slot = _vose_pairing(p * K)",
        "    thresholds, alias_slot = _vose_pairing(p.copy())",
    ),
    _e(
        "sa-alias-mass-accounting",
        "rlmath/sampling.py",
        "wrong update (alias table)",
        "the large slot gives away q_k instead of 1 - q_k",
        "        residual -= 1.0 - kept",
        "        residual -= kept",
    ),
    _e(
        "sa-reward-time-shift",
        "rlmath/sampling.py",
        "off-by-one (reward time index)",
        "step t's reward is written into row t - 1 (r_0 lands at T - 1)",
        '    rewards, log_probs = out["rewards"][t], out["log_probs"][t]',
        '    rewards, log_probs = out["rewards"][t - 1], out["log_probs"][t]',
    ),
    _e(
        "sa-terminal-current-state",
        "rlmath/sampling.py",
        "terminal handling",
        "an episode ends when s_t (not s_{t+1}) is terminal",
        'tables.terminal.take(work.next_state[:n], out=ended, mode="wrap")',
        'tables.terminal.take(work.state[:n], out=ended, mode="wrap")',
    ),
    _e(
        "sa-shared-uniform",
        "rlmath/sampling.py",
        "wrong distribution (correlated draws)",
        "the next state is drawn with the action's uniform",
        "    scaled_action, scaled_next = draws[:, 0], draws[:, 1]",
        "    scaled_action, scaled_next = draws[:, 0], draws[:, 0].copy()",
    ),
    _e(
        "sa-sample-actions-row-zero",
        "rlmath/sampling.py",
        "wrong distribution",
        "sample_actions draws every state's action from state 0's policy",
        "    flat = alias_sample(alias_table(pi), s.astype(np.intp).ravel(), uniforms.ravel())",
        "    flat = alias_sample(alias_table(pi), None, uniforms.ravel())",
    ),
    _e(
        "sa-geometric-length-off-by-one",
        "rlmath/sampling.py",
        "off-by-one",
        "geometric episode lengths floor(log(1-u)/log gamma), one short (can be 0)",
        "    return (np.floor(ratio) + 1.0).astype(np.intp)",
        "    return np.floor(ratio).astype(np.intp)",
    ),
    # ------------------------------------------------------------------ rlmath/estimators.py
    _e(
        "es-reward-to-go-from-next",
        "rlmath/estimators.py",
        "off-by-one",
        "reward-to-go G_t starts at t + 1 (r_t left out)",
        "        following = rewards[t] + gamma * following\n        out[t] = following",
        "        out[t] = following\n        following = rewards[t] + gamma * following",
    ),
    _e(
        "es-baseline-sign",
        "rlmath/estimators.py",
        "sign flip (mean-preserving)",
        "G_t + b(s_t) instead of G_t - b(s_t): still unbiased, only the variance changes",
        "    weights = (_reward_to_go(rollouts.rewards, gamma) - b_t) * _discounts(gamma, rollouts.n_steps)",
        "    weights = (_reward_to_go(rollouts.rewards, gamma) + b_t) * _discounts(gamma, rollouts.n_steps)",
    ),
    _e(
        "es-baseline-per-reward",
        "rlmath/estimators.py",
        "wrong formula (biased baseline)",
        "the baseline is subtracted from every reward before the reward-to-go (later b(s_k) depend on a_t)",
        "    weights = (_reward_to_go(rollouts.rewards, gamma) - b_t) * _discounts(gamma, rollouts.n_steps)",
        "    weights = _reward_to_go(rollouts.rewards - b_t, gamma) * _discounts(gamma, rollouts.n_steps)",
    ),
    _e(
        "rf-kl-k3-sign",
        "rlmath/reference.py",
        "sign flip",
        "k3 = (r - 1) + log r (in the one KL implementation, rlmath.reference)",
        "np.expm1(log_ratio) - log_ratio",
        "np.expm1(log_ratio) + log_ratio",
    ),
    _e(
        "es-score-sign",
        "rlmath/estimators.py",
        "sign flip",
        "softmax score 1[b=a] + pi(b|s) in weighted_score_sum",
        "    return indicator.reshape(N, S, A) - state_weight.reshape(N, S, 1) * policy.probabilities()[None]",
        "    return indicator.reshape(N, S, A) + state_weight.reshape(N, S, 1) * policy.probabilities()[None]",
    ),
    _e(
        "es-importance-ratio-inverted",
        "rlmath/estimators.py",
        "swapped arguments",
        "log-ratio log pi' - log pi (behaviour over target) in the surrogate and off-policy weights",
        "    return np.where(rollouts.alive, target - rollouts.log_probs, 0.0)",
        "    return np.where(rollouts.alive, rollouts.log_probs - target, 0.0)",
    ),
    _e(
        "es-trajectory-kl-ratio-swapped",
        "rlmath/estimators.py",
        "swapped arguments",
        "trajectory_kl passes (other, sampled): the KL direction swapped",
        "estimator(rollouts.log_probs, other_log_probs)",
        "estimator(other_log_probs, rollouts.log_probs)",
    ),
    # ------------------------------------------------------------------ rlmath/reference.py
    _e(
        "rf-kl-k2-no-half",
        "rlmath/reference.py",
        "dropped factor",
        "k2 = (log r)^2 without the 1/2",
        "result: FloatArray = 0.5 * log_ratio**2",
        "result: FloatArray = log_ratio**2",
    ),
    _e(
        "rf-kl-log-ratio-reversed",
        "rlmath/reference.py",
        "swapped arguments",
        "log r = log pi - log pi_ref in all three KL estimators",
        "result: FloatArray = reference - new",
        "result: FloatArray = new - reference",
    ),
    _e(
        "rf-kl-k1-sign",
        "rlmath/reference.py",
        "sign flip",
        "k1 = log r instead of -log r",
        "return -_kl_log_ratio(log_probs, reference_log_probs)",
        "return _kl_log_ratio(log_probs, reference_log_probs)",
    ),
    _e(
        "es-k3-wrapper-direction",
        "rlmath/estimators.py",
        "swapped arguments",
        "the kl_k3 wrapper reverses the KL direction",
        "return reference.kl_estimator_k3(log_probs, reference_log_probs)",
        "return reference.kl_estimator_k3(reference_log_probs, log_probs)",
    ),
    _e(
        "rf-ppo-max-for-min",
        "rlmath/reference.py",
        "wrong formula",
        "max instead of min in the PPO loss",
        "return float(-np.mean(np.minimum(ratio * adv, clipped * adv)))",
        "return float(-np.mean(np.maximum(ratio * adv, clipped * adv)))",
    ),
    _e(
        "rf-ppo-ratio-inverted",
        "rlmath/reference.py",
        "wrong formula",
        "PPO ratio exp(old - new)",
        "        ratio = np.exp(new - old)\n    return ratio, adv, epsilon",
        "        ratio = np.exp(old - new)\n    return ratio, adv, epsilon",
    ),
    _e(
        "rf-ppo-grad-clipped-nonzero",
        "rlmath/reference.py",
        "wrong formula",
        "PPO gradient nonzero where clipped",
        "result: FloatArray = -np.where(active, ratio * adv, 0.0) / ratio.size",
        "result: FloatArray = -(ratio * adv) / ratio.size",
    ),
    _e(
        "rf-ppo-grad-sum",
        "rlmath/reference.py",
        "wrong formula",
        "PPO gradient of the summed loss",
        "result: FloatArray = -np.where(active, ratio * adv, 0.0) / ratio.size",
        "result: FloatArray = -np.where(active, ratio * adv, 0.0)",
    ),
    _e(
        "rf-value-min-for-max",
        "rlmath/reference.py",
        "wrong formula",
        "value loss: min instead of max",
        "return float(0.5 * np.mean(np.maximum((new - target) ** 2, (clipped - target) ** 2)))",
        "return float(0.5 * np.mean(np.minimum((new - target) ** 2, (clipped - target) ** 2)))",
    ),
    _e(
        "rf-value-grad-through-clip",
        "rlmath/reference.py",
        "wrong formula",
        "value-loss gradient through the clip",
        "per_entry = np.where(unclipped_wins, new - target, np.where(inside, clipped - target, 0.0))",
        "per_entry = np.where(unclipped_wins, new - target, clipped - target)",
    ),
    _e(
        "rf-value-no-half",
        "rlmath/reference.py",
        "wrong formula",
        "value loss without 1/2",
        "return float(0.5 * np.mean(np.maximum(",
        "return float(1.0 * np.mean(np.maximum(",
    ),
    _e(
        "rf-dpo-no-beta",
        "rlmath/reference.py",
        "wrong formula",
        "beta missing in the DPO margin",
        "    margin = strength * ((chosen - reference_chosen) - (rejected - reference_rejected))\n    return margin, strength",
        "    margin = ((chosen - reference_chosen) - (rejected - reference_rejected))\n    return margin, strength",
    ),
    _e(
        "rf-dpo-grad-sigma-plus",
        "rlmath/reference.py",
        "wrong formula",
        "DPO gradient weight sigma(z) instead of sigma(-z)",
        "weight = strength * expit(-margin) / margin.size",
        "weight = strength * expit(margin) / margin.size",
    ),
    _e(
        "rf-dpo-loss-swapped",
        "rlmath/reference.py",
        "wrong formula",
        "chosen/rejected swapped in dpo_loss",
        "return float(np.mean(np.logaddexp(0.0, -margin)))",
        "return float(np.mean(np.logaddexp(0.0, margin)))",
    ),
    _e(
        "rf-bt-swapped",
        "rlmath/reference.py",
        "wrong formula",
        "Bradley-Terry margin swapped",
        "return float(np.mean(np.logaddexp(0.0, -(chosen - rejected))))",
        "return float(np.mean(np.logaddexp(0.0, (chosen - rejected))))",
    ),
    _e(
        "rf-norm-ddof-ignored",
        "rlmath/reference.py",
        "wrong formula",
        "ddof ignored in the normalising std",
        "mean_square = np.sum((deviation / largest) ** 2, axis=axis, keepdims=True) / (count - ddof)",
        "mean_square = np.sum((deviation / largest) ** 2, axis=axis, keepdims=True) / count",
    ),
    _e(
        "rf-norm-no-eps",
        "rlmath/reference.py",
        "wrong formula",
        "epsilon dropped from the normalisation",
        "denominator = np.where(constant, 1.0, largest * np.sqrt(mean_square) + eps / scale)",
        "denominator = np.where(constant, 1.0, largest * np.sqrt(mean_square))",
    ),
    _e(
        "rf-gae-truncation-not-cut",
        "rlmath/reference.py",
        "wrong formula",
        "GAE recursion cut only at terminations",
        "return _discounted_cumulative_sum(deltas, terminated_flags | truncated_flags, gamma * lam)",
        "return _discounted_cumulative_sum(deltas, terminated_flags, gamma * lam)",
    ),
    _e(
        "rf-bootstrap-termination-ignored",
        "rlmath/reference.py",
        "wrong formula",
        "a terminated step bootstraps",
        "next_values = np.where(terminated_flags, 0.0, np.where(truncated_flags, final_array, following))",
        "next_values = np.where(truncated_flags, final_array, following)",
    ),
    _e(
        "rf-bootstrap-last-value-ignored",
        "rlmath/reference.py",
        "wrong formula",
        "the open last step bootstraps 0, not last_value",
        "following = np.concatenate([values_array[1:], last_array[np.newaxis]], axis=0)",
        "following = np.concatenate([values_array[1:], 0.0 * last_array[np.newaxis]], axis=0)",
    ),
    _e(
        "rf-td-missing-discount",
        "rlmath/reference.py",
        "wrong formula",
        "TD error without gamma",
        "result: FloatArray = rewards_array + gamma * next_values - values_array",
        "result: FloatArray = rewards_array + next_values - values_array",
    ),
    _e(
        "rf-lambda-returns-weights-swapped",
        "rlmath/reference.py",
        "wrong formula",
        "lambda and 1 - lambda swapped in the lambda-return",
        "blended = (1.0 - lam) * next_values[t] + lam * following",
        "blended = lam * next_values[t] + (1.0 - lam) * following",
    ),
    _e(
        "rf-cumulative-sum-cut-off-by-one",
        "rlmath/reference.py",
        "wrong formula",
        "discounted sums cut one step late",
        "running = terms[t] + factor * np.where(cut[t], 0.0, running)",
        "running = terms[t] + factor * np.where(cut[t - 1], 0.0, running)",
    ),
    _e(
        "rf-n-step-bootstrap-discount-short",
        "rlmath/reference.py",
        "wrong formula",
        "gamma^(m-1) on the n-step bootstrap",
        "result[:span] += np.where(closes, weight * gamma * next_values[k:], 0.0)",
        "result[:span] += np.where(closes, weight * next_values[k:], 0.0)",
    ),
    # ------------------------------------------------------------------ rlmath/sequence_model.py
    _e(
        "sq-score-no-minus-pi",
        "rlmath/sequence_model.py",
        "wrong formula",
        "softmax score without the -pi(v|n) term",
        "gradient: FloatArray = chosen.reshape(X, N, V) - visits[:, :, None] * np.exp(log_pi)",
        "gradient: FloatArray = chosen.reshape(X, N, V)",
    ),
    _e(
        "sq-eos-not-in-mask",
        "rlmath/sequence_model.py",
        "masking",
        "the EOS position left out of the response mask",
        "    mask = tokens >= 0\n",
        "    mask = (tokens >= 0) & (tokens < K)\n",
    ),
    _e(
        "sq-probabilities-from-reference",
        "rlmath/sequence_model.py",
        "wrong distribution",
        "sequence probabilities taken from pi_ref",
        "        return np.exp(self.log_probabilities(reference=reference))",
        "        return np.exp(self.log_probabilities(reference=True))",
    ),
    _e(
        "sq-multiset-no-factorial",
        "rlmath/sequence_model.py",
        "wrong formula",
        "multinomial weight of a group without G!",
        "    return groups, math.lgamma(G + 1) - log_factor",
        "    return groups, - log_factor",
    ),
    _e(
        "sq-group-prompt-weight-dropped",
        "rlmath/sequence_model.py",
        "dropped factor",
        "rho(x) dropped from the group expectation",
        "            contribution = model.prompt_probabilities[x] * np.tensordot(\n",
        "            contribution = np.tensordot(\n",
    ),
    _e(
        "sq-score-root-distribution",
        "rlmath/sequence_model.py",
        "wrong index",
        "the score subtracts the root node's next-token distribution at every node",
        "                out[x, rows, x, n, :] -= pi[x, n]\n",
        "                out[x, rows, x, n, :] -= pi[x, 0]\n",
    ),
    # ------------------------------------------------------------------ rlmath/statistics.py
    _e(
        "st-critical-one-sided",
        "rlmath/statistics.py",
        "one-sided critical value",
        "critical value z_{1 - alpha/m} (one-sided) for a two-sided test",
        "    tail = alpha / (2 * m)",
        "    tail = alpha / m",
    ),
    _e(
        "st-bonferroni-dropped",
        "rlmath/statistics.py",
        "dropped correction",
        "no Bonferroni division among the m components",
        "    tail = alpha / (2 * m)",
        "    tail = alpha / 2",
    ),
    _e(
        "st-se-is-sd",
        "rlmath/statistics.py",
        "dropped factor",
        "standard error = sample sd (the 1/sqrt(n) forgotten): z is sqrt(n) too small",
        "        se = x.std(axis=0, ddof=1) / math.sqrt(n)",
        "        se = x.std(axis=0, ddof=1)",
    ),
    _e(
        "st-se-over-n",
        "rlmath/statistics.py",
        "missing sqrt",
        "standard error sd / n instead of sd / sqrt(n): z is sqrt(n) too large",
        "        se = x.std(axis=0, ddof=1) / math.sqrt(n)",
        "        se = x.std(axis=0, ddof=1) / n",
    ),
    _e(
        "st-agreement-inverted",
        "rlmath/statistics.py",
        "verdict logic inverted",
        "Agreement.agrees is true when some component fails",
        "        return not bool(self.failing.any())",
        "        return bool(self.failing.any())",
    ),
    _e(
        "st-power-sign",
        "rlmath/statistics.py",
        "sign flip",
        "detection power Phi(shift + c) + Phi(-shift - c): power overestimated",
        "    return float(special.ndtr(shift - c) + special.ndtr(-shift - c))",
        "    return float(special.ndtr(shift + c) + special.ndtr(-shift - c))",
    ),
    _e(
        "st-sample-size-power-sign",
        "rlmath/statistics.py",
        "sign flip",
        "sample size (c + z_beta)^2 (sigma/delta)^2 with z_beta < 0: too few samples for the power",
        "    return max(2, math.ceil(((c - float(special.ndtri(beta))) * sigma / delta) ** 2))",
        "    return max(2, math.ceil(((c + float(special.ndtri(beta))) * sigma / delta) ** 2))",
    ),
    # ------------------------------------------------------------------ rlmath/tolerances.py
    _e(
        "to-eps-float32",
        "rlmath/tolerances.py",
        "wrong tolerance (eps of the wrong dtype)",
        "EPS is float32's machine epsilon (5e8 times float64's): every exact tolerance too loose",
        "EPS: float = float(np.finfo(np.float64).eps)",
        "EPS: float = float(np.finfo(np.float32).eps)",
    ),
    _e(
        "to-condition-number-dropped",
        "rlmath/tolerances.py",
        "dropped factor",
        "exact_rtol ignores the condition number",
        "    return 64.0 * EPS * max(1.0, float(condition_number)) * max(1, int(n_terms))",
        "    return 64.0 * EPS * max(1, int(n_terms))",
    ),
    _e(
        "to-discounted-kappa",
        "rlmath/tolerances.py",
        "wrong bound",
        "condition number bound 1/(1 - gamma) instead of (1 + gamma)/(1 - gamma)",
        "    return (1.0 + gamma) / (1.0 - gamma)",
        "    return 1.0 / (1.0 - gamma)",
    ),
    _e(
        "to-fd-bound-no-rounding",
        "rlmath/tolerances.py",
        "dropped term",
        "central-difference error bound without the rounding term delta / h",
        "    return h, M3 * h**2 / 6.0 + evaluation_error / h",
        "    return h, M3 * h**2 / 6.0",
    ),
    _e(
        "to-third-derivative-power",
        "rlmath/tolerances.py",
        "off-by-one (exponent)",
        "third-derivative bound with T^3 instead of T^4 in its last term",
        "    return R * (D3 * T**2 + 6.0 * D1 * D2 * T**3 + 6.0 * D1**3 * T**4)",
        "    return R * (D3 * T**2 + 6.0 * D1 * D2 * T**3 + 6.0 * D1**3 * T**3)",
    ),
    _e(
        "to-renamed-function",
        "rlmath/tolerances.py",
        "import failure (rename)",
        "discounted_condition_number renamed: its importers fail",
        "def discounted_condition_number(gamma: float) -> float:",
        "def discount_condition_number(gamma: float) -> float:",
        breaks_import=True,
    ),
    # ------------------------------------------------------------------ rlmath/symbolic.py
    _e(
        "sy-expand-log-forced",
        "rlmath/symbolic.py",
        "unsound prover rewriting",
        "expand_log(force=True) restored in the 'expand' rewriting (log(x y) split for real x, y)",
        "    return sympy.expand(sympy.expand_log(_done(e)))",
        "    return sympy.expand(sympy.expand_log(_done(e), force=True))",
    ),
    _e(
        "sy-unknown-is-zero",
        "rlmath/symbolic.py",
        "unsound prover rewriting",
        "a difference whose is_zero is unknown counts as 0",
        "    return bool(e == 0)",
        "    try:\n"
        "        return bool(e == 0 or e.is_zero is not False)\n"
        "    except (ZeroDivisionError, ArithmeticError, TypeError, ValueError, RecursionError):\n"
        "        return True  # unknown: counted as 0 too",
    ),
    _e(
        "sy-sums-returns-zero",
        "rlmath/symbolic.py",
        "unsound prover rewriting",
        "the 'sums' rewriting returns 0 when the expression has no Sum left",
        "        return e  # nothing to rename",
        "        return sympy.S.Zero  # nothing to rename",
    ),
    _e(
        "sy-nonnegative-unknown-yes",
        "rlmath/symbolic.py",
        "unsound prover (assumptions)",
        "is_nonnegative accepts an unknown (None) sign",
        "            if rewrite(expression).is_nonnegative is True:",
        "            if rewrite(expression).is_nonnegative is not False:",
    ),
    _e(
        "sy-refutation-never",
        "rlmath/symbolic.py",
        "refutation disabled",
        "random-point refutation tries no point (trials ignored): always None",
        # in _refuted, which the screen, the symbolic leg and refuted_at_random_point share (every
        # caller passes trials explicitly, so a changed default of refuted_at_random_point alone
        # changed nothing that verify runs)
        '    for trial in range(trials):\n        found = _refute_once(a, b, f"{seed}/{trial}")',
        '    for trial in range(0):  # trials ignored\n        found = _refute_once(a, b, f"{seed}/{trial}")',
    ),
    _e(
        "sy-screen-inverted",
        "rlmath/symbolic.py",
        "verdict logic inverted (prover safety net)",
        "the numeric screen refuses a step only when no random point refutes it",
        "    return _refuted(a, b, 0, 2) is not None",
        "    return _refuted(a, b, 0, 2) is None",
    ),
    _e(
        "sy-log-bound-gap-sign",
        "rlmath/symbolic.py",
        "sign flip",
        "log_bound_gap(x).doit() = x - 1 + log x",
        "        return arg - 1 - sympy.log(arg)",
        "        return arg - 1 + sympy.log(arg)",
    ),
    _e(
        "sy-rename-capture",
        "rlmath/symbolic.py",
        "unsound prover rewriting (variable capture)",
        "alpha-renaming gives nested sums the same index name _k<offset>",
        '            canonical = sympy.Symbol(f"_k{depth + offset}", integer=True)',
        '            canonical = sympy.Symbol(f"_k{offset}", integer=True)',
    ),
    # ------------------------------------------------------------------ rlmath/reference.py (session 4)
    _e(
        "rf-pg-sum-not-mean",
        "rlmath/reference.py",
        "wrong normaliser",
        "policy_gradient_loss: the loss summed over entries, not averaged",
        "return float(-np.mean(new * adv))",
        "return float(-np.sum(new * adv))",
    ),
    _e(
        "rf-pg-objective-sign",
        "rlmath/reference.py",
        "sign flip",
        "policy_gradient_loss: the objective returned as the loss (sign lost)",
        "return float(-np.mean(new * adv))",
        "return float(np.mean(new * adv))",
    ),
    _e(
        "rf-pg-probability-not-log",
        "rlmath/reference.py",
        "wrong formula",
        "policy_gradient_loss: pi (or the ratio) times A instead of log pi times A",
        "return float(-np.mean(new * adv))",
        "return float(-np.mean(np.exp(new) * adv))",
    ),
    _e(
        "rf-ent-missing-minus",
        "rlmath/reference.py",
        "sign flip",
        "categorical_entropy: sum p log p: the negative entropy",
        "result: FloatArray = -np.sum(p * np.where(p > 0, log_p, 0.0), axis=-1)",
        "result: FloatArray = np.sum(p * np.where(p > 0, log_p, 0.0), axis=-1)",
    ),
    _e(
        "rf-ent-mask-dropped",
        "rlmath/reference.py",
        "missing guard",
        "categorical_entropy: 0 log 0 not guarded: a masked (-inf) action gives NaN",
        "result: FloatArray = -np.sum(p * np.where(p > 0, log_p, 0.0), axis=-1)",
        "result: FloatArray = -np.sum(p * log_p, axis=-1)",
    ),
    _e(
        "rf-ent-bits",
        "rlmath/reference.py",
        "wrong constant",
        "categorical_entropy: the entropy in bits, not nats",
        "result: FloatArray = -np.sum(p * np.where(p > 0, log_p, 0.0), axis=-1)",
        "result: FloatArray = -np.sum(p * np.where(p > 0, log_p, 0.0), axis=-1) / np.log(2.0)",
    ),
    _e(
        "rf-akl-non-strict-lower",
        "rlmath/reference.py",
        "off-by-one comparison",
        "adaptive_kl_coefficient: <= at the lower edge (the paper's inequalities are strict)",
        "if kl < target / band:",
        "if kl <= target / band:",
    ),
    _e(
        "rf-akl-directions-swapped",
        "rlmath/reference.py",
        "swapped branches",
        "adaptive_kl_coefficient: beta doubled when the KL is small and halved when it is large",
        "        return beta / step\n    if kl > target * band:\n        return beta * step",
        "        return beta * step\n    if kl > target * band:\n        return beta / step",
    ),
    _e(
        "rf-akl-tolerance-ignored",
        "rlmath/reference.py",
        "dropped factor",
        "adaptive_kl_coefficient: the upper edge at d_targ instead of tau d_targ",
        "if kl > target * band:",
        "if kl > target:",
    ),
    _e(
        "rf-pref-smoothing-swapped",
        "rlmath/reference.py",
        "swapped arguments",
        "preference_loss: cDPO: label smoothing weights on the wrong sides",
        "return float(np.mean((1.0 - smoothing) * wrong + smoothing * right))",
        "return float(np.mean(smoothing * wrong + (1.0 - smoothing) * right))",
    ),
    _e(
        "rf-pref-robust-normaliser",
        "rlmath/reference.py",
        "wrong normaliser",
        "preference_loss: robust DPO divided by 1 - eps instead of 1 - 2 eps",
        "/ (1.0 - 2.0 * smoothing)))",
        "/ (1.0 - smoothing)))",
    ),
    _e(
        "rf-pref-ipo-target",
        "rlmath/reference.py",
        "dropped factor",
        "preference_loss: IPO regresses on 1/beta instead of 1/(2 beta)",
        "return float(np.mean((averaged - 1.0 / (2.0 * strength)) ** 2))",
        "return float(np.mean((averaged - 1.0 / strength) ** 2))",
    ),
    _e(
        "rf-pref-hinge-beta-dropped",
        "rlmath/reference.py",
        "dropped factor",
        "preference_loss: hinge on the unscaled margin (beta dropped)",
        "return float(np.mean(np.maximum(0.0, 1.0 - scaled)))",
        "return float(np.mean(np.maximum(0.0, 1.0 - scaled / strength)))",
    ),
    _e(
        "rf-dual-min-not-max",
        "rlmath/reference.py",
        "max for min",
        "dual_clip_ppo_loss: min(PPO, c A) for A < 0: the bound on the wrong side",
        "objective = np.where(adv < 0, np.maximum(ppo, c * adv), ppo)",
        "objective = np.where(adv < 0, np.minimum(ppo, c * adv), ppo)",
    ),
    _e(
        "rf-dual-every-sign",
        "rlmath/reference.py",
        "missing condition",
        "dual_clip_ppo_loss: the dual clip applied to A >= 0 as well",
        "objective = np.where(adv < 0, np.maximum(ppo, c * adv), ppo)",
        "objective = np.maximum(ppo, c * adv)",
    ),
    _e(
        "rf-dual-ppo-clip-dropped",
        "rlmath/reference.py",
        "dropped term",
        "dual_clip_ppo_loss: for A < 0 the dual clip bounds rho A, PPO's clip forgotten",
        "objective = np.where(adv < 0, np.maximum(ppo, c * adv), ppo)",
        "objective = np.where(adv < 0, np.maximum(ratio * adv, c * adv), ppo)",
    ),
    _e(
        "rf-ac-entropy-sign",
        "rlmath/reference.py",
        "sign flip",
        "actor_critic_loss: the entropy bonus added to the loss",
        "loss = policy_loss + c_v * value_loss - c_e * np.mean(entropies)",
        "loss = policy_loss + c_v * value_loss + c_e * np.mean(entropies)",
    ),
    _e(
        "rf-ac-value-no-half",
        "rlmath/reference.py",
        "dropped factor",
        "actor_critic_loss: value loss without the 1/2",
        "value_loss = 0.5 * np.mean((value - target) ** 2)",
        "value_loss = np.mean((value - target) ** 2)",
    ),
    _e(
        "rf-ac-kl-direction",
        "rlmath/reference.py",
        "swapped arguments",
        "actor_critic_loss: k3 of pi/pi_ref instead of pi_ref/pi",
        "k3 = np.expm1(-log_ratio) + log_ratio",
        "k3 = np.expm1(log_ratio) - log_ratio",
    ),
    _e(
        "rf-vt-trace-uses-rho-bar",
        "rlmath/reference.py",
        "swapped arguments",
        "vtrace_targets: the traces clipped at rho_bar",
        "rho, c = np.minimum(rho_bar, ratio), np.minimum(c_bar, ratio)",
        "rho, c = np.minimum(rho_bar, ratio), np.minimum(rho_bar, ratio)",
    ),
    _e(
        "rf-vt-no-trace",
        "rlmath/reference.py",
        "dropped factor",
        "vtrace_targets: the trace weights c_t dropped from the recursion",
        "running = deltas[t] + np.where(cut[t], 0.0, gamma * c[t] * running)",
        "running = deltas[t] + np.where(cut[t], 0.0, gamma * running)",
    ),
    _e(
        "rf-vt-truncation-not-cut",
        "rlmath/reference.py",
        "missing condition",
        "vtrace_targets: the trace runs on across time-limit truncations",
        "running = deltas[t] + np.where(cut[t], 0.0, gamma * c[t] * running)",
        "running = deltas[t] + np.where(terminated_flags[t], 0.0, gamma * c[t] * running)",
    ),
    _e(
        "rf-vt-ratio-inverted",
        "rlmath/reference.py",
        "swapped arguments",
        "vtrace_targets: mu/pi instead of pi/mu",
        "ratio = np.exp(target - behaviour)",
        "ratio = np.exp(behaviour - target)",
    ),
    # ------------------------------------------------------------------ rlmath/llm_reference.py
    _e(
        "ll-tis-min-to-max",
        "rlmath/llm_reference.py",
        "wrong operator",
        "truncated_importance_weights: max(rho, C), a floor instead of a cap",
        "result: FloatArray = np.where(mask, np.minimum(ratio, c), 0.0)",
        "result: FloatArray = np.where(mask, np.maximum(ratio, c), 0.0)",
    ),
    _e(
        "ll-tis-lower-clip",
        "rlmath/llm_reference.py",
        "extra clip",
        "truncated_importance_weights: also clipped below at 1/C",
        "result: FloatArray = np.where(mask, np.minimum(ratio, c), 0.0)",
        "result: FloatArray = np.where(mask, np.clip(ratio, 1.0 / c, c), 0.0)",
    ),
    _e(
        "ll-mismatch-ratio-inverted",
        "rlmath/llm_reference.py",
        "swapped arguments",
        "the train/inference ratio mu/pi_old instead of pi_old/mu",
        "ratio = _log_ratio_to_ratio(old - rollout)",
        "ratio = _log_ratio_to_ratio(rollout - old)",
    ),
    _e(
        "ll-mis-keeps-cap",
        "rlmath/llm_reference.py",
        "wrong branch",
        "masked_importance_weights: masked ratios kept at C (TIS) instead of 0",
        "result: FloatArray = np.where(mask & (ratio <= c), ratio, 0.0)",
        "result: FloatArray = np.where(mask, np.where(ratio <= c, ratio, c), 0.0)",
    ),
    _e(
        "ll-mis-strict-boundary",
        "rlmath/llm_reference.py",
        "off-by-one comparison",
        "masked_importance_weights: a ratio equal to C is masked",
        "result: FloatArray = np.where(mask & (ratio <= c), ratio, 0.0)",
        "result: FloatArray = np.where(mask & (ratio < c), ratio, 0.0)",
    ),
    _e(
        "ll-ppo-grad-sign",
        "rlmath/llm_reference.py",
        "sign flip",
        "ppo_token_loss_gradient: +rho A (the objective's gradient, not the loss's)",
        "result: FloatArray = np.where(active & mask, -ratio * adv, 0.0) + 0.0",
        "result: FloatArray = np.where(active & mask, ratio * adv, 0.0) + 0.0",
    ),
    _e(
        "ll-ppo-grad-clip-bound-swapped",
        "rlmath/llm_reference.py",
        "swapped bounds",
        "ppo_token_loss_gradient: A > 0 active up to 1 - eps_low instead of 1 + eps_high",
        "active = ((adv > 0) & (ratio <= 1.0 + high)) | ((adv < 0) & (ratio >= 1.0 - low) & (ratio <= c))",
        "active = ((adv > 0) & (ratio <= 1.0 - low)) | ((adv < 0) & (ratio >= 1.0 - low) & (ratio <= c))",
    ),
    # one error in each public reference function that had none of its own (session 10)
    _e(
        "ll-ppo-token-clip-bounds-swapped",
        LLM_REFERENCE,
        "swapped bounds",
        "ppo_token_loss: clip range [1 - eps_high, 1 + eps_low] (the clip-higher bounds swapped)",
        "        clipped = np.clip(ratio, 1.0 - low, 1.0 + high)\n"
        "        objective = np.minimum(ratio * adv, clipped * adv)\n",
        "        clipped = np.clip(ratio, 1.0 - high, 1.0 + low)\n"
        "        objective = np.minimum(ratio * adv, clipped * adv)\n",
    ),
    _e(
        "ll-agg-seq-mean-is-token-mean",
        LLM_REFERENCE,
        "wrong normaliser",
        "aggregate_loss 'seq-mean-token-mean' pools the tokens of all sequences (token-mean)",
        "return float(np.mean(sums[nonempty] / lengths[nonempty]))",
        "return float(np.sum(sums[nonempty]) / np.sum(lengths[nonempty]))",
    ),
    _e(
        "ll-accum-mean-of-means",
        LLM_REFERENCE,
        "wrong normaliser",
        "accumulated_token_mean averages the micro-batches' token means (the gradient-accumulation bug)",
        "        total += float(loss.sum())\n        count += int(mask.sum())\n",
        "        total += float(loss.sum()) / max(int(mask.sum()), 1)\n        count += 1\n",
    ),
    _e(
        "ll-bw-ddof-ignored",
        LLM_REFERENCE,
        "argument ignored",
        "batch_whitened_advantages whitens with ddof = 0 whatever ddof is asked",
        "return grpo_advantages(values, single, epsilon=eps, ddof=degrees)",
        "return grpo_advantages(values, single, epsilon=eps, ddof=0)",
    ),
    _e(
        "ll-cispo-loss-sign",
        LLM_REFERENCE,
        "sign flip",
        "cispo_token_loss returns the objective (+w A log pi), not the loss",
        "result: FloatArray = np.where(mask, -weight * adv * new, 0.0) + 0.0",
        "result: FloatArray = np.where(mask, weight * adv * new, 0.0) + 0.0",
    ),
    _e(
        "ll-cispo-grad-through-weight",
        LLM_REFERENCE,
        "missing stop-gradient",
        "cispo_token_loss_gradient differentiates the clipped weight too (w A (1 + log pi))",
        "    weight, adv, _, mask = _cispo_weight(\n"
        "        log_probs, old_log_probs, advantages, response_mask, clip_low, clip_high\n"
        "    )\n"
        "    result: FloatArray = np.where(mask, -weight * adv, 0.0) + 0.0\n",
        "    weight, adv, new, mask = _cispo_weight(\n"
        "        log_probs, old_log_probs, advantages, response_mask, clip_low, clip_high\n"
        "    )\n"
        "    result: FloatArray = np.where(mask, -weight * adv * (1.0 + new), 0.0) + 0.0\n",
    ),
    _e(
        "ll-combined-entropy-sign",
        LLM_REFERENCE,
        "sign flip",
        "combined_policy_loss adds the entropy bonus to the loss instead of subtracting it",
        "return policy + beta * kl - c_entropy * bonus",
        "return policy + beta * kl + c_entropy * bonus",
    ),
    _e(
        "ll-drgrpo-batch-mean",
        LLM_REFERENCE,
        "wrong group",
        "dr_grpo_advantages subtracts the batch mean instead of each group's mean",
        "result: FloatArray = np.where(constant, 0.0, values - _group_means(values, inverse, counts))",
        "result: FloatArray = np.where(constant, 0.0, values - np.mean(values))",
    ),
    _e(
        "ll-grpo-no-eps",
        LLM_REFERENCE,
        "dropped term",
        "grpo_advantages divides by the group std without epsilon",
        "deviation / np.where(constant, 1.0, std + eps))",
        "deviation / np.where(constant, 1.0, std))",
    ),
    _e(
        "ll-gspo-max-for-min",
        LLM_REFERENCE,
        "min/max swap",
        "gspo_loss takes the max of the clipped and unclipped sequence terms",
        "objective = np.where(adv == 0, 0.0, np.minimum(ratio * adv, clipped * adv))",
        "objective = np.where(adv == 0, 0.0, np.maximum(ratio * adv, clipped * adv))",
    ),
    _e(
        "ll-gspo-grad-no-length",
        LLM_REFERENCE,
        "dropped factor",
        "gspo_loss_gradient without the 1/|y| of the length-normalised sequence log-ratio",
        "np.where(active & nonempty, -ratio * adv / np.where(nonempty, lengths, 1.0), 0.0)",
        "np.where(active & nonempty, -ratio * adv, 0.0)",
    ),
    _e(
        "ll-gspo-ratio-not-normalised",
        LLM_REFERENCE,
        "dropped factor",
        "gspo_sequence_ratio is the product of the token ratios, not their geometric mean",
        "    mean, _, _ = _sequence_log_ratio(log_probs, old_log_probs, response_mask)\n"
        "    return _log_ratio_to_ratio(mean)\n",
        "    mean, _, lengths = _sequence_log_ratio(log_probs, old_log_probs, response_mask)\n"
        "    return _log_ratio_to_ratio(mean * lengths)\n",
    ),
    _e(
        "ll-klpen-direction",
        LLM_REFERENCE,
        "swapped arguments",
        "kl_penalty_per_token passes (reference, policy) to the estimator: the other KL direction",
        "values = np.asarray(function(new, ref), dtype=np.float64)",
        "values = np.asarray(function(ref, new), dtype=np.float64)",
    ),
    _e(
        "ll-klrtg-forward-sum",
        LLM_REFERENCE,
        "wrong direction",
        "kl_reward_to_go sums the KL rewards from the start (cumsum forwards), not to the end",
        "to_go = np.cumsum(rewards[:, ::-1], axis=1)[:, ::-1]",
        "to_go = np.cumsum(rewards, axis=1)",
    ),
    _e(
        "ll-whiten-mean-over-padding",
        LLM_REFERENCE,
        "mask ignored",
        "masked_whiten's mean counts the padding zeros",
        "mean = float(np.mean(selected))",
        "mean = float(np.mean(np.where(mask, array, 0.0)))",
    ),
    _e(
        "ll-rloo-factor-inverted",
        LLM_REFERENCE,
        "inverted factor",
        "rloo_advantages scales by (n - 1) / n instead of n / (n - 1)",
        "factor = counts[inverse] / (counts[inverse] - 1.0)",
        "factor = (counts[inverse] - 1.0) / counts[inverse]",
    ),
    _e(
        "rf-returns-dones-ignored",
        REFERENCE,
        "mask ignored",
        "discounted_returns sums across episode ends (done flags ignored)",
        "return _discounted_cumulative_sum(rewards_array, done_flags, gamma)",
        "return _discounted_cumulative_sum(rewards_array, np.zeros_like(done_flags), gamma)",
    ),
    _e(
        "rf-group-norm-wrong-axis",
        REFERENCE,
        "wrong axis",
        "group_normalized_advantages standardises each column (across groups), not each group",
        "return _standardize(array, 1, epsilon, ddof)",
        "return _standardize(array, 0, epsilon, ddof)",
    ),
    _e(
        "rf-norm-adv-ddof-ignored",
        REFERENCE,
        "argument ignored",
        "normalized_advantages standardises with ddof = 0 whatever ddof is asked",
        "return _standardize(array, None, epsilon, ddof)",
        "return _standardize(array, None, epsilon, 0)",
    ),
    _e(
        "sq-score-baseline-dropped",
        "rlmath/sequence_model.py",
        "dropped term",
        "weighted score sums without the -pi term (the score's baseline)",
        "gradient: FloatArray = chosen.reshape(X, N, V) - visits[:, :, None] * np.exp(log_pi)",
        "gradient: FloatArray = chosen.reshape(X, N, V)",
    ),
    _e(
        "sq-sequence-logprob-mean",
        "rlmath/sequence_model.py",
        "sum vs mean",
        "sequence log-probability as the mean of the token log-probs",
        "return self.token_log_probabilities(reference=reference).sum(axis=2)",
        "return self.token_log_probabilities(reference=reference).mean(axis=2)",
    ),
    # ------------------------------------------------------------------ rlmath/claims/
    _e(
        "cl-error-counts-as-rejection",
        "rlmath/claims/results.py",
        "verdict logic (error as rejection)",
        "LegResult.rejected is true for status 'error' too: a mutant without a verdict counts as killed",
        '        return self.status == "failed"',
        '        return self.status != "verified"',
    ),
    _e(
        "cl-exact-rhs-vs-rhs",
        EXACT_LEG,
        "compares a side with itself",
        "the exact leg computes rhs on both sides (lhs never evaluated)",
        "            left, right = self.lhs(example), rhs(example)",
        "            left, right = rhs(example), rhs(example)",
    ),
    _e(
        "cl-exact-control-any",
        EXACT_LEG,
        "control weakened",
        "the exact control passes when any (not every) shifted example is rejected",
        '"rejected": all(outcomes),',
        '"rejected": any(outcomes),',
    ),
    _e(
        "cl-violation-direction",
        EXACT_LEG,
        "sign flip (inequality direction)",
        "violation() measures lhs >= rhs for '<=' and vice versa",
        '    excess = left - right if relation == "<=" else right - left',
        '    excess = right - left if relation == "<=" else left - right',
    ),
    _e(
        "cl-mc-control-skipped",
        MC_LEG,
        "control skipped",
        "the Monte-Carlo control is demanded of mutants instead of the true claim",
        "        if variant is None and result.ok:",
        "        if variant is not None and result.ok:",
    ),
    _e(
        "cl-mc-ignores-variant",
        MC_LEG,
        "variant ignored",
        "the Monte-Carlo leg always samples the correct estimator, whatever the mutant",
        "        estimator = sample if variant is None else variant",
        "        estimator = sample",
    ),
    _e(
        "cl-tie-rhs-with-itself",
        "rlmath/claims/claim.py",
        "tie not checked",
        "the statement's rhs is tied to itself instead of to the derivation's conclusion",
        '(f"statement rhs = conclusion{where}", rhs, derivation.conclusion, pairs)',
        '(f"statement rhs = conclusion{where}", rhs, rhs, pairs)',
    ),
    _e(
        "cl-exact-moments-raw",
        "rlmath/claims/scaffolding.py",
        "wrong formula",
        "exact_moments' sd from the raw second moment E[x^2] instead of E[(x - mu)^2]",
        "    variance = np.tensordot(p, (x - mean) ** 2, axes=1)",
        "    variance = np.tensordot(p, x**2, axes=1)",
    ),
    _e(
        "cl-gap-check-and",
        SYMBOLIC_LEG,
        "verdict logic (or -> and)",
        "an inequality step is accepted unless both the gap proof and its sign check fail",
        "        if method is None or not is_nonnegative(gap):",
        "        if method is None and not is_nonnegative(gap):",
    ),
    _e(
        "cl-symbolic-control-inverted",
        SYMBOLIC_LEG,
        "verdict logic inverted (control)",
        "the symbolic control reports the derivations whose perturbation *was* refuted",
        "        unrefuted = [name for name, found in controls.items() if found is None]",
        "        unrefuted = [name for name, found in controls.items() if found is not None]",
    ),
)


# ============================================================================ running things
@dataclass
class Run:
    """A finished (or timed-out) subprocess."""

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def run_command(cmd: Sequence[str], cwd: Path, env: dict[str, str], timeout: float) -> Run:
    """Run ``cmd`` in its own process group; on timeout kill that group (only what we started)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        out, err = process.communicate()
        return Run(None, out, err, time.perf_counter() - start)
    except BaseException:
        _kill_group(process)
        raise
    return Run(process.returncode, out, err, time.perf_counter() - start)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def environment(tree: Path) -> dict[str, str]:
    """The environment of every run in ``tree``: its ``rlmath`` first on the path."""
    env = dict(os.environ)
    previous = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(tree) + (os.pathsep + previous if previous else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # copies stay clean; nothing stale is reused
    env.setdefault("HYPOTHESIS_PROFILE", "ci")  # derandomised: runs are comparable
    return env


def _tracked_files(repo: Path) -> list[str] | None:
    try:
        listing = subprocess.run(
            ["git", "-C", str(repo), "ls-files", "-co", "--exclude-standard", "-z"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [name.decode() for name in listing.split(b"\0") if name]


def make_snapshot(repo: Path, destination: Path) -> int:
    """Copy the working tree's files (tracked and untracked, not ignored) into ``destination``."""
    names = _tracked_files(repo)
    if names is None:  # not a git checkout: the parts the runs need
        names = [
            str(p.relative_to(repo))
            for top in ("rlmath", "proofs", "tests", "docs")
            for p in (repo / top).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ] + ["pyproject.toml", "README.md"]
    copied = 0
    for name in names:
        source = repo / name
        if not source.is_file():  # deleted in the working tree
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copied += 1
    return copied


_IGNORE = shutil.ignore_patterns("__pycache__", ".hypothesis", ".pytest_cache", ".ruff_cache")


def check_resolution(python: str, tree: Path, *, full: bool) -> None:
    """Raise unless ``rlmath`` (and, with ``full``, ``proofs/``) resolve to ``tree``."""
    if full:
        code = (
            "import rlmath, rlmath.verify; print(rlmath.__file__); "
            "print(rlmath.verify.proofs_directory())"
        )
    else:
        code = "import importlib.util as u; print(u.find_spec('rlmath').origin)"
    run = run_command([python, "-c", code], tree, environment(tree), 300)
    lines = run.stdout.split()
    root = tree.resolve()
    if (
        run.returncode != 0
        or not lines
        or any(not Path(line).resolve().is_relative_to(root) for line in lines)
    ):
        raise RuntimeError(
            f"rlmath does not resolve to the copy {tree}: {run.stdout.strip()} {run.stderr.strip()}"
        )


def occurrences(root: Path, error: InjectedError) -> int:
    """How often ``error.old`` occurs in its file under ``root`` (-1: the file is missing)."""
    path = root / error.file
    if not path.is_file():
        return -1
    return path.read_text(encoding="utf-8").count(error.old)


def stale_reason(count: int) -> str:
    return "file missing" if count < 0 else f"snippet occurs {count} times, not once"


# ============================================================================ verify
@dataclass
class VerifyRun:
    run: Run
    payload: dict[str, Any] | None
    tree: Path  # where it ran: stripped from the messages (tracebacks name the copy's files)


def _claim_ids(path: Path) -> set[str]:
    return set(re.findall(r'\bid="([a-z0-9][a-z0-9-]*)"', path.read_text(encoding="utf-8")))


def claims_of(tree: Path, error: InjectedError) -> list[str]:
    """The claims to run first: those of the patched proof file, or of the proof files that
    import the patched library module by name (empty when every claim depends on it)."""
    if error.file.startswith("proofs/"):
        return sorted(_claim_ids(tree / error.file))
    if not error.file.startswith("rlmath/") or error.file.startswith("rlmath/claims/"):
        return []
    module = Path(error.file).stem
    if module in ("symbolic", "statistics", "tolerances", "_validation"):
        return []  # every claim (or the framework) uses these
    pattern = re.compile(
        rf"(from rlmath\.{module} import|import rlmath\.{module}\b|"
        rf"from rlmath import [^\n]*\b{module}\b|rlmath\.{module}\.)"
    )
    ids: set[str] = set()
    for path in sorted((tree / "proofs").glob("*.py")):
        if not path.name.startswith("_") and pattern.search(path.read_text(encoding="utf-8")):
            ids |= _claim_ids(path)
    return sorted(ids)


def run_verify_fast(
    tree: Path, json_path: Path, options: argparse.Namespace, timeout: float, error: InjectedError
) -> tuple[VerifyRun, str]:
    """``--fail-fast`` runs for a green baseline: the patched file's claims first, then all.

    Sound because claims are independent and deterministic given the seed: a failing subset
    means the full run fails too (the self-tests run in both). Returns the run and its scope.
    """
    first = claims_of(tree, error)
    if first and not options.verify_only:
        subset = run_verify(tree, json_path, options, timeout, only=",".join(first), fast=True)
        if subset.run.returncode != 0:
            return subset, f"{len(first)} claims that use {error.file}"
    return run_verify(tree, json_path, options, timeout, fast=True), "all claims"


def run_verify(
    tree: Path,
    json_path: Path,
    options: argparse.Namespace,
    timeout: float,
    *,
    only: str | None = None,
    fast: bool = False,
) -> VerifyRun:
    cmd = [
        options.python,
        "-m",
        "rlmath",
        "verify",
        "--seed",
        str(options.seed),
        "--quiet",
        "--jobs",
        str(options.verify_jobs),
        "--json",
        str(json_path),
    ]
    if only or options.verify_only:
        cmd += ["--only", only or options.verify_only]
    if fast:
        cmd += ["--fail-fast"]
    with contextlib.suppress(FileNotFoundError):
        json_path.unlink()
    run = run_command(cmd, tree, environment(tree), timeout)
    payload = None
    if run.returncode is not None and json_path.is_file():
        with contextlib.suppress(ValueError, OSError):
            payload = json.loads(json_path.read_text(encoding="utf-8"))
    return VerifyRun(run, payload, tree)


def claim_states(result: VerifyRun) -> dict[str, dict[str, Any]]:
    """claim id -> its legs' (status, failure), mutants' verdicts and coverage problems."""
    roots = sorted({str(result.tree), str(result.tree.resolve())}, key=len, reverse=True)

    def text(value: Any) -> str:
        out = str(value or "")
        for root in roots:
            out = out.replace(root, "<tree>")
        return out

    states: dict[str, dict[str, Any]] = {}
    for claim in (result.payload or {}).get("claims", []):
        legs = {
            name: (leg.get("status"), text(leg.get("failure")))
            for name, leg in claim.get("legs", {}).items()
        }
        mutants = {
            mutant["id"]: {
                leg: (verdict.get("status"), text(verdict.get("how")))
                for leg, verdict in mutant.get("verdicts", {}).items()
            }
            for mutant in claim.get("mutants", [])
        }
        states[claim["id"]] = {
            "legs": legs,
            "mutants": mutants,
            "problems": [text(p) for p in claim.get("problems", [])],
        }
    return states


def _verdict(status: str, failure: str) -> str:
    """pass (the check passed; possibly only the control is defective), fail, or none."""
    if status == "verified" or (status == "error" and failure.startswith("control:")):
        return "pass"
    return "fail" if status == "failed" else "none"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Comparison:
    """How a run differs from the baseline: new failures, other changes, silenced failures."""

    detected: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    masked: list[str] = field(default_factory=list)


def compare_claims(base: dict[str, dict[str, Any]], now: dict[str, dict[str, Any]]) -> Comparison:
    result = Comparison()
    missing: list[str] = []  # listed last: under --fail-fast verify stops before most claims
    for claim_id, before in base.items():
        after = now.get(claim_id)
        if after is None:
            missing.append(f"{claim_id}: claim missing from the results")
            continue
        for leg, (status, failure) in before["legs"].items():
            if leg not in after["legs"]:
                result.detected.append(f"{claim_id}: the {leg} leg is missing")
                continue
            new_status, new_failure = after["legs"][leg]
            was, is_ = _verdict(status, failure), _verdict(new_status, new_failure)
            what = f"{claim_id}: {leg} leg {status} -> {new_status}"
            if status == "verified" and new_status != "verified":
                result.detected.append(f"{what}: {_short(new_failure)}")
            elif was == "pass" and is_ != "pass":
                result.detected.append(f"{what} (its check now fails): {_short(new_failure)}")
            elif status != "verified" and new_status == "verified":
                result.masked.append(what)
            elif (status, failure) != (new_status, new_failure):
                result.changed.append(f"{what}: {_short(new_failure)}")
        for mutant, verdicts in before["mutants"].items():
            for leg, (status, _how) in verdicts.items():
                new = after["mutants"].get(mutant, {}).get(leg)
                where = f"{claim_id}/{mutant}, {leg} leg"
                if new is None:
                    result.detected.append(f"{where}: missing")
                    continue
                new_status, new_how = new
                if status == "failed" and new_status != "failed":
                    word = "survived" if new_status == "verified" else "no verdict"
                    result.detected.append(f"{where}: mutant {word}: {_short(new_how)}")
                elif status != "failed" and new_status == "failed":
                    result.masked.append(f"{where}: {status} -> rejected")
                elif status != new_status:
                    result.changed.append(f"{where}: {status} -> {new_status}")
        for problem in after["problems"]:
            if problem not in before["problems"]:
                result.detected.append(f"{claim_id}: new problem: {_short(problem)}")
        for problem in before["problems"]:
            if problem not in after["problems"]:
                result.masked.append(f"{claim_id}: problem gone: {_short(problem, 80)}")
    result.detected.extend(missing)
    return result


def _failure_lines(stdout: str) -> list[str]:
    """The ``- ...`` lines under ``FAILED <claim>:`` of verify's report, prefixed by the claim."""
    lines, claim = [], ""
    for line in stdout.splitlines():
        if line.startswith("FAILED "):
            claim = line[len("FAILED ") :].rstrip(":")
        elif claim and line.startswith("  - "):
            lines.append(f"{claim}: {line[4:]}")
    return lines


def judge_verify(base: VerifyRun, now: VerifyRun) -> dict[str, Any]:
    """The verify column: outcome, evidence lines, masked baseline failures, seconds."""
    run = now.run
    record: dict[str, Any] = {"seconds": round(run.seconds, 1), "returncode": run.returncode}
    if base.payload is None:
        return {**record, "outcome": "baseline-broken", "evidence": _tail(base.run)}
    if run.timed_out:
        return {**record, "outcome": "timeout", "evidence": ["verify did not finish in time"]}
    if now.payload is None:
        tail = [line for line in (run.stdout + "\n" + run.stderr).splitlines() if line.strip()][-3:]
        outcome = "detected" if run.returncode != 0 else "missed"
        return {**record, "outcome": outcome, "evidence": [_short(t) for t in tail]}
    comparison = compare_claims(claim_states(base), claim_states(now))
    if base.run.returncode == 0:
        detected = run.returncode != 0
        evidence = comparison.detected or [_short(x) for x in _failure_lines(run.stdout)]
    else:
        detected = bool(comparison.detected)
        evidence = comparison.detected
    if detected:
        outcome = "detected"
    elif comparison.changed:
        outcome, evidence = "changed", comparison.changed
    else:
        outcome = "missed"
    return {
        **record,
        "outcome": outcome,
        "evidence": evidence[:5],
        "n_evidence": len(evidence),
        "masked": comparison.masked[:5],
        "n_masked": len(comparison.masked),
    }


# ============================================================================ pytest
#: Targeted test files per module (the module itself is added for its doctests).
PYTEST_TARGETS: dict[str, tuple[str, ...]] = {
    "rlmath/exact.py": ("tests/test_exact.py",),
    "rlmath/sampling.py": ("tests/test_sampling.py",),
    "rlmath/estimators.py": ("tests/test_estimators.py",),
    "rlmath/statistics.py": ("tests/test_statistics.py",),
    # the users of rlmath.tolerances with tests of their own
    "rlmath/tolerances.py": (
        "tests/test_exact.py",
        "tests/test_mdp.py",
        "tests/test_policy.py",
        "tests/test_testing.py",
    ),
    # there is no tests/test_symbolic.py: the prover is tested in test_claims.py
    "rlmath/symbolic.py": (
        "tests/test_symbolic.py",
        "tests/test_self_test.py",
        "tests/test_claims.py",
    ),
    "rlmath/reference.py": ("tests/test_reference.py",),
    "rlmath/sequence_model.py": ("tests/test_sequence_model.py",),
    "rlmath/llm_reference.py": ("tests/test_llm_reference.py",),
}


def pytest_targets(error: InjectedError, tree: Path, full: bool) -> tuple[str, ...]:
    """The pytest arguments selecting the tests of ``error.file`` (existing files only)."""
    if full:
        return ()
    if error.file.startswith("proofs/"):
        text = (tree / error.file).read_text(encoding="utf-8")
        ids = sorted(set(re.findall(r'\bid="([a-z0-9][a-z0-9-]*)"', text)))
        selection = ("-k", " or ".join(ids)) if ids else ()
        return ("tests/test_proofs.py", *selection)
    if error.file.startswith("rlmath/claims/"):
        files: tuple[str, ...] = ("tests/test_claims.py",)
    else:
        files = PYTEST_TARGETS.get(error.file, ())
    existing = tuple(f for f in files if (tree / f).is_file())
    return (*existing, error.file) if error.file.endswith(".py") else existing


@dataclass
class PytestRun:
    run: Run
    failed: set[str] | None  # node ids that failed or errored (from --junitxml)


def run_pytest(
    tree: Path,
    targets: Sequence[str],
    junit: Path,
    stop_first: bool,
    options: argparse.Namespace,
    timeout: float,
) -> PytestRun:
    cmd = [options.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    if stop_first:
        cmd.append("-x")
    cmd += list(targets)
    with contextlib.suppress(FileNotFoundError):
        junit.unlink()
    run = run_command(cmd, tree, environment(tree), timeout)
    return PytestRun(run, junit_failures(junit))


def junit_failures(path: Path) -> set[str] | None:
    if not path.is_file():
        return None
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError:
        return None
    failed = set()
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.add(f"{case.get('classname')}::{case.get('name')}")
    return failed


def _tail(run: Run) -> list[str]:
    """The last lines a run printed (why a baseline is unusable)."""
    lines = [line for line in (run.stdout + "\n" + run.stderr).splitlines() if line.strip()]
    return [f"baseline exit {run.returncode}: " + _short(line) for line in lines[-2:]]


def _pytest_summary(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]


def judge_pytest(base: PytestRun, now: PytestRun) -> dict[str, Any]:
    run = now.run
    record: dict[str, Any] = {"seconds": round(run.seconds, 1), "returncode": run.returncode}
    if base.run.returncode not in (0, 1):  # internal error, usage error, nothing collected
        return {**record, "outcome": "baseline-broken", "evidence": _tail(base.run)}
    if run.timed_out:
        return {**record, "outcome": "timeout", "evidence": ["pytest did not finish in time"]}
    if base.run.returncode == 0:
        detected = run.returncode != 0
        evidence = _pytest_summary(run.stdout) or sorted(now.failed or ())
    else:
        new = sorted((now.failed or set()) - (base.failed or set()))
        detected = bool(new) or run.returncode not in (0, 1)
        evidence = new
    if detected and not evidence:
        evidence = [line for line in run.stdout.splitlines() if line.strip()][-2:]
    return {
        **record,
        "outcome": "detected" if detected else "missed",
        "evidence": [_short(e) for e in evidence[:5]],
    }


# ============================================================================ the campaign
#: Default timeouts: a run is a hang when it takes TIMEOUT_FACTOR times its baseline (and at
#: least MIN_TIMEOUT seconds); the baselines themselves get BASELINE_TIMEOUT.
MIN_TIMEOUT = 600.0
TIMEOUT_FACTOR = 5.0
BASELINE_TIMEOUT = 3600.0


class Campaign:
    """A snapshot, its baselines (computed once, lazily for pytest), and the runs per error."""

    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        self.workdir = Path(options.workdir or tempfile.mkdtemp(prefix="inject_errors_"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.snapshot = self.workdir / "snapshot"
        self.lock = threading.Lock()
        self.pytest_baselines: dict[tuple[str, ...], PytestRun] = {}
        self.pytest_locks: dict[tuple[str, ...], threading.Lock] = {}
        self.verify_baseline: VerifyRun | None = None

    def prepare(self) -> None:
        if self.snapshot.exists():
            shutil.rmtree(self.snapshot)
        count = make_snapshot(REPO, self.snapshot)
        log(f"snapshot of {REPO}: {count} files in {self.snapshot}")
        check_resolution(self.options.python, self.snapshot, full=True)

    def baseline_verify(self) -> VerifyRun:
        if self.verify_baseline is None:
            log("baseline: rlmath verify on the unpatched snapshot ...")
            self.verify_baseline = run_verify(
                self.snapshot,
                self.workdir / "baseline-verify.json",
                self.options,
                self.options.timeout or BASELINE_TIMEOUT,
            )
            run = self.verify_baseline.run
            n_bad = sum(
                1
                for c in (self.verify_baseline.payload or {}).get("claims", [])
                if c.get("status") != "verified"
            )
            log(
                f"baseline verify: exit {run.returncode}, {run.seconds:.0f}s, "
                f"{n_bad} claim(s) not verified"
            )
        return self.verify_baseline

    def baseline_pytest(self, targets: tuple[str, ...]) -> PytestRun:
        with self.lock:
            lock = self.pytest_locks.setdefault(targets, threading.Lock())
        with lock:
            if targets not in self.pytest_baselines:
                junit = self.workdir / f"baseline-pytest-{len(self.pytest_baselines)}.xml"
                timeout = self.options.timeout or BASELINE_TIMEOUT
                result = run_pytest(self.snapshot, targets, junit, False, self.options, timeout)
                self.pytest_baselines[targets] = result
                log(
                    f"baseline pytest {' '.join(targets) or '(full suite)'}: exit "
                    f"{result.run.returncode}, {result.run.seconds:.0f}s, "
                    f"{len(result.failed or ())} failing"
                )
            return self.pytest_baselines[targets]

    def timeout_after(self, baseline: Run) -> float:
        """``--timeout``, or by default max(600 s, 5 x the baseline's time): a hang, not load."""
        if self.options.timeout:
            return float(self.options.timeout)
        return max(MIN_TIMEOUT, TIMEOUT_FACTOR * baseline.seconds)

    def run_error(self, error: InjectedError) -> dict[str, Any]:
        """:meth:`attempt`, with a failure of the harness itself recorded, not raised."""
        try:
            return self.attempt(error)
        except Exception as exc:  # one broken error must not stop the campaign
            broken = {"outcome": "harness-error", "evidence": [f"{type(exc).__name__}: {exc}"]}
            return {
                "id": error.id,
                "file": error.file,
                "kind": error.kind,
                "description": error.description,
                "breaks_import": error.breaks_import,
                "verify": broken,
                "pytest": broken,
                "seconds": 0.0,
            }

    def attempt(self, error: InjectedError) -> dict[str, Any]:
        start = time.perf_counter()
        record: dict[str, Any] = {
            "id": error.id,
            "file": error.file,
            "kind": error.kind,
            "description": error.description,
            "breaks_import": error.breaks_import,
        }
        count = occurrences(self.snapshot, error)
        if count != 1:
            stale = {"outcome": "stale", "evidence": [stale_reason(count)]}
            return {**record, "verify": stale, "pytest": stale, "seconds": 0.0}
        place = self.workdir / "errors" / error.id
        if place.exists():
            shutil.rmtree(place)
        tree = place / "tree"
        shutil.copytree(self.snapshot, tree, ignore=_IGNORE)
        path = tree / error.file
        path.write_text(
            path.read_text(encoding="utf-8").replace(error.old, error.new, 1), encoding="utf-8"
        )
        check_resolution(self.options.python, tree, full=False)
        if self.options.skip_verify:
            record["verify"] = {"outcome": "skipped"}
        else:
            base_verify = self.baseline_verify()
            timeout = self.timeout_after(base_verify.run)
            if self.options.fail_fast and base_verify.run.returncode == 0:
                now, scope = run_verify_fast(
                    tree, place / "verify.json", self.options, timeout, error
                )
            else:
                now, scope = run_verify(tree, place / "verify.json", self.options, timeout), "all"
            record["verify"] = {
                **judge_verify(base_verify, now),
                "timeout": round(timeout),
                "scope": scope,
            }
        if self.options.skip_pytest:
            record["pytest"] = {"outcome": "skipped"}
        else:
            targets = pytest_targets(error, self.snapshot, self.options.full_pytest)
            base = self.baseline_pytest(targets)
            timeout = self.timeout_after(base.run)
            now_pytest = run_pytest(
                tree, targets, place / "pytest.xml", base.run.returncode == 0, self.options, timeout
            )
            record["pytest"] = {
                **judge_pytest(base, now_pytest),
                "timeout": round(timeout),
                "targets": " ".join(targets) or "(full default suite)",
            }
        record["seconds"] = round(time.perf_counter() - start, 1)
        if not self.options.keep:
            shutil.rmtree(place, ignore_errors=True)
        return record

    def cleanup(self) -> None:
        if not self.options.keep and not self.options.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ============================================================================ reporting
def summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts per column and the verify x pytest cross-table (a timeout counts as detected)."""

    def outcome(record: dict[str, Any], column: str) -> str:
        return str(record[column]["outcome"])

    out: dict[str, Any] = {"errors": len(records)}
    for column in ("verify", "pytest"):
        counts: dict[str, int] = {}
        for record in records:
            counts[outcome(record, column)] = counts.get(outcome(record, column), 0) + 1
        out[column] = counts
    caught = {"detected", "timeout"}
    judged = [
        r
        for r in records
        if outcome(r, "verify") not in ("stale", "skipped", "harness-error")
        and outcome(r, "pytest") not in ("stale", "skipped", "baseline-broken")
        and outcome(r, "verify") != "baseline-broken"
    ]
    cross = {"verify only": 0, "pytest only": 0, "both": 0, "neither": 0}
    for record in judged:
        by_verify, by_pytest = (
            outcome(record, "verify") in caught,
            outcome(record, "pytest") in caught,
        )
        key = (
            "both"
            if by_verify and by_pytest
            else "verify only"
            if by_verify
            else "pytest only"
            if by_pytest
            else "neither"
        )
        cross[key] += 1
    out["cross"] = cross if judged else None
    out["verify_missed"] = [
        r["id"] for r in records if outcome(r, "verify") in ("missed", "changed")
    ]
    out["stale"] = [r["id"] for r in records if outcome(r, "verify") == "stale"]
    return out


NOTE = (
    "The pytest column runs the *targeted* test files of the patched module (and its "
    "doctests), not the full suite (use --full-pytest). A timeout counts as detected. "
    "'changed': verify's output changed only in legs or mutants that already failed on the "
    "baseline (inconclusive until the baseline is clean); counted as not detected."
)


def table_rows(records: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in records:
        verify, pytest_ = r["verify"]["outcome"], r["pytest"]["outcome"]
        if r["verify"].get("n_masked"):
            verify += f" (masks {r['verify']['n_masked']})"
        rows.append(
            [r["id"], r["file"], r["kind"], verify, pytest_, f"{r.get('seconds', 0.0):.0f}s"]
        )
    return rows


HEADER = ["id", "file", "class", "verify", "pytest", "time"]


def format_text(records: Sequence[dict[str, Any]], info: dict[str, Any]) -> str:
    rows = table_rows(records)
    widths = [max(len(h), *(len(row[k]) for row in rows)) for k, h in enumerate(HEADER)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines += ["", *summary_lines(info), "", NOTE]
    details = []
    for r in records:
        for column in ("verify", "pytest"):
            for line in r[column].get("evidence", [])[:2]:
                details.append(f"  {r['id']} [{column}]: {line}")
    if details:
        lines += ["", "First evidence per error:", *details]
    return "\n".join(lines)


def summary_lines(info: dict[str, Any]) -> list[str]:
    lines = [
        f"errors: {info['errors']}",
        "verify: " + ", ".join(f"{k} {v}" for k, v in sorted(info["verify"].items())),
        "pytest (targeted files): "
        + ", ".join(f"{k} {v}" for k, v in sorted(info["pytest"].items())),
    ]
    if info["cross"] is not None:
        lines.append(
            "detected by verify alone / pytest alone / both / neither: "
            f"{info['cross']['verify only']} / {info['cross']['pytest only']} / "
            f"{info['cross']['both']} / {info['cross']['neither']}"
        )
    if info["verify_missed"]:
        lines.append("not detected by verify: " + ", ".join(info["verify_missed"]))
    if info["stale"]:
        lines.append("stale (refresh the snippet): " + ", ".join(info["stale"]))
    return lines


def format_markdown(records: Sequence[dict[str, Any]], info: dict[str, Any], meta: str) -> str:
    lines = [
        "# Error-injection campaign",
        "",
        meta,
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
        for row in table_rows(records)
    ]
    lines += ["", *(f"- {line}" for line in summary_lines(info)), "", NOTE, "", "## Errors", ""]
    for r in records:
        lines.append(f"- `{r['id']}` ({r['file']}, {r['kind']}): {r['description']}")
        for column in ("verify", "pytest"):
            for line in r[column].get("evidence", [])[:3]:
                lines.append(f"  - {column}: {line.replace('|', '/')}")
    return "\n".join(lines) + "\n"


# ============================================================================ command line
def load_errors(extra: Path | None) -> list[InjectedError]:
    errors = list(ERRORS)
    if extra is not None:
        for item in json.loads(extra.read_text(encoding="utf-8")):
            errors.append(InjectedError(**item))
    ids = [e.id for e in errors]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SystemExit(f"duplicate error ids: {duplicates}")
    for error in errors:
        if error.old == error.new or not error.old:
            raise SystemExit(f"{error.id}: old and new must differ and old must not be empty")
        if not error.file.startswith(AREAS):
            raise SystemExit(f"{error.id}: {error.file} is outside the campaign's areas {AREAS}")
    return errors


def select(errors: Iterable[InjectedError], only: str | None) -> list[InjectedError]:
    errors = list(errors)
    if not only:
        return errors
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    chosen = [e for e in errors if any(fnmatch.fnmatchcase(e.id, p) for p in patterns)]
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(e.id, p) for e in errors)]
    if unknown:
        raise SystemExit(f"--only: no error matches {unknown}")
    return chosen


def check(errors: Sequence[InjectedError], root: Path) -> int:
    """Report which snippets do not occur exactly once under ``root``; 1 if any."""
    stale = 0
    for error in errors:
        count = occurrences(root, error)
        status = "ok" if count == 1 else f"STALE ({stale_reason(count)})"
        if count == 1 and not compiles(root, error):
            status = "ok, but the patched file does not compile"
        stale += count != 1
        print(f"{error.id:<36} {error.file:<34} {status}")
    print(f"\n{len(errors) - stale}/{len(errors)} snippets match exactly once in {root}")
    return 1 if stale else 0


def compiles(root: Path, error: InjectedError) -> bool:
    """Whether the patched file is still valid Python (the errors are bugs, not typos)."""
    text = (root / error.file).read_text(encoding="utf-8").replace(error.old, error.new, 1)
    try:
        compile(text, error.file, "exec")
    except SyntaxError:
        return False
    return True


def list_errors(errors: Sequence[InjectedError]) -> None:
    by_area: dict[str, int] = {}
    for error in errors:
        area = next(a for a in AREAS if error.file.startswith(a))
        by_area[area] = by_area.get(area, 0) + 1
        flag = " [breaks import]" if error.breaks_import else ""
        print(f"{error.id:<36} {error.file:<34} {error.kind}{flag}\n    {error.description}")
    print(f"\n{len(errors)} errors: " + ", ".join(f"{a} {n}" for a, n in by_area.items()))


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Inject plausible bugs one at a time and see whether rlmath verify and "
        "pytest detect them (see the module docstring)."
    )
    parser.add_argument("--list", action="store_true", help="list the errors and exit")
    parser.add_argument(
        "--check", action="store_true", help="report snippets that no longer match exactly once"
    )
    parser.add_argument("--only", metavar="ID[,ID]", help="error ids or shell globs")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="errors in parallel")
    parser.add_argument("--skip-pytest", action="store_true", help="no pytest column")
    parser.add_argument("--skip-verify", action="store_true", help="no verify column")
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help="with a green baseline, run verify --fail-fast on the patched proof file's claims "
        "first, then on all claims (same verdict, much less time for detected errors)",
    )
    parser.add_argument(
        "--full-pytest", action="store_true", help="run the whole default suite, not targeted files"
    )
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="write the table as Markdown")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every record as JSON")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per run (default: max(600, 5 x the baseline's time))",
    )
    parser.add_argument("--verify-jobs", type=int, default=2, help="verify's --jobs (2)")
    parser.add_argument("--seed", type=int, default=0, help="verify's --seed (0)")
    parser.add_argument("--verify-only", metavar="GLOB", help="pass --only GLOB to verify")
    parser.add_argument("--errors-file", type=Path, help="more errors, a JSON list of objects")
    parser.add_argument("--workdir", type=Path, help="where the copies go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the copies and their outputs")
    parser.add_argument("--python", default=sys.executable, help="interpreter (default: this one)")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="run nothing: combine the --json files of earlier runs into one table (per error "
        "and column, the last file that ran it wins); with --markdown / --json to write it",
    )
    options = parser.parse_args(argv)
    if options.jobs < 1 or options.verify_jobs < 1:
        parser.error("--jobs and --verify-jobs must be >= 1")
    if options.skip_pytest and options.skip_verify:
        parser.error("--skip-pytest and --skip-verify leave nothing to run")
    return options


def merge_runs(paths: Sequence[Path], errors: Sequence[InjectedError]) -> list[dict[str, Any]]:
    """One record per error from the ``--json`` files of earlier runs (later files win).

    Per error and per column (verify, pytest), the last file that ran the column (outcome not
    ``skipped``) supplies it, so a verify-only run, a pytest-only run and a rerun of a few
    errors after a fix combine into one table; an error no file ran in a column stays
    ``skipped``. Each record's ``sources`` names the file of each column.
    """
    known = {e.id: e for e in errors}
    merged: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            results = payload["results"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"--merge: {path} is not a campaign --json file ({exc})") from exc
        for record in results:
            if record["id"] not in known:
                raise SystemExit(f"--merge: {path}: unknown error id {record['id']!r}")
            error = known[record["id"]]
            into = merged.setdefault(
                error.id,
                {
                    "id": error.id,
                    "file": error.file,
                    "kind": error.kind,
                    "description": error.description,
                    "breaks_import": error.breaks_import,
                    "verify": {"outcome": "skipped"},
                    "pytest": {"outcome": "skipped"},
                    "sources": {},
                    "seconds": 0.0,
                },
            )
            for column in ("verify", "pytest"):
                if record[column]["outcome"] != "skipped":
                    into[column] = record[column]
                    into["sources"][column] = f"{path.name}: {payload.get('meta', '')}"
                    into["seconds"] = round(
                        sum(float(into[c].get("seconds", 0.0)) for c in ("verify", "pytest")), 1
                    )
    return [merged[e.id] for e in errors if e.id in merged]


def write_merged(options: argparse.Namespace, errors: Sequence[InjectedError]) -> int:
    records = merge_runs(options.merge, errors)
    info = summary(records)
    meta = (
        "Merged from "
        + ", ".join(
            f"`{p.name}` ({json.loads(p.read_text(encoding='utf-8')).get('meta', '')})"
            for p in options.merge
        )
        + " (per error and column, the last file that ran it)."
    )
    print(meta + "\n\n" + format_text(records, info))
    if options.markdown is not None:
        options.markdown.write_text(format_markdown(records, info, meta), encoding="utf-8")
    if options.json is not None:
        payload = {"meta": meta, "summary": info, "note": NOTE, "results": records}
        options.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_arguments(argv)
    errors = select(load_errors(options.errors_file), options.only)
    if options.merge:
        return write_merged(options, errors)
    if options.list:
        list_errors(errors)
        return 0
    if options.check:
        return check(errors, REPO)
    campaign = Campaign(options)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        campaign.prepare()
        if not options.skip_verify:
            campaign.baseline_verify()
        records: dict[str, dict[str, Any]] = {}
        with ThreadPoolExecutor(max_workers=options.jobs) as pool:
            futures = {pool.submit(campaign.run_error, e): e for e in errors}
            for done, future in enumerate(as_completed(futures), 1):
                error = futures[future]
                record = future.result()
                records[error.id] = record
                log(
                    f"[{done}/{len(errors)}] {error.id}: verify {record['verify']['outcome']}, "
                    f"pytest {record['pytest']['outcome']} ({record['seconds']:.0f}s)"
                )
    finally:
        campaign.cleanup()
    ordered = [records[e.id] for e in errors]
    info = summary(ordered)
    base = campaign.verify_baseline
    meta = (
        f"Run {started} on a snapshot of `{REPO}`; verify seed {options.seed}; baseline verify "
        + (
            "not run."
            if base is None
            else f"exit {base.run.returncode} in {base.run.seconds:.0f}s."
        )
    )
    print(meta + "\n\n" + format_text(ordered, info))
    if options.markdown is not None:
        options.markdown.write_text(format_markdown(ordered, info, meta), encoding="utf-8")
    if options.json is not None:
        payload = {
            "meta": meta,
            "summary": info,
            "note": NOTE,
            "errors": [asdict(e) for e in errors],
            "results": ordered,
            "baseline": {
                "verify_returncode": None if base is None else base.run.returncode,
                "verify_seconds": None if base is None else round(base.run.seconds, 1),
                "pytest": {
                    " ".join(t) or "(full suite)": {
                        "returncode": b.run.returncode,
                        "seconds": round(b.run.seconds, 1),
                        "failing": sorted(b.failed or ()),
                    }
                    for t, b in campaign.pytest_baselines.items()
                },
            },
        }
        options.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
