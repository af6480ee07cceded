"""The common part of the test servers that speak a remote API's wire format on 127.0.0.1:
a real threaded HTTP server, a queue of injected faults, a log of what clients sent.

stdlib http.server in a thread: real sockets and real HTTP, small enough to read in one go.
Successful answers come from the real local GGUF model (the `chat_model` fixture).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Fault:
    """One injected failure: the next request gets this status and body (after `delay` s)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any]
    at: float  # time.monotonic() on arrival


class WireServer:
    """A real HTTP server on 127.0.0.1 (a free port) run in a daemon thread.

    `fail(*faults)` makes the next requests fail in order; `seen` logs every request;
    `streams_closed` counts streams whose client went away before the end, and
    `client_gone` is set when that happens.
    """

    handler: type[BaseHTTPRequestHandler]

    def __init__(self, model, api_key: str = "test-key") -> None:
        self.model = model
        self.api_key = api_key
        self.faults: deque[Fault] = deque()
        self.seen: list[Seen] = []
        self.streams_closed = 0
        self.client_gone = threading.Event()
        self.delta_delay = 0.0  # seconds between streamed deltas
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler)
        self._httpd.daemon_threads = True
        self._httpd.wire = self  # handlers reach the server's state through this
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def fail(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def reset(self) -> None:
        self.faults.clear()
        self.seen.clear()
        self.streams_closed = 0
        self.client_gone.clear()
        self.delta_delay = 0.0

    def posts(self) -> list[Seen]:
        return [s for s in self.seen if s.path != "/v1/models"]

    def __enter__(self) -> WireServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class WireHandler(BaseHTTPRequestHandler):
    """Request plumbing shared by the wire formats: JSON in and out, SSE, faults."""

    @property
    def wire(self) -> WireServer:
        return self.server.wire

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        self.wire.seen.append(
            Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
        )
        return body

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (a timeout test)

    def send_fault_if_any(self) -> bool:
        if not self.wire.faults:
            return False
        fault = self.wire.faults.popleft()
        if fault.delay:
            time.sleep(fault.delay)
        self.send_json(fault.status, fault.body, fault.headers)
        return True

    def start_sse(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.end_headers()  # HTTP/1.0: the body ends when the server closes the connection

    def send_sse(self, data: Any, event: str | None = None) -> bool:
        """Write one SSE event; False when the client has gone away."""
        text = data if isinstance(data, str) else json.dumps(data)
        frame = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
        try:
            self.wfile.write(frame.encode())
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return False
        if self.wire.delta_delay:
            time.sleep(self.wire.delta_delay)
        return True

    def stream_model(self, messages, params, on_delta):
        """Run the real model, handing each delta to `on_delta` (returning False stops it).
        Returns the model's StreamEnd, or None when on_delta stopped it early."""
        events = self.wire.model.stream_events(messages, **params)
        try:
            for event in events:
                if not isinstance(event, str):
                    return event
                if not on_delta(event):
                    return None
        finally:
            events.close()  # stopped early (client gone, stop sequence): stop generating
        return None

    def client_went_away(self) -> None:
        self.wire.streams_closed += 1
        self.wire.client_gone.set()
