r"""Run untrusted code in a worker process, with time and memory limits.

:class:`Worker` forks a child process that holds one function and answers requests over a
pipe. Whatever the function does — raise, loop forever, call ``sys.exit`` or ``os._exit``,
kill its own process, exhaust memory, overwrite modules — the parent survives and learns what
happened as an :class:`Outcome`:

- ``"returned"``: the function returned (its value is in ``value``);
- ``"exited"``: the child ended on its own (``sys.exit``, ``os._exit``, ``exit code`` given);
- ``"crashed"``: the child was killed by a signal (a segfault, ``os.kill(os.getpid(), 9)``, the
  kernel's out-of-memory killer);
- ``"timed out"``: no answer within the request's time limit (the child is then killed).

After anything but ``"returned"`` the next request starts a fresh child. The function and its
arguments travel by ``fork`` (nothing is pickled on the way in, so closures work); results are
pickled back. Where ``fork`` is unavailable (Windows, macOS' default), the ``spawn`` method is
used and the function must be importable.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Outcome", "OutcomeKind", "Worker"]

OutcomeKind = Literal["returned", "exited", "crashed", "timed out"]


@dataclass(frozen=True)
class Outcome:
    """What became of one request to a :class:`Worker`.

    Attributes:
        kind: ``"returned"``, ``"exited"``, ``"crashed"`` or ``"timed out"``.
        value: the function's return value (for ``"returned"``).
        detail: a sentence for the report (exit code, signal name, time limit).
    """

    kind: OutcomeKind
    value: Any = None
    detail: str = ""


def _serve(connection: Any, function: Callable[..., Any], memory_limit: int | None) -> None:
    """The child's loop: answer each request with ``("ok", value)`` or ``("exit", code)``."""
    if memory_limit is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    while True:
        try:
            request = connection.recv()
        except EOFError:
            return
        try:
            value = function(*request)
        except SystemExit as stop:  # sys.exit() inside the function: a finding, not our exit
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            connection.send(("exit", code))
            return
        connection.send(("ok", value))


class Worker:
    """A child process that runs ``function(*request)`` for each request, isolated.

    Args:
        function: what the child runs; it should catch the exceptions it wants to report
            (an exception escaping it ends the child, seen as ``"exited"``).
        memory_limit: address-space limit of the child in bytes (``RLIMIT_AS``; POSIX only),
            or ``None``.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, function: Callable[..., Any], *, memory_limit: int | None = None) -> None:
        if not callable(function):
            raise TypeError(f"function must be callable, got {type(function).__name__}")
        if memory_limit is not None and (not isinstance(memory_limit, int) or memory_limit <= 0):
            raise ValueError(
                f"memory_limit must be a positive number of bytes, got {memory_limit!r}"
            )
        self._function = function
        self._memory_limit = memory_limit
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        self._process: Any = None
        self._connection: Any = None

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        process = self._context.Process(  # type: ignore[attr-defined]
            target=_serve, args=(child, self._function, self._memory_limit), daemon=True
        )
        with warnings.catch_warnings():
            # JAX warns at every fork of a process that imported it (XLA is multithreaded).
            # The child runs only the function given here; callers run JAX code in-process
            # (rlmath.conformance does), so the warning does not apply to what the child does.
            warnings.filterwarnings(
                "ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning
            )
            process.start()
        child.close()
        self._process, self._connection = process, parent

    def _stop(self) -> None:
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if connection is not None:
            connection.close()
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join(timeout=5)

    def _ended(self) -> Outcome:
        """The child is gone: say how."""
        process = self._process
        process.join(timeout=5)
        code = process.exitcode
        self._stop()
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return Outcome("crashed", None, f"the process was killed by {name}")
        return Outcome("exited", None, f"the process exited with code {code}")

    def call(self, *request: Any, timeout: float) -> Outcome:
        """Send ``request`` and wait at most ``timeout`` seconds for the answer."""
        if self._process is None:
            self._start()
        try:
            self._connection.send(request)
        except (BrokenPipeError, OSError):
            return self._ended()
        try:
            ready = self._connection.poll(timeout)
        except (EOFError, OSError):
            return self._ended()
        if not ready:
            self._stop()
            return Outcome(
                "timed out", None, f"no answer within {timeout:g} s (the worker was killed)"
            )
        try:
            tag, value = self._connection.recv()
        except (EOFError, OSError):
            return self._ended()
        if tag == "exit":
            self._process.join(timeout=5)
            self._stop()
            return Outcome("exited", None, f"the implementation called sys.exit({value})")
        return Outcome("returned", value)

    def close(self) -> None:
        """End the child (if any)."""
        self._stop()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self._stop()
        except Exception:
            pass


def _self_test() -> None:  # pragma: no cover - manual check: python -m rlmath.isolation
    with Worker(lambda x: x + 1) as worker:
        print(worker.call(1, timeout=5))
    with Worker(lambda x: os._exit(0)) as worker:
        print(worker.call(1, timeout=5))
    with Worker(lambda x: sys.exit(0)) as worker:
        print(worker.call(1, timeout=5))


if __name__ == "__main__":  # pragma: no cover
    _self_test()
