"""A real local HTTP server for feed fixtures (tests only).

Runs ``http.server.ThreadingHTTPServer`` on 127.0.0.1 in a thread, so it is reachable
from the test process and from daemons started as subprocesses. Each path is a
``Route``: status, body, headers; ETag/Last-Modified validators answer 304 the way a
real server does. ``handler`` lets a test take over a path completely.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    gzip: bool = False
    handler: Callable[[BaseHTTPRequestHandler], None] | None = None


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)  # when it came in


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                server._handle(self)

            def do_HEAD(self) -> None:
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FeedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def set(self, path: str, body: bytes | str = b"", **kwargs: Any) -> Route:
        if isinstance(body, str):
            body = body.encode("utf-8")
        route = Route(body=body, **kwargs)
        with self._lock:
            self.routes[path] = route
        return route

    def hits(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path
        with self._lock:
            self.requests.append(Request(h.command, path, {k: v for k, v in h.headers.items()}))
            route = self.routes.get(path.split("?", 1)[0])
        if route is None:
            self._send(h, 404, b"not found", {"Content-Type": "text/plain"})
            return
        if route.handler is not None:
            route.handler(h)
            return
        headers = {"Content-Type": "application/rss+xml; charset=utf-8", **route.headers}
        if route.etag:
            headers["ETag"] = route.etag
        if route.last_modified:
            headers["Last-Modified"] = route.last_modified
        if route.status == 200:
            inm = h.headers.get("If-None-Match")
            ims = h.headers.get("If-Modified-Since")
            if (route.etag and inm == route.etag) or (
                route.last_modified and not route.etag and ims == route.last_modified
            ):
                self._send(h, 304, b"", {k: v for k, v in headers.items() if k != "Content-Type"})
                return
        body = route.body
        if route.gzip and "gzip" in (h.headers.get("Accept-Encoding") or ""):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        self._send(h, route.status, body, headers)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header(
            "Content-Length", str(0 if h.command == "HEAD" or status == 304 else len(body))
        )
        h.end_headers()
        if h.command != "HEAD" and status != 304:
            h.wfile.write(body)


def rss(title: str, items: list[dict[str, str]], *, extra_channel: str = "") -> str:
    """A small RSS 2.0 document; each item dict may have title, link, guid, description,
    pubDate. Values are inserted as given (escape them yourself when testing escaping)."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<rss version="2.0"><channel>',
        f"<title>{title}</title><link>http://example.invalid/</link>",
        "<description>fixture</description>",
        extra_channel,
    ]
    for it in items:
        parts.append("<item>")
        for key in ("title", "link", "guid", "description", "pubDate"):
            if key in it:
                parts.append(f"<{key}>{it[key]}</{key}>")
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "\n".join(parts)


# --- handler factories for special server behaviours (Route(handler=...)) -------------

Handler = Callable[[BaseHTTPRequestHandler], None]


def raw_handler(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    """Send exactly this status, headers and body (no validators, no compression)."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    return handle


def redirect_handler(location: str, status: int = 301) -> Handler:
    return raw_handler(status, b"", {"Location": location})


def drip_handler(body: bytes, delay: float) -> Handler:
    """Announce the full length, then send one byte every ``delay`` seconds (slowloris-style
    server); gives up when the client disconnects."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        try:
            for i in range(len(body)):
                time.sleep(delay)
                h.wfile.write(body[i : i + 1])
                h.wfile.flush()
        except OSError:
            pass
        h.close_connection = True

    return handle


def stream_handler(
    total: int,
    *,
    chunk: bytes = b"<!-- " + b"x" * 65_000 + b" -->\n",
    content_length: bool = True,
    headers: dict[str, str] | None = None,
) -> Handler:
    """Stream ``total`` bytes generated on the fly (nothing that size is held in memory);
    without ``content_length`` the body is delimited by closing the connection."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        if content_length:
            h.send_header("Content-Length", str(total))
        else:
            h.send_header("Connection", "close")
        h.end_headers()
        sent = 0
        try:
            while sent < total:
                piece = chunk[: total - sent]
                h.wfile.write(piece)
                sent += len(piece)
        except OSError:
            pass
        h.close_connection = True

    return handle
