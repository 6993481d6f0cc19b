"""A loopback HTTP server for offline download tests.

    with FileServer(directory) as server:
        server.corrupt("neutral_front/001_03.jpg")      # serve altered bytes
        server.fail("smiling_front/001_08.jpg", times=2)  # 500 twice, then the file
        server.missing("london_info.csv")               # always 404
        download(server.url + "/neutral_front/001_03.jpg")
        assert server.requests["neutral_front/001_03.jpg"] == 1
"""

from __future__ import annotations

import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FileServer:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).resolve()
        self.requests: Counter[str] = Counter()
        self._corrupt: set[str] = set()
        self._fail: dict[str, int] = {}
        self._missing: set[str] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def corrupt(self, path: str) -> None:
        self._corrupt.add(path)

    def fail(self, path: str, times: int) -> None:
        self._fail[path] = times

    def missing(self, path: str) -> None:
        self._missing.add(path)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._corrupt.clear()
            self._fail.clear()
            self._missing.clear()

    def __enter__(self) -> "FileServer":
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _respond(self, path: str) -> tuple[int, bytes]:
        with self._lock:
            self.requests[path] += 1
            if path in self._missing:
                return 404, b"not found"
            if self._fail.get(path, 0) > 0:
                self._fail[path] -= 1
                return 500, b"temporary failure"
        file = (self.directory / path).resolve()
        if not file.is_relative_to(self.directory) or not file.is_file():
            return 404, b"not found"
        body = file.read_bytes()
        if path in self._corrupt:
            # Same length, different bytes: only a checksum can tell.
            body = bytes([body[0] ^ 0xFF]) + body[1:] if body else b"x"
        return 200, body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
                status, body = owner._respond(path)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass  # keep pytest output clean

        return Handler
