"""A JSON-RPC proxy in front of anvil that plays a node in trouble: down (every request answered
503), or refusing ``eth_getLogs`` over more than ``max_log_blocks`` blocks as hosted nodes do
(with a JSON-RPC error in that call's place; the batch's other calls are answered)."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import httpx

REFUSAL = {"code": -32005, "message": "query returned more than 10000 results"}


class TroubledNode:
    def __init__(self, *, upstream: str) -> None:
        self.upstream = upstream
        self.down = False
        self.max_log_blocks: int | None = None
        self.requests_while_down = 0
        self.refused_ranges = 0
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=60)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> TroubledNode:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def _too_wide(self, request: dict) -> bool:
        if request.get("method") != "eth_getLogs" or self.max_log_blocks is None:
            return False
        (log_filter,) = request["params"]
        blocks = int(log_filter["toBlock"], 16) - int(log_filter["fromBlock"], 16) + 1
        return blocks > self.max_log_blocks

    def _answer_to(self, body: bytes) -> tuple[int, bytes]:
        with self._lock:
            if self.down:
                self.requests_while_down += 1
                return 503, b"node down"
        requests = json.loads(body)
        answer = self._http.post(
            self.upstream, content=body, headers={"Content-Type": "application/json"}
        )
        if not isinstance(requests, list) or not any(map(self._too_wide, requests)):
            return answer.status_code, answer.content
        answered = {item["id"]: item for item in answer.json()}
        with self._lock:
            self.refused_ranges += 1
        return 200, json.dumps(
            [
                {"jsonrpc": "2.0", "id": request["id"], "error": REFUSAL}
                if self._too_wide(request)
                else answered[request["id"]]
                for request in requests
            ]
        ).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, content = proxy._answer_to(body)
                with contextlib.suppress(ConnectionError):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler
