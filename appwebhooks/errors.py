"""The app webhooks' expected failures."""

from __future__ import annotations

from core.errors import InvalidInput, NotFound


class EndpointNotFound(NotFound):
    """No such endpoint of the caller's utility (another utility's id is not found either)."""

    def __init__(self) -> None:
        super().__init__("no such webhook endpoint")


class UnacceptableEndpointUrl(InvalidInput):
    """The URL may not receive webhooks: not https, or an address inside the network."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="url")


class RefusedAddress(Exception):
    """At delivery, the endpoint's host resolved to an address webhooks never go to."""
