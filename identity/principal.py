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
    client_id: str | None  # the token's client_id (RFC 9068), else its azp; None if they differ
    scopes: frozenset[str]
    admin_client_ids: frozenset[str] = frozenset()
    """The clients the utility allows to administer it (``TenantConfig.admin_client_ids``)."""
    # The token's ``exp`` (epoch seconds, exactly as the JSON held it); None for the backend's
    # own principals, which no token carries. A long-lived WebSocket is closed when it passes.
    expires_at: int | float | None = None

    def require(self, scope: Scope) -> None:
        if scope.value not in self.scopes:
            raise Forbidden(
                f"this action needs the {scope.value!r} scope; sign in again granting it"
            )
        # Many providers grant any API scope to any client that asks: the scope string alone
        # would let a customer app's token administer the utility.
        if scope is Scope.UTILITY_ADMIN and self.client_id not in self.admin_client_ids:
            raise Forbidden(
                "utility administration needs a token of one of the utility's administration "
                "clients; this token's client is not one"
            )
