"""Where a webhook may go. Outside development an endpoint is an ``https`` URL whose host is,
and resolves only to, public addresses: a utility administrator must not be able to make this
server post into its own network (SSRF). The check runs when the endpoint is made and again at
every attempt, by the resolver the delivery connects with, so a name that later resolves
inside the network (DNS rebinding) is refused too. In development ``http`` and any address are
allowed (receivers on 127.0.0.1)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from appwebhooks.errors import RefusedAddress, UnacceptableEndpointUrl

MAX_URL_LENGTH = 2000


def is_public_address(text: str) -> bool:
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def check_endpoint_url(url: str, *, allow_private: bool) -> str:
    """The URL, refused (``UnacceptableEndpointUrl``) unless webhooks may go there."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise UnacceptableEndpointUrl(f"a URL has at most {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise UnacceptableEndpointUrl("the endpoint must be an https URL")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise UnacceptableEndpointUrl("the URL needs a host, and no user or password in it")
    if parts.fragment:
        raise UnacceptableEndpointUrl("the URL may not have a #fragment")
    try:
        parts.port  # noqa: B018 (a bad port raises)
    except ValueError as error:
        raise UnacceptableEndpointUrl("the URL's port is not a number") from error
    literal = _ip_literal(parts.hostname)
    if not allow_private:
        if literal is not None and not is_public_address(literal):
            raise UnacceptableEndpointUrl("the endpoint's address is not a public one")
        if parts.hostname == "localhost" or parts.hostname.endswith(".localhost"):
            raise UnacceptableEndpointUrl("the endpoint's address is not a public one")
    return url


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp's default, and refuses a name with any non-public address: the
    connection then goes only to addresses this resolver vetted."""

    def __init__(self) -> None:
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        refused = [result["host"] for result in results if not is_public_address(result["host"])]
        if refused:
            raise RefusedAddress(f"{host} resolves to an address webhooks never go to")
        return results

    async def close(self) -> None:
        await self._resolver.close()
