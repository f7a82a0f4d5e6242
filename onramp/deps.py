"""What the card onramp uses of the process's services: the relayer's, and the Stripe gateway
(None where card payments are not configured)."""

from __future__ import annotations

from typing import Protocol

from onramp.stripe_gateway import StripeGateway
from relayer.deps import RelayerServices


class OnrampServices(RelayerServices, Protocol):
    stripe: StripeGateway | None
