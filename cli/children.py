"""Run a child process in the foreground and pass signals on to it (``stsync flower``,
``stsync sandbox up``): SIGTERM, SIGINT or SIGHUP to stsync reach the real child, and stsync
exits with the child's code once it has stopped, so nothing is left running behind it.

The child runs in its own session: Ctrl-C in a terminal reaches stsync only, which passes it on
once (the child does not get it twice). On Linux the child also gets SIGTERM if stsync itself is
killed outright (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from types import FrameType

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def run_forwarding_signals(cmd: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Run ``cmd`` until it exits; forward SIGTERM/SIGINT/SIGHUP to it; return its exit code."""
    preexec: Callable[[], None] | None = _die_with_parent if sys.platform == "linux" else None
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
        list(cmd),
        env=env,
        start_new_session=True,
        preexec_fn=preexec,  # noqa: PLW1509
    )

    def forward(signum: int, _frame: FrameType | None) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc.poll() is None:  # pragma: no cover - only if wait() itself was interrupted
            proc.terminate()
            proc.wait()
    # a child stopped by a signal: exit like a shell would (128 + signal number)
    return 128 - code if code < 0 else code
