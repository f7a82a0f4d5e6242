"""A utility the API trusts, as configured (``OVPP_TENANTS``), and the origin check that
settings share."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

PLATFORM_TENANT_SLUG = "ovpp-platform"
"""The system tenant of the onramp treasury (onramp/treasury.py): no configured utility's."""


_ORIGIN_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")
"""A host (name, IPv4 or [IPv6]) and an optional port: what follows ``scheme://`` in an origin."""


def is_origin(value: str) -> bool:
    """``http(s)://host[:port]`` and nothing more (a trailing ``/`` aside)."""
    parts = urlsplit(value)
    return (
        parts.scheme in ("http", "https")
        and bool(_ORIGIN_HOST.match(parts.netloc))
        and parts.path in ("", "/")
        and not parts.query
        and not parts.fragment
    )


class TenantConfig(BaseModel):
    """A utility whose OpenID Provider the API trusts."""

    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")
    name: str
    issuer: str
    audience: str
    admin_client_ids: list[str] = Field(
        default_factory=list,
        description="OAuth client ids (the token's `client_id`, or `azp`) whose tokens may use "
        "`utility:admin`. Empty: nobody administers this utility through the API.",
    )

    @field_validator("slug")
    @classmethod
    def _not_a_system_tenant(cls, value: str) -> str:
        if value == PLATFORM_TENANT_SLUG:
            raise ValueError(f"{value!r} is the system tenant's slug (the onramp treasury's)")
        return value

    @field_validator("issuer")
    @classmethod
    def _issuer_is_a_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("an issuer is an https:// URL")
        return value
