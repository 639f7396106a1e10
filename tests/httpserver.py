"""A tiny local HTTP server for tests: serves fixed bytes, misbehaves on request.

Usage::

    from httpserver import LocalServer

    with LocalServer({"/files/a.tar.gz": data}) as server:
        url = server.url("/files/a.tar.gz")
        server.behaviour.cut_after, server.behaviour.cut_requests = 1000, 2
        ...
        assert server.requests[-1].headers.get("Range") == "bytes=1000-"

It listens on 127.0.0.1 only (a free port picked by the OS), answers GET and HEAD from
a ThreadingHTTPServer in a daemon thread, and shuts down when the ``with`` block ends.
Behaviours are plain attributes of ``server.behaviour`` and may be changed between
requests. Unknown paths get 404.
"""

from __future__ import annotations

import dataclasses
import http.server
import re
import socket
import threading
from typing import Mapping

HOST = "127.0.0.1"
HANDLER_TIMEOUT = 5.0  # seconds a handler waits on a silent client
MAX_STALL = 5.0  # seconds, upper bound of Behaviour.stall_seconds
MAX_REQUESTS = 1000  # more requests than this get 503: a runaway client cannot loop forever
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclasses.dataclass
class Behaviour:
    """How the server (mis)behaves. Counts refer to GET requests since the server started.

    Attributes:
      honor_range: answer ``Range: bytes=N-`` with 206 + Content-Range (416 past the end);
        False: ignore Range and send 200 with the full body.
      cut_after: on the first ``cut_requests`` GETs, close the connection after this many
        body bytes (headers still announce the full length).
      cut_requests: how many GETs are cut.
      stall_seconds: on cut GETs, wait this long (at most MAX_STALL) before closing,
        so a client with a shorter timeout sees a timeout.
      length_delta: added to the announced Content-Length (a server lying about the size).
      send_length: False: no Content-Length, the body ends when the connection closes.
      fail_status: answer the first ``fail_requests`` GETs with this status (e.g. 503).
      fail_requests: how many GETs fail.
    """

    honor_range: bool = True
    cut_after: int | None = None
    cut_requests: int = 0
    stall_seconds: float = 0.0
    length_delta: int = 0
    send_length: bool = True
    fail_status: int | None = None
    fail_requests: int = 0


@dataclasses.dataclass(frozen=True)
class Request:
    """One logged request: method, path, headers (dict, original case), status answered."""

    method: str
    path: str
    headers: dict
    status: int


class LocalServer:
    """Context manager serving ``files`` ({url path: bytes}) on 127.0.0.1.

    Attributes:
      behaviour: a Behaviour, changeable at any time.
      requests: list of Request, in arrival order.
      port: the TCP port (after ``__enter__``).
    """

    def __init__(self, files: Mapping[str, bytes], behaviour: Behaviour | None = None):
        self.files = {("/" + p.lstrip("/")): bytes(b) for p, b in files.items()}
        self.behaviour = behaviour or Behaviour()
        self.requests: list[Request] = []
        self.port: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._gets = 0
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/") -> str:
        """The http:// URL of ``path`` on this server."""
        if self.port is None:
            raise RuntimeError("server not started: use it in a with block")
        return f"http://{HOST}:{self.port}/{path.lstrip('/')}"

    def range_headers(self) -> list[str | None]:
        """The Range header of every GET so far (None where absent)."""
        with self._lock:
            return [r.headers.get("Range") for r in self.requests if r.method == "GET"]

    def __enter__(self) -> "LocalServer":
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()  # wakes stalled handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=HANDLER_TIMEOUT)

    def _next_get(self) -> int:
        with self._lock:
            self._gets += 1
            return self._gets

    def _log(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


class _Handler(http.server.BaseHTTPRequestHandler):
    owner: LocalServer
    protocol_version = "HTTP/1.0"  # one request per connection; bodies may end at close
    timeout = HANDLER_TIMEOUT

    def log_message(self, format, *args) -> None:  # noqa: A002 - keep test output quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        owner, b = self.owner, self.owner.behaviour
        n = owner._next_get() if body else 0
        data = owner.files.get(self.path.split("?", 1)[0])
        full = len(data) if data is not None else 0
        status, start, cut = 200, 0, None
        if n > MAX_REQUESTS:
            status = 503
        elif data is None:
            status = 404
        elif body and b.fail_status is not None and n <= b.fail_requests:
            status = b.fail_status
        elif b.honor_range and self.headers.get("Range"):
            match = _RANGE.match(self.headers["Range"].strip())
            if match is None:
                status = 400
            elif int(match.group(1)) >= len(data):
                status = 416
            else:
                status, start = 206, int(match.group(1))
                end = int(match.group(2)) + 1 if match.group(2) else len(data)
                data = data[:end]
        owner._log(Request(self.command, self.path, dict(self.headers.items()), status))
        if status not in (200, 206):
            self.send_response(status)
            if status == 416:
                self.send_header("Content-Range", f"bytes */{full}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = data[start:]
        if body and b.cut_after is not None and n <= b.cut_requests:
            cut = b.cut_after
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes" if b.honor_range else "none")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + len(payload) - 1}/{full}")
        if b.send_length:
            self.send_header("Content-Length", str(len(payload) + b.length_delta))
        self.end_headers()
        if not body:
            return
        try:
            self.wfile.write(payload if cut is None else payload[:cut])
            self.wfile.flush()
        except ConnectionError:  # the client hung up (e.g. it read only Content-Length bytes)
            return
        if cut is None:
            return
        if b.stall_seconds:
            owner._stop.wait(min(b.stall_seconds, MAX_STALL))
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
