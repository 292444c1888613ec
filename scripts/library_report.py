"""How popular RL libraries conform to rlmath's specs: writes ``docs/libraries.md`` (opt-in).

    python scripts/library_report.py                    # create or reuse .library-venv/, run, write
    python scripts/library_report.py --torch-index-url https://download.pytorch.org/whl/cpu
    python scripts/library_report.py --torch-wheel /path/to/torch-2.13.0+cpu-...whl

The script creates (or reuses) its own virtual environment ``.library-venv/`` in the repository
root with the PINNED versions below, then re-runs itself inside it (``--inside``): every adapter
of :mod:`rlmath.adapters` is run through :func:`rlmath.conformance.check` on a fixed seed, and
the page lists library, version, function, spec, verdict, the minimal failing input and the
classification of each difference (bug / documented convention / out of contract). Each
row states the verdict it is expected to have (checked by hand when the page was written); a
different verdict is shown as UNEXPECTED. The "bug" rows end with a hand-checked example whose
library output is recomputed on every run. The page has no timings, so two runs give the same
bytes. Never part of ``.ci/run`` (it installs PyTorch and six RL libraries).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import venv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".library-venv"
OUT = ROOT / "docs" / "libraries.md"
SEED = 0
EXAMPLES = 50
#: Time limits of one example and of one check, far above what any row needs when idle.
EXAMPLE_SECONDS = 600.0
CHECK_SECONDS = 7200.0
PRELOAD = (
    "torch",
    "torchrl.objectives.value.functional",
    "stable_baselines3.common.buffers",
    "tianshou.algorithm.algorithm_base",
    "tianshou.data",
    "skrl.agents.torch.ppo.ppo",
    "verl.trainer.ppo.core_algos",
    "verl.workers.config.actor",
)

TORCH = "torch==2.13.0"
#: Pinned versions (``pip install`` names). verl is installed with ``--no-deps`` (its full
#: dependency set pins other versions of tensordict and transformers than torchrl and TRL need);
#: what its ``core_algos`` imports is pinned here instead.
PINS = {
    "stable-baselines3": "2.9.2",
    "torchrl": "0.14.1",
    "tensordict": "0.14.3",
    "tianshou": "2.0.1",
    "skrl": "2.1.1",
    "trl": "1.16.0",
    "omegaconf": "2.4.0",
    "codetiming": "1.4.0",
    "ray": "2.60.0",
}
NO_DEPS = {"verl": "0.9.1"}
#: rlmath's own dependencies (the repository is put on PYTHONPATH inside the venv).
RLMATH_DEPS = ["numpy>=1.24", "scipy>=1.10", "sympy>=1.12", "hypothesis>=6.170", "threadpoolctl>=3.1"]
LIBRARIES = ["torch", *PINS, *NO_DEPS]


# ============================================================================ environment
def _venv_python(path: Path) -> Path:
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _installed(python: Path) -> dict[str, str]:
    code = (
        "import json, importlib.metadata as m\n"
        f"names = {LIBRARIES!r}\n"
        "out = {}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def _pip(python: Path, *arguments: str) -> None:
    command = [str(python), "-m", "pip", "install", "-q", *arguments]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def ensure_environment(args: argparse.Namespace) -> Path:
    """Create or reuse the venv; install what is missing or not at its pinned version."""
    path = Path(args.venv)
    python = _venv_python(path)
    if not python.exists():
        print(f"creating {path}", flush=True)
        venv.EnvBuilder(with_pip=True).create(path)
    have = _installed(python)
    if not have.get("torch", "").startswith(TORCH.split("==")[1]):
        if args.torch_wheel:
            _pip(python, args.torch_wheel)
        elif args.torch_index_url:
            _pip(python, TORCH, "--index-url", args.torch_index_url)
        else:
            _pip(python, TORCH)
    wanted = [f"{n}=={v}" for n, v in PINS.items() if have.get(n) != v]
    if wanted:
        _pip(python, *wanted, *RLMATH_DEPS)
    if any(have.get(n) != v for n, v in NO_DEPS.items()):
        _pip(python, "--no-deps", *(f"{n}=={v}" for n, v in NO_DEPS.items()))
    have = _installed(python)
    wrong = {n: have.get(n) for n, v in {**PINS, **NO_DEPS}.items() if have.get(n) != v}
    if wrong:
        raise SystemExit(f"pinned versions not installed in {path}: {wrong}")
    return python


# ============================================================================ the rows
BUG, CONVENTION, OUT_OF_CONTRACT, CONFORMS = (
    "bug", "documented convention", "out of contract", "conforms")


@dataclass(frozen=True)
class Row:
    library: str
    function: str
    adapter: str  # "module:attribute" in rlmath.adapters
    spec: str
    expected: str  # "conforms" or the failure kind expected
    classification: str
    explanation: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    assume: dict[str, Any] = field(default_factory=dict)
    framework: str = "numpy"


F32 = (
    "`gamma * not_terminated` multiplies a Python float by an integer tensor, which gives "
    "torch's default float32: the discount is rounded to float32 for float64 inputs "
    "(see the arithmetic below)"
)
ROWS = [
    # ---------------------------------------------------------------- torchrl
    Row("torchrl", "generalized_advantage_estimate", "torchrl:generalized_advantage_estimate",
        "generalized_advantage_estimation", "wrong value", BUG, F32),
    Row("torchrl", "generalized_advantage_estimate", "torchrl:generalized_advantage_estimate",
        "generalized_advantage_estimation", CONFORMS, CONFORMS,
        "with discount and lambda exact in float32 the recursion is right",
        {"discount": 0.5, "lambda_": 0.5}),
    Row("torchrl", "vec_generalized_advantage_estimate",
        "torchrl:vec_generalized_advantage_estimate", "generalized_advantage_estimation",
        "exception", BUG,
        "`_geom_series_like` returns a 1-D `zeros_like` when gamma * lambda = 0 (no "
        "`unsqueeze(-1)`), and `_custom_conv1d` raises IndexError on it", {"lambda_": 0.0}),
    Row("torchrl", "vec_generalized_advantage_estimate",
        "torchrl:vec_generalized_advantage_estimate", "generalized_advantage_estimation",
        "wrong value", BUG,
        "`_geom_series_like` keeps only int(log 1e-7 / log(gamma lambda)) terms of the series "
        "(gamma lambda = 0.25: 11 terms), so the advantage misses the terms beyond; "
        "undocumented on the public function", {"discount": 0.5, "lambda_": 0.5}),
    Row("torchrl", "vec_generalized_advantage_estimate",
        "torchrl:vec_generalized_advantage_estimate", "generalized_advantage_estimation",
        CONFORMS, CONFORMS, "gamma = lambda = 1: no rounding, no truncation of the series",
        {"discount": 1.0, "lambda_": 1.0}),
    Row("torchrl", "td0_advantage_estimate", "torchrl:td0_advantage_estimate",
        "temporal_difference_errors", "wrong value", BUG,
        "`td0_return_estimate` computes `gamma * not_terminated` (an integer tensor): float32 "
        "discount, as in GAE"),
    Row("torchrl", "td0_advantage_estimate", "torchrl:td0_advantage_estimate",
        "temporal_difference_errors", CONFORMS, CONFORMS,
        "with a discount exact in float32 the TD error is right", {"discount": 0.5}),
    Row("torchrl", "td_lambda_return_estimate", "torchrl:td_lambda_return_estimate",
        "lambda_returns", CONFORMS, CONFORMS,
        "the discount is expanded with `torch.full_like(next_state_value, gamma)` (float64)"),
    Row("torchrl", "vec_td_lambda_return_estimate", "torchrl:vec_td_lambda_return_estimate",
        "lambda_returns", "exception", BUG,
        "`_fast_td_lambda_return_estimate` uses the same `_geom_series_like`: IndexError when "
        "gamma * lambda = 0"),
    Row("torchrl", "vec_td_lambda_return_estimate", "torchrl:vec_td_lambda_return_estimate",
        "lambda_returns", "wrong value", BUG,
        "`torch.full((1,), gamma)` makes the discount a float32 tensor (torch's default dtype)",
        {"discount": 0.9, "lambda_": 1.0}),
    Row("torchrl", "vec_td_lambda_return_estimate", "torchrl:vec_td_lambda_return_estimate",
        "lambda_returns", "wrong value", BUG,
        "the truncated geometric series of `_geom_series_like`, as in the vectorised GAE",
        {"discount": 0.5, "lambda_": 0.5}),
    Row("torchrl", "vec_td_lambda_return_estimate", "torchrl:vec_td_lambda_return_estimate",
        "lambda_returns", CONFORMS, CONFORMS, "gamma = lambda = 1: no rounding, no truncation",
        {"discount": 1.0, "lambda_": 1.0}),
    Row("torchrl", "td_lambda_advantage_estimate", "torchrl:td_lambda_advantage_estimate",
        "generalized_advantage_estimation", CONFORMS, CONFORMS,
        "TD(lambda) return minus the value equals GAE"),
    Row("torchrl", "vec_td_lambda_advantage_estimate",
        "torchrl:vec_td_lambda_advantage_estimate", "generalized_advantage_estimation",
        "exception", BUG, "calls `vec_td_lambda_return_estimate`: the same IndexError when "
        "gamma * lambda = 0"),
    Row("torchrl", "vec_td_lambda_advantage_estimate",
        "torchrl:vec_td_lambda_advantage_estimate", "generalized_advantage_estimation",
        CONFORMS, CONFORMS, "gamma = lambda = 1", {"discount": 1.0, "lambda_": 1.0}),
    # ---------------------------------------------------------------- stable-baselines3
    Row("stable-baselines3", "RolloutBuffer.compute_returns_and_advantage (advantages)",
        "stable_baselines3:rollout_buffer_advantages", "generalized_advantage_estimation",
        CONFORMS, CONFORMS,
        "float32 buffer (documented storage dtype), judged with the float32 tolerance; "
        "truncation by the reward correction of `collect_rollouts` (one call per episode piece)"),
    Row("stable-baselines3", "RolloutBuffer.compute_returns_and_advantage (returns)",
        "stable_baselines3:rollout_buffer_returns", "lambda_returns", CONFORMS, CONFORMS,
        "returns = advantages + values, float32"),
    # ---------------------------------------------------------------- tianshou
    Row("tianshou", "Algorithm.compute_episodic_return (advantages)",
        "tianshou:episodic_return_advantages", "generalized_advantage_estimation",
        CONFORMS, CONFORMS, "`v_s_` of `obs_next` masked by `~terminated`; float64 throughout"),
    Row("tianshou", "Algorithm.compute_episodic_return (returns)",
        "tianshou:episodic_return_returns", "lambda_returns", CONFORMS, CONFORMS, ""),
    # ---------------------------------------------------------------- skrl
    Row("skrl", "ppo.compute_gae (returns - values), time_limit_bootstrap=True",
        "skrl:ppo_gae_advantages", "generalized_advantage_estimation", "wrong value", BUG,
        "`discount_factor * not_done[i]` multiplies a Python float by a bool tensor: float32 "
        "discount for float64 inputs"),
    Row("skrl", "ppo.compute_gae + PPO.record_transition, time_limit_bootstrap=True",
        "skrl:ppo_gae_advantages", "generalized_advantage_estimation", "wrong value", BUG,
        "`record_transition` adds `discount_factor * next_values * truncated` also where the "
        "step is terminated (Gymnasium sets both at a terminal step on the time limit): a "
        "terminal state is bootstrapped", {"discount": 0.5}),
    Row("skrl", "ppo.compute_gae (returns), time_limit_bootstrap=True", "skrl:ppo_gae_returns",
        "lambda_returns", "wrong value", BUG, "the same bootstrap of terminated-and-truncated "
        "steps, in the returns", {"discount": 0.5}),
    Row("skrl", "ppo.compute_gae (returns - values), default time_limit_bootstrap=False",
        "skrl:ppo_gae_advantages_without_time_limit_bootstrap",
        "generalized_advantage_estimation", "wrong value", CONVENTION,
        "the default (`PPO_CFG.time_limit_bootstrap = False`, documented) treats a truncated "
        "step as if the episode went on: the recursion crosses the episode boundary",
        {"discount": 0.5}),
    # ---------------------------------------------------------------- verl
    Row("verl", "compute_gae_advantage_return (returns)", "verl:gae_returns", "lambda_returns",
        CONFORMS, CONFORMS, "truncation through a bootstrap token (exact, see the adapter); "
        "the whitened advantages are not compared"),
    Row("verl", 'kl_penalty(..., "k1")', "verl:kl_k1", "kl_estimator_k1", CONFORMS, CONFORMS,
        "", framework="torch"),
    Row("verl", 'kl_penalty(..., "k2")', "verl:kl_k2", "kl_estimator_k2", CONFORMS, CONFORMS,
        "", framework="torch"),
    Row("verl", 'kl_penalty(..., "k3")', "verl:kl_k3", "kl_estimator_k3", CONFORMS, CONFORMS,
        "within the clamp: k3 <= 10 needs |log r| <= 2.5 here", assume={"max_abs_log_ratio": 2.5},
        framework="torch"),
    Row("verl", 'kl_penalty(..., "k3")', "verl:kl_k3", "kl_estimator_k3", "wrong value",
        OUT_OF_CONTRACT, "deliberate clamps in the code: log r to [-20, 20] (\"for numerical "
        "stability\") and k3 to [-10, 10] (named in rlmath's spec); conforms within "
        "`max_abs_log_ratio = 2.5` (row above)",
        framework="torch"),
    Row("verl", 'kl_penalty(..., "k3+")', "verl:kl_k3_plus", "kl_estimator_k3",
        "wrong gradient", CONVENTION, "documented straight-through estimator: the value of k3 "
        "with the gradient of k2 (log_probs - ref_log_probs), not k3's 1 - r",
        assume={"max_abs_log_ratio": 2.5}, framework="torch"),
    Row("verl", "compute_value_loss (token-mean)", "verl:value_loss", "clipped_value_loss",
        CONFORMS, CONFORMS, "0.5 * mean of the max of clipped and unclipped squared errors",
        framework="torch"),
    Row("verl", "compute_policy_loss_vanilla (token-mean)", "verl:vanilla_policy_loss",
        "dual_clip_ppo_loss", CONFORMS, CONFORMS, "within verl's clamp of log-ratios to "
        "[-20, 20]; the dual clip is always on (`clip_ratio_c`, default 3)",
        assume={"max_abs_log_ratio": 20.0}, framework="torch"),
    Row("verl", "compute_grpo_outcome_advantage", "verl:grpo_outcome_advantages",
        "grpo_advantages", "wrong value", CONVENTION,
        "a group of one gets mean 0 and std 1 (deliberate, in the code): its advantage is the "
        "raw reward / (1 + epsilon), where the spec has 0", {"ddof": 1, "epsilon": 1e-6}),
    Row("verl", 'agg_loss("token-mean")', "verl:aggregate_loss", "aggregate_loss", CONFORMS,
        CONFORMS, "", {"mode": "token-mean"}, framework="torch"),
    Row("verl", 'agg_loss("seq-mean-token-mean")', "verl:aggregate_loss", "aggregate_loss",
        "wrong value", CONVENTION, "each row is divided by n_b + 1e-8 (deliberate, against "
        "0 / 0): a relative difference of 1e-8 / n_b", {"mode": "seq-mean-token-mean"},
        framework="torch"),
    Row("verl", 'agg_loss("seq-mean-token-sum")', "verl:aggregate_loss", "aggregate_loss",
        CONFORMS, CONFORMS, "empty rows excluded, as the spec", {"mode": "seq-mean-token-sum"},
        framework="torch"),
    Row("verl", 'agg_loss("seq-mean-token-sum-norm")', "verl:aggregate_loss", "aggregate_loss",
        "wrong value", CONVENTION, "verl divides by the number of NON-EMPTY rows times T "
        "(`global_batch_size = seq_mask.sum()`), the spec (Dr. GRPO) by all B rows times T",
        {"mode": "seq-mean-token-sum-norm"}, framework="torch"),
]

NOT_CALLABLE = [
    ("trl", "DPOTrainer loss types (sigmoid, hinge, ipo, robust, ...)", "preference_loss",
     "not callable without a trainer: the losses are computed inline in "
     "`DPOTrainer._compute_loss` (trl/trainer/dpo_trainer.py), after the policy and reference "
     "forward passes, from `self.beta`, `self.loss_types`, `self.label_smoothing`; there is no "
     "function of log-probs to call"),
    ("trl", "GRPOTrainer per-token KL and loss aggregation", "kl_penalty_per_token, "
     "aggregate_loss", "not callable without a trainer: `per_token_kl` and the aggregation "
     "(`loss_type`) are inline in `GRPOTrainer._compute_loss` (trl/trainer/grpo_trainer.py)"),
]


# ============================================================================ running (inside)
def _compact(value: Any) -> str:
    import numpy as np

    array = np.asarray(value)
    if array.ndim == 0:
        item = array.item()
        return repr(float(item)) if isinstance(item, float) else repr(item)
    flat = array.ravel()
    shown = [repr(float(x)) if array.dtype.kind == "f" else repr(x.item()) for x in flat[:6]]
    more = f", ... ({flat.size} entries)" if flat.size > 6 else ""
    shape = "" if array.ndim == 1 else f" shape {list(array.shape)}"
    return "[" + ", ".join(shown) + more + "]" + shape


def _failing_input(report: Any) -> str:
    example = report.failure.example
    parts = [f"{k}={_compact(v)}" for k, v in example.arguments.items()]
    parts += [f"{k}={_compact(v)}" for k, v in example.hyperparameters.items()]
    return "`" + ", ".join(parts).replace("|", "/") + "`"


def _load(adapter: str) -> Any:
    import importlib

    module, attribute = adapter.split(":")
    return getattr(importlib.import_module(f"rlmath.adapters.{module}"), attribute)


def run_row(row: Row) -> dict[str, str]:
    from rlmath.conformance import check

    report = check(
        _load(row.adapter), row.spec, examples=EXAMPLES, seed=SEED, framework=row.framework,
        hyperparameters=row.hyperparameters or None, assume=row.assume or None,
        target=f"rlmath.adapters.{row.adapter}",
        # generous limits: a verdict must not depend on how busy the machine is
        timeout=EXAMPLE_SECONDS, total_timeout=CHECK_SECONDS,
    )
    verdict = CONFORMS if report.conforms else report.failure.kind
    failing = "" if report.conforms else _failing_input(report)
    message = "" if report.conforms else report.failure.message
    return {"verdict": verdict, "failing": failing, "message": message}


def hand_examples() -> list[tuple[str, str, str, str]]:
    """(title, the input, the library's output recomputed now, the hand arithmetic)."""
    import numpy as np

    from rlmath import reference
    from rlmath.adapters import skrl, torchrl

    zero, one = np.zeros(1), np.ones(1)
    false, true = np.zeros(1, dtype=bool), np.ones(1, dtype=bool)
    out = []
    tr = torchrl.generalized_advantage_estimate(zero, zero, false, false, zero, 1.0,
                                                discount=0.9, lambda_=0.0)
    out.append((
        "torchrl `generalized_advantage_estimate` (and `td0_advantage_estimate`): float32 discount",
        "T = 1, r_0 = 0, V(s_0) = 0, not terminated, last_value = V(s_1) = 1, gamma = 0.9, "
        "lambda = 0",
        f"torchrl: A_0 = {float(tr[0])!r}; rlmath: "
        f"{float(reference.generalized_advantage_estimation(zero, zero, false, false, zero, 1.0, discount=0.9, lambda_=0.0)[0])!r}",
        "A_0 = delta_0 = r_0 + gamma V(s_1) - V(s_0) = 0 + 0.9 * 1 - 0 = 0.9 (float64: "
        "0.9000000000000000222). torchrl's value is float32(0.9) = 0.89999997615814208984375 "
        "exactly: the discount itself was rounded to float32 (an error of 2.4e-8, 4.7e5 times the "
        "float64 tolerance). It comes from `gamma * (~terminated).int()`, a float times an "
        "integer tensor, which PyTorch computes in its default dtype float32.",
    ))
    try:
        torchrl.vec_generalized_advantage_estimate(zero, zero, false, false, zero, 0.0,
                                                   discount=0.0, lambda_=0.0)
        vec = "no exception (UNEXPECTED)"
    except Exception as error:  # noqa: BLE001
        vec = f"{type(error).__name__}: {error}"
    out.append((
        "torchrl `vec_generalized_advantage_estimate` (and `vec_td_lambda_*`): IndexError when "
        "gamma * lambda = 0",
        "T = 1, all zeros, gamma = 0, lambda = 0",
        f"torchrl: {vec}; rlmath: A_0 = "
        f"{float(reference.generalized_advantage_estimation(zero, zero, false, false, zero, 0.0, discount=0.0, lambda_=0.0)[0])!r}",
        "With gamma lambda = 0 GAE is the TD error, A_0 = r_0 + 0 - V(s_0) = 0. The vectorised "
        "path builds the kernel [1, gl, gl^2, ...] with `_geom_series_like`, whose `r == 0` "
        "branch returns `torch.zeros_like(t)` before the `unsqueeze(-1)` of the other branches "
        "(and a kernel of zeros would also drop the leading 1), so the convolution indexes a "
        "missing dimension. Any lambda = 0 or gamma = 0 call fails.",
    ))
    steps = 12
    rewards = np.zeros(steps)
    rewards[-1] = 1.0
    flags = np.zeros(steps, dtype=bool)
    vec_t = torchrl.vec_generalized_advantage_estimate(
        rewards, np.zeros(steps), flags, flags, np.zeros(steps), 0.0, discount=0.5, lambda_=0.5)
    ref_t = reference.generalized_advantage_estimation(
        rewards, np.zeros(steps), flags, flags, np.zeros(steps), 0.0, discount=0.5, lambda_=0.5)
    out.append((
        "torchrl `vec_generalized_advantage_estimate` (and `vec_td_lambda_return_estimate`): "
        "truncated geometric series",
        "T = 12, r_11 = 1 and every other reward, value and last_value 0, no episode end, "
        "gamma = lambda = 0.5 (both exact in float32)",
        f"torchrl: A_0 = {float(vec_t[0])!r}; rlmath: A_0 = {float(ref_t[0])!r}",
        "delta_t = r_t + gamma V(s_{t+1}) - V(s_t) is 1 at t = 11 and 0 elsewhere, so "
        "A_0 = sum_k (gamma lambda)^k delta_k = 0.25^11 = 2.384185791015625e-07 (exact in binary). "
        "`_geom_series_like` keeps lim = int(log(1e-7) / log(0.25)) = int(11.63) = 11 terms, "
        "k = 0..10, so the k = 11 term is dropped and A_0 = 0, an absolute error of 2.4e-7 on "
        "an advantage of 2.4e-7. The first dropped weight (gamma lambda)^lim can exceed 1e-7 "
        "(here 0.25^11 = 2.4e-7, because int() rounds down), and the dropped weights multiply "
        "TD errors of any size, so the error is not bounded relative to float64 rounding.",
    ))
    vec_r = torchrl.vec_td_lambda_return_estimate(zero, zero, false, false, zero, 1.0,
                                                  discount=0.9, lambda_=1.0)
    out.append((
        "torchrl `vec_td_lambda_return_estimate`: float32 discount",
        "T = 1, r_0 = 0, V(s_0) = 0, not terminated, last_value = V(s_1) = 1, gamma = 0.9, "
        "lambda = 1",
        f"torchrl: G_0 = {float(vec_r[0])!r}; rlmath: "
        f"{float(reference.lambda_returns(zero, zero, false, false, zero, 1.0, discount=0.9, lambda_=1.0)[0])!r}",
        "the last step of a sequence bootstraps: G_0 = r_0 + gamma V(s_1) = 0.9. torchrl returns "
        "float32(0.9) = 0.89999997615814208984375: `_fast_td_lambda_return_estimate` builds "
        "`gamma_tensor = torch.full((1,), gamma)` in torch's default float32. The non-vectorised "
        "`td_lambda_return_estimate` uses `torch.full_like(next_state_value, gamma)` (float64) "
        "and conforms.",
    ))
    sk = skrl.ppo_gae_advantages(zero, zero, false, false, zero, 1.0, discount=0.9, lambda_=0.0)
    out.append((
        "skrl `compute_gae`: float32 discount",
        "T = 1, r_0 = 0, V(s_0) = 0, not terminated, last_values = 1, discount_factor = 0.9, "
        "lambda = 0",
        f"skrl: A_0 = returns - values = {float(sk[0])!r}; rlmath: "
        f"{float(reference.generalized_advantage_estimation(zero, zero, false, false, zero, 1.0, discount=0.9, lambda_=0.0)[0])!r}",
        "A_0 = 0 + 0.9 * 1 - 0 = 0.9, as above; skrl gives float32(0.9) = "
        "0.89999997615814208984375 because `discount_factor * not_done[i]` multiplies a float by a "
        "bool tensor (float32 result).",
    ))
    both = skrl.ppo_gae_advantages(zero, zero, true, true, one, 0.0, discount=0.5, lambda_=0.0)
    out.append((
        "skrl `record_transition` + `compute_gae` (advantages and returns): a terminated and "
        "truncated step is bootstrapped",
        "T = 1, r_0 = 0, V(s_0) = 0, terminated = truncated = True, V(final observation) = 1, "
        "discount_factor = 0.5",
        f"skrl: A_0 = {float(both[0])!r}; rlmath: A_0 = "
        f"{float(reference.generalized_advantage_estimation(zero, zero, true, true, one, 0.0, discount=0.5, lambda_=0.0)[0])!r}",
        "s_1 is terminal, so its value is 0 by definition and A_0 = r_0 - V(s_0) = 0. skrl's "
        "`record_transition` replaces r_0 by r_0 + 0.5 * V(next_observation) * truncated = 0.5 "
        "(no `& ~terminated`), and `compute_gae` then returns 0.5. Gymnasium's TimeLimit sets "
        "truncated = True on the last allowed step whether or not it terminated, so this happens "
        "in practice.",
    ))
    return out


def versions() -> dict[str, str]:
    import importlib.metadata as metadata

    return {name: metadata.version(name) for name in LIBRARIES}


def page(results: list[dict[str, str]], hand: list[tuple[str, str, str, str]]) -> str:
    have = versions()
    lines = [
        "% Generated by scripts/library_report.py (opt-in); do not edit by hand.",
        "",
        "# How RL libraries conform",
        "",
        "Each row runs one library function, through a small adapter in `rlmath.adapters` that "
        "honours the library's documented conventions, against rlmath's float64 reference with "
        f"`rlmath.conformance.check` (seed {SEED}, {EXAMPLES} generated examples, shrunk on "
        "failure). A rejection is classified as a **bug**, a **documented convention** (the "
        "library deliberately computes something else) or **out of contract** (inputs the "
        "library does not promise to handle, e.g. past a deliberate clamp; the contract option "
        "that makes it conform is in another row). Each row's verdict was checked by hand when "
        "this page was written; a different verdict on a rerun is marked UNEXPECTED. Every bug "
        "row has its arithmetic at the end of the page.",
        "",
        "Reproduce: `python scripts/library_report.py` (creates `.library-venv/` with these "
        "pinned versions: "
        + ", ".join(f"{name} {have[name]}" for name in LIBRARIES) + ").",
        "",
        "## Verdicts",
        "",
        "| library | version | function | spec | options | verdict | minimal failing input | "
        "class | explanation |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    counts: dict[str, int] = {}
    for row, result in zip(ROWS, results, strict=True):
        verdict = result["verdict"]
        options = ", ".join(
            [f"{k}={v!r}" for k, v in row.hyperparameters.items()]
            + [f"assume {k}={v!r}" for k, v in row.assume.items()]
        )
        classification = row.classification
        if verdict != row.expected:
            classification = f"UNEXPECTED (expected {row.expected})"
        counts[classification] = counts.get(classification, 0) + 1
        version = have["torchrl" if row.library == "torchrl" else row.library]
        explanation = row.explanation
        if result["message"]:
            explanation = (explanation + ". " if explanation else "") + result["message"]
        cells = [row.library, version, f"`{row.function}`", f"`{row.spec}`",
                 f"`{options}`" if options else "", verdict, result["failing"], classification,
                 explanation]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    for library, function, spec, why in NOT_CALLABLE:
        lines.append(f"| {library} | {have[library]} | {function} | `{spec}` |  | not checked |  "
                     f"| not callable | {why} |")
    lines += [
        "",
        "Summary (rows): " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        + f", {len(NOT_CALLABLE)} not callable without a trainer. The bug rows come from "
        f"{len(hand)} distinct defects, one section each below.",
        "",
        "## The bugs, by hand",
        "",
        "Each example is the smallest input that shows the bug; the library's output is "
        "recomputed on every run of the script, the expected value is worked out by hand.",
        "",
    ]
    for title, given, computed, arithmetic in hand:
        lines += [f"### {title}", "", f"- Input: {given}.", f"- Output: {computed}.",
                  f"- By hand: {arithmetic}", ""]
    return "\n".join(lines).rstrip() + "\n"


def inside(out: Path) -> None:
    import importlib

    # imported once here, so that every check's forked worker has them already (an import of
    # torchrl takes seconds, and would count against the first example's time limit)
    for module in PRELOAD:
        importlib.import_module(module)
    results = []
    for index, row in enumerate(ROWS, 1):
        result = run_row(row)
        print(f"[{index}/{len(ROWS)}] {row.library} {row.function} vs {row.spec}: "
              f"{result['verdict']}", flush=True)
        results.append(result)
    text = page(results, hand_examples())
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=str(VENV), help="virtual environment to create or reuse")
    parser.add_argument("--torch-wheel", help="install PyTorch from this wheel file")
    parser.add_argument("--torch-index-url",
                        help="index for PyTorch, e.g. https://download.pytorch.org/whl/cpu")
    parser.add_argument("--out", default=str(OUT), help="the page to write")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        inside(Path(args.out))
        return 0
    python = ensure_environment(args)
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [str(python), str(Path(__file__).resolve()), "--inside", "--out", args.out]
    return subprocess.run(command, env=environment, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
