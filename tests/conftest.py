"""Test configuration: Hypothesis profiles, registered once, chosen by ``HYPOTHESIS_PROFILE``.

- ``dev`` (default): fast, for the edit-test loop and CI's default run;
- ``ci``: the same example counts, derandomised so CI runs are reproducible;
- ``thorough``: many more examples, for an opt-in deep run
  (``HYPOTHESIS_PROFILE=thorough pytest -m "slow or not slow"``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]  # tests/test_adapters.py runs a user suite with the rlmath fixture

settings.register_profile(
    "dev",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    parent=settings.get_profile("dev"),
    derandomize=True,
    database=None,
    print_blob=True,
)
settings.register_profile(
    "thorough",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Modules that exist only to be imported by tests needing an optional framework: skip them
# at collection (``--doctest-modules`` would import them) when the framework is missing.
collect_ignore_glob: list[str] = []
try:
    import torch  # noqa: F401
except ImportError:
    collect_ignore_glob.append("implementations/torch_*.py")
try:
    import jax  # noqa: F401
except ImportError:
    collect_ignore_glob.append("implementations/jax_*.py")
