"""URLs safe to print: what start-up progress, logs and errors show of a database or RPC URL."""

from __future__ import annotations

from urllib.parse import urlsplit


def without_credentials(url: str) -> str:
    """``url`` with its user and password replaced by ``***``: safe to print or log."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def rpc_url_shown(url: str) -> str:
    """An RPC URL safe to print: no credentials, and no path or query either, where hosted
    RPC providers put their API keys (``https://…/v3/<key>``)."""
    parts = urlsplit(url)
    user = "***@" if parts.username or parts.password else ""
    port = f":{parts.port}" if parts.port else ""
    rest = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{user}{parts.hostname or ''}{port}{rest}"
