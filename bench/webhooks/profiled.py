"""``python -m bench.webhooks.profiled FILE ARGS…``: ``ovpp-wallet ARGS…`` under cProfile with a
CPU clock (``time.process_time``), so a coroutine waiting on the database or the network costs
nothing in the profile; the profile is written to FILE when the command returns (``serve``
returns on SIGTERM)."""

from __future__ import annotations

import cProfile
import sys
import time


def main() -> None:
    output, arguments = sys.argv[1], sys.argv[2:]
    from cli.main import main as ovpp_wallet

    profile = cProfile.Profile(time.process_time)
    profile.enable()
    try:
        ovpp_wallet(arguments, standalone_mode=False)
    finally:
        profile.disable()
        profile.dump_stats(output)


if __name__ == "__main__":
    main()
