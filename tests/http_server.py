"""A local HTTP server for download tests: 127.0.0.1, a free port, byte ranges, dropped connections.

Tests put files in `server.files` (URL path -> bytes) and read `server.requests` (one dict
per request: path, range header, status) to see what the client did. With
`server.cut_first` set, the first request of each file sends its headers with the full
length but only half of the body, then closes the socket: the dropped connection a
resumable download must survive. With `length` unset, no Content-Length is sent: a cut body then
looks complete to the client.
"""

from __future__ import annotations

import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_GET(self):
        owner = self.server.owner
        data = owner.files.get(self.path)
        range_header = self.headers.get("Range")
        with owner.lock:
            first = self.path not in owner.served
            owner.served.add(self.path)
        if data is None:
            return self._reply(404, b"not found", range_header)
        start = 0
        if range_header and owner.ranges:
            match = re.fullmatch(r"bytes=(\d+)-", range_header)
            if not match or int(match.group(1)) >= len(data):
                return self._reply(416, b"", range_header)
            start = int(match.group(1))
        body = data[start:]
        self._record(206 if start else 200, range_header)
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if owner.length:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if owner.cut_first and first:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)

    def _record(self, status: int, range_header: str | None) -> None:
        with self.server.owner.lock:
            self.server.owner.requests.append({"path": self.path, "range": range_header, "status": status})

    def _reply(self, status: int, body: bytes, range_header: str | None) -> None:
        self._record(status, range_header)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FileServer:
    """Serve in-memory files over HTTP from a background thread; `close()` stops it."""

    def __init__(self, ranges: bool = True, cut_first: bool = False, length: bool = True):
        self.files: dict[str, bytes] = {}
        self.requests: list[dict] = []
        self.served: set[str] = set()
        self.ranges = ranges
        self.cut_first = cut_first
        self.length = length  # False: no Content-Length, the body ends when the connection closes
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, data: bytes) -> str:
        """Serve `data` at `path`; return its URL."""
        self.files[path] = data
        return self.base_url + path

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
