"""Who is calling: the verified facts of an access token."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.errors import Forbidden


class Scope(StrEnum):
    WALLET_READ = "wallet:read"
    WALLET_SIGN = "wallet:sign"
    UTILITY_ADMIN = "utility:admin"


@dataclass(frozen=True)
class Principal:
    tenant_id: str
    tenant_slug: str
    issuer: str
    subject: str
    email: str | None
    client_id: str | None
    scopes: frozenset[str]
    # The token's ``exp`` (epoch seconds, exactly as the JSON held it); None for the backend's
    # own principals, which no token carries. A long-lived WebSocket is closed when it passes.
    expires_at: int | float | None = None

    def require(self, scope: Scope) -> None:
        if scope.value not in self.scopes:
            raise Forbidden(
                f"this action needs the {scope.value!r} scope; sign in again granting it"
            )
