"""A stop request while a child process is being spawned waits until the child is recorded."""

from __future__ import annotations

import os
import signal
import time

import pytest

from devsupport.signals import stop_requests_held


class StopRequested(Exception):
    pass


def raise_stop(_signum: int, _frame: object) -> None:
    raise StopRequested


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_request_inside_the_block_is_raised_as_the_block_ends(
    signum: signal.Signals,
) -> None:
    previous = signal.signal(signum, raise_stop)
    try:
        steps = []
        with pytest.raises(StopRequested), stop_requests_held():
            os.kill(os.getpid(), signum)
            time.sleep(0.05)  # the handler has run by now: it only noted the request
            steps.append("the block ran to its end")
        assert steps == ["the block ran to its end"]
        assert signal.getsignal(signum) is raise_stop  # the owner's handler is back

        with stop_requests_held():  # nothing held: nothing raised
            steps.append("quiet")
        assert steps[-1] == "quiet"
    finally:
        signal.signal(signum, previous)
