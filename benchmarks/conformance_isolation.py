"""Cost of running the implementation in a worker process, as a ratio to in-process checking.

Run: ``python benchmarks/conformance_isolation.py [--repeats N]``. Nothing is asserted; the
target (issue "A conformance checker you can gate CI on") is printed next to the number.

What is measured, in one process, alternating the two modes to share machine load:
``rlmath.conformance.check(numpy GAE, "generalized_advantage_estimation", examples=100,
seed=s)`` with ``isolation="process"`` (the default: a forked worker, one pipe round trip per
example) and with ``isolation="none"``. Reported: the median of each and their ratio. The same
seeds are used in both modes, so both judge the same 100 inputs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from rlmath import reference
from rlmath.conformance import check

TARGET_RATIO = 1.5


def numpy_gae(
    rewards, values, terminated, truncated, final_values, last_value, *, discount, lambda_
):
    """A user's NumPy GAE: a backward loop (what is being checked)."""
    following = np.append(values[1:], last_value)
    next_values = np.where(terminated, 0.0, np.where(truncated, final_values, following))
    delta = rewards + discount * next_values - values
    cut = terminated | truncated
    out = np.zeros_like(delta)
    running = 0.0
    for t in reversed(range(len(delta))):
        running = delta[t] + discount * lambda_ * (1.0 - cut[t]) * running
        out[t] = running
    return out


def timed(isolation: str, seed: int) -> float:
    start = time.perf_counter()
    report = check(
        numpy_gae, "generalized_advantage_estimation", examples=100, seed=seed, isolation=isolation
    )
    assert report.conforms, str(report)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    assert reference.generalized_advantage_estimation  # the reference judged against
    timed("process", 0)  # warm-up (imports, Hypothesis caches)
    timed("none", 0)
    process, inline = [], []
    for k in range(args.repeats):
        process.append(timed("process", k))
        inline.append(timed("none", k))
    p, i = statistics.median(process), statistics.median(inline)
    print(f"check, worker process: median {p:.3f} s over {args.repeats} runs")
    print(f"check, in-process:     median {i:.3f} s")
    print(f"ratio process / in-process: {p / i:.2f}  (target <= {TARGET_RATIO})")


if __name__ == "__main__":
    main()
