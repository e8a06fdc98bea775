"""Child processes that do not outlive the process that started them, and free ports for them.

A killed test run or an interrupted ``journeys demo`` must not leave brokers and
workers behind: on Linux the child asks the kernel for SIGKILL when its parent dies
(a Faust worker whose broker went with the parent can hang in a SIGTERM shutdown).
The kernel sends that signal when the *thread* that forked the child exits, not the
process: a broker started from ``asyncio.to_thread`` died with the executor's thread.
So :func:`spawn` forks from the main thread, or from one thread that lives as long as
the process.

>>> free_port() > 1024
True
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_PR_SET_PDEATHSIG = 1

_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def die_with_parent() -> None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` (a no-op off Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(command: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """``Popen(command, **popen)`` for a child that dies with this process, from whichever thread."""
    if threading.current_thread() is threading.main_thread():
        return subprocess.Popen(command, preexec_fn=die_with_parent, **popen)
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="child-spawner")
    return _spawner.submit(lambda: subprocess.Popen(command, preexec_fn=die_with_parent, **popen)).result()


def free_port(host: str = "127.0.0.1", taken: Iterable[int] = ()) -> int:
    """A TCP port that is free right now (the OS picks it), other than ``taken``."""
    avoid = set(taken)
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port
