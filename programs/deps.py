"""What programs and enrollment use of the process's services: the onramp's (card-paid fees)
and, through it, the relayer's."""

from __future__ import annotations

from typing import Protocol

from onramp.deps import OnrampServices


class ProgramServices(OnrampServices, Protocol):
    pass
