"""``ovpp-wallet serve`` with a profiler of CPU time that the benchmark switches on (SIGUSR1)
and off (SIGUSR2, which also writes its stats to the path given as the only argument), so the
profile holds the measured requests and nothing of the start-up.

    python -m bench.profiled_serve /tmp/api.prof   # configured by environment, as serve is
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from typing import Any

from cli.main import main as ovpp_wallet


def serve_profiled(path: str) -> None:
    # CPU time, not wall time: an idle event loop waiting in epoll is not the API's cost.
    profiler = cProfile.Profile(time.process_time)

    def start(*_: Any) -> None:
        profiler.enable()

    def stop(*_: Any) -> None:
        profiler.disable()
        profiler.dump_stats(path)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = ["ovpp-wallet", "serve"]
    ovpp_wallet()


if __name__ == "__main__":
    serve_profiled(sys.argv[1])
