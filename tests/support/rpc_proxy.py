"""A JSON-RPC proxy in front of anvil that can hold a relayer's broadcasts, so a test can kill
the relayer inside exactly the crash window it means to test instead of hoping to hit it.

Every request is forwarded unchanged, except those that broadcast (``eth_sendRawTransaction``,
alone or in a batch) once ``passing`` of them have gone through:

- ``HOLD_BEFORE_SENDING``: held before the node sees it. The relayer is stuck with its
  transactions signed and stored but on no node;
- ``HOLD_ANSWER``: forwarded (on automining anvil: mined), but the answer is held. The
  relayer is stuck with its transactions on chain and its database still saying SIGNED.

A held request is never completed: ``release_held`` drops it (its connection closes without an
answer, and a request held before sending never reaches the node), as after a crash.

Instead of holding, ``answer_broadcasts_with_error`` answers them with a JSON-RPC error the
relayer does not know, as a proxy or a node with its own wording may: forwarded first (on
automining anvil: mined) or never sent at all.
"""

from __future__ import annotations

import contextlib
import json
import threading
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

import httpx

SEND_METHOD = b'"eth_sendRawTransaction"'


class Hold(StrEnum):
    NOTHING = "NOTHING"
    HOLD_BEFORE_SENDING = "HOLD_BEFORE_SENDING"
    HOLD_ANSWER = "HOLD_ANSWER"
    ERROR_AFTER_SENDING = "ERROR_AFTER_SENDING"
    ERROR_WITHOUT_SENDING = "ERROR_WITHOUT_SENDING"


ERRORS = (Hold.ERROR_AFTER_SENDING, Hold.ERROR_WITHOUT_SENDING)


class FaultyRpcProxy:
    def __init__(self, *, upstream: str) -> None:
        self.upstream = upstream
        self._http = httpx.Client(timeout=60)
        self._condition = threading.Condition()
        self._hold = Hold.NOTHING
        self._passing = 0
        self._release = threading.Event()
        self.held = 0
        self._error_message = ""
        self._errors_left: int | None = None
        self.answered_with_error = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultyRpcProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.release_held()
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def hold_broadcasts(self, hold: Hold, *, passing: int = 0) -> None:
        """From now on let ``passing`` broadcasting requests through, then ``hold`` the rest."""
        with self._condition:
            self._hold, self._passing = hold, passing

    def answer_broadcasts_with_error(
        self, message: str, *, forward: bool, times: int | None = None
    ) -> None:
        """From now on answer the next ``times`` broadcasting requests (every one if
        ``None``) with the JSON-RPC error ``message``, after forwarding them or without."""
        with self._condition:
            self._hold = Hold.ERROR_AFTER_SENDING if forward else Hold.ERROR_WITHOUT_SENDING
            self._passing = 0
            self._error_message, self._errors_left = message, times

    def release_held(self) -> None:
        """Drop every held request (never completing it) and stop holding."""
        with self._condition:
            self._hold = Hold.NOTHING
            self._release.set()
            self._release = threading.Event()
            self.held = 0

    def _decide(self, body: bytes) -> tuple[Hold, threading.Event]:
        with self._condition:
            if SEND_METHOD not in body or self._hold == Hold.NOTHING:
                return Hold.NOTHING, self._release
            if self._passing > 0:
                self._passing -= 1
                return Hold.NOTHING, self._release
            hold = self._hold
            if hold in ERRORS:
                self.answered_with_error += 1
                if self._errors_left is not None:
                    self._errors_left -= 1
                    if self._errors_left <= 0:
                        self._hold = Hold.NOTHING
            return hold, self._release

    def _error_answer(self, body: bytes, answer: bytes | None) -> bytes:
        """The error in place of each broadcast's answer; with the node's ``answer`` (``None``:
        nothing was sent), a batch's other calls keep theirs."""
        requests = json.loads(body)
        error = {"code": -32000, "message": self._error_message}
        if isinstance(requests, dict):
            return json.dumps({"jsonrpc": "2.0", "id": requests.get("id"), "error": error}).encode()
        answered = {item["id"]: item for item in json.loads(answer)} if answer else {}

        def answer_to(request: dict) -> dict:
            failed = {"jsonrpc": "2.0", "id": request.get("id"), "error": error}
            if request.get("method") == "eth_sendRawTransaction":
                return failed
            return answered.get(request.get("id"), failed)

        return json.dumps([answer_to(request) for request in requests]).encode()

    def _wait_until_released(self, released: threading.Event) -> None:
        """Counted as held only from here: with ``HOLD_ANSWER`` the node has answered."""
        with self._condition:
            if released.is_set():  # released (the worker killed) while this was forwarded
                return
            self.held += 1
        released.wait()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hold, released = proxy._decide(body)
                if hold == Hold.HOLD_BEFORE_SENDING:
                    proxy._wait_until_released(released)
                    self.close_connection = True
                    return
                if hold == Hold.ERROR_WITHOUT_SENDING:
                    self._answer(200, proxy._error_answer(body, None))
                    return
                answer = proxy._http.post(
                    proxy.upstream, content=body, headers={"Content-Type": "application/json"}
                )
                if hold == Hold.HOLD_ANSWER:
                    proxy._wait_until_released(released)
                    self.close_connection = True
                    return
                if hold == Hold.ERROR_AFTER_SENDING:
                    self._answer(200, proxy._error_answer(body, answer.content))
                    return
                self._answer(answer.status_code, answer.content)

            def _answer(self, status: int, content: bytes) -> None:
                with contextlib.suppress(ConnectionError):  # the worker may be killed by now
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler
