"""What the JSON-RPC client says when a node fails: never the URL's path or query, where
hosted providers keep their API key (it goes to logs, and to /metrics' warnings every scrape)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chain.rpc import JsonRpc, RpcUnavailable
from tests.support.ports import free_port

SECRET = "SECRET-API-KEY-0123456789"


class RateLimited(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(429)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def rate_limited_node() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RateLimited)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v2/{SECRET}?key={SECRET}"
    finally:
        server.shutdown()


async def test_an_http_error_names_the_status_not_the_url(rate_limited_node: str) -> None:
    rpc = JsonRpc(rate_limited_node, timeout_seconds=5)
    try:
        with pytest.raises(RpcUnavailable) as failure:
            await rpc.call("eth_chainId")
    finally:
        await rpc.close()
    assert "429" in str(failure.value)
    assert SECRET not in str(failure.value)


async def test_a_refused_connection_shows_the_host_only() -> None:
    rpc = JsonRpc(f"http://127.0.0.1:{free_port()}/v2/{SECRET}", timeout_seconds=5)
    try:
        with pytest.raises(RpcUnavailable) as failure:
            await rpc.call("eth_chainId")
    finally:
        await rpc.close()
    assert SECRET not in str(failure.value)
