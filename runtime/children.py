"""Child processes that do not outlive the process that started them.

A killed test run or an interrupted ``journeys demo`` must not leave brokers and
workers behind: on Linux the child asks the kernel for SIGKILL when its parent dies
(a Faust worker whose broker went with the parent can hang in a SIGTERM shutdown).
"""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` (a no-op off Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
