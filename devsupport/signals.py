"""Stop requests (SIGINT, SIGTERM) held back for a moment, so a child process is never lost."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_requests_held() -> Iterator[None]:
    """Inside the block a stop request is only noted; it is raised again as the block ends.

    ``serve`` turns SIGTERM (and Ctrl-C) into an exception that unwinds its clean-up. Raised
    inside ``subprocess.Popen`` after the fork, that exception would leave a child running
    that its owner never recorded, so never stops. Spawning and recording the child inside
    this block closes that gap; the signal mask is not touched, because a child inherits it
    and would then ignore the stop signals itself. Outside the main thread (where Python runs
    signal handlers) there is nothing to hold."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        held.append(signum)

    previous: dict[int, object] = {}
    try:  # entered first: a signal between the two swaps still finds its handler restored
        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, note)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)
