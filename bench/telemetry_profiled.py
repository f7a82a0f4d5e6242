"""``ovpp-wallet program-server`` under cProfile (``bench.telemetry_ingest --profile FILE``): the
stats are written to FILE when it stops (SIGINT)."""

from __future__ import annotations

import cProfile
import sys

from cli.main import main


def serve_profiled(path: str) -> None:
    profile = cProfile.Profile()
    profile.enable()
    try:
        main(["program-server"], standalone_mode=False)
    finally:
        profile.disable()
        profile.dump_stats(path)


if __name__ == "__main__":
    serve_profiled(sys.argv[1])
