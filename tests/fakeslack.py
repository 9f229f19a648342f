"""A local HTTP server speaking enough of the Slack Web API for Wirewatch's tests.

Real sockets on 127.0.0.1 (random port, or the one you pass), served from a background
thread, so it is reachable from the test process and from daemon subprocesses alike.
Point the real slack-sdk client at ``base_url`` (``SLACK_API_URL``) or post to
``webhook_url`` (``SLACK_WEBHOOK_URL``)::

    with FakeSlack() as slack:
        client = AsyncWebClient(token=slack.token, base_url=slack.base_url)
        ...
        msgs = slack.wait_for(2, timeout=5)

Methods: ``apps.connections.open`` (Socket Mode: ``socket_url`` to ``app_token``),
``auth.test``, ``chat.postMessage`` and ``chat.update`` (JSON or form body,
Bearer or ``token`` field), ``conversations.history`` / ``conversations.replies`` (``oldest``,
``latest``, ``inclusive``, ``limit``, ``cursor``; metadata only with ``include_all_metadata``;
history newest first), ``conversations.list``, and the incoming-webhook ``POST``.
Channels may be given by name (``#alerts``/``alerts``) or id; a name gets a stable fake id
(``channel_id(name)``) which ``chat.postMessage`` returns like Slack does, and every method
accepts either form. Payloads are checked against Slack's limits (50 blocks, 3,000 chars per
section, 150 per header, 10 fields of 2,000, 40,000 chars of text) and rejected with
``invalid_blocks`` / ``msg_too_long`` / ``no_text`` as Slack would.

Recorded (thread-safe snapshots): ``messages`` (accepted posts: channel as requested,
channel_id, text, blocks, thread_ts, metadata, ts, payload, via), ``updates`` (accepted
``chat.update`` calls), ``calls`` (every request: method, status, error, payload, time).

Faults: ``rate_limit(n, retry_after=1)`` (next n requests answer 429 + Retry-After),
``server_errors(n, status=500)``, ``channel_error(channel, code)`` (``code=None`` clears),
``down()`` / ``up()`` (listening socket closed and reopened on the same port; open
connections are cut), ``accept_then_drop(n)`` (the next n posts are recorded, then the
connection is closed without an answer), ``set_delay(seconds)`` (answer latency),
``reset_faults()``. ``inject(*faults)`` queues one-shot faults for the next Web API
requests, one each, in order: ``"ratelimited"`` (429 + Retry-After ``retry_after``),
``"server_error"`` (500), ``"drop"`` (connection closed before the request is handled),
``"accept_drop"`` (a post or edit applied, then the connection closed unanswered),
``"accept_timeout"`` (applied, then answered only after ``hang`` seconds: longer than the
client's timeout).

The channel as a person sees it: ``chat.update`` replaces the whole message (text,
blocks and metadata; what it omits is gone, as in Slack), replies stay in their thread,
``conversations.history`` lists top-level messages and ``conversations.replies`` a thread.
``view(channel)`` gives that state (top-level messages, newest last, each with its
``replies``); ``versions`` (on each message) keeps every text it has shown, so a test can
check that nothing once visible was erased.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
WEBHOOK_PATH = "/services/T0000FAKE/B0000FAKE/fakewebhooksecret"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.open_sockets: set[socket.socket] = set()
        self.sock_lock = threading.Lock()
        super().__init__(addr, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sock_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sock_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self.sock_lock:
            socks = list(self.open_sockets)
            self.open_sockets.clear()
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


def _shown(m: dict[str, Any]) -> str:
    """Everything a person can read in a message: its text and its blocks."""
    return (m.get("text") or "") + "\n" + json.dumps(m.get("blocks") or [], ensure_ascii=False)


def shown(m: dict[str, Any]) -> str:
    return _shown(m)


class _Drop(Exception):
    """Close the connection without answering."""


class FakeSlack:
    def __init__(
        self,
        token: str | None = "xoxb-test-token",
        *,
        port: int = 0,
        webhook_channel: str = "#webhook",
        app_token: str = "xapp-test-token",
    ) -> None:
        self.token = token
        # Socket Mode: ``apps.connections.open`` answers ``socket_url`` (a
        # tests/fakesocket.py server) to the app-level token ``app_token``
        self.app_token = app_token
        self.socket_url: str | None = None
        self.webhook_channel = webhook_channel
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._messages: list[dict[str, Any]] = []
        self._hooks: list[dict[str, Any]] = []  # bodies posted to ``hook_url``
        self._updates: list[dict[str, Any]] = []
        self._calls: list[dict[str, Any]] = []
        self._names: dict[str, str] = {}  # channel id -> name
        self._last_ts = 0.0
        self._rate_limited = 0
        self._retry_after: float = 1
        self._server_errors = 0
        self._server_status = 500
        self._drops = 0
        self._delay = 0.0
        self._hold = 0.0
        self._channel_errors: dict[str, str] = {}
        self._faults: list[str] = []
        self._method_errors: dict[str, str] = {}
        self._fault_retry_after = 0.0
        self._hang = 1.0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = port
        self._bind()

    # ------------------------------------------------------------------ lifecycle

    def _bind(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                fake._handle(self)

            def do_GET(self) -> None:
                fake._handle(self)

        self._httpd = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._httpd.server_address[1]

    def start(self) -> FakeSlack:
        assert self._httpd is not None
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            if self._thread is not None:
                httpd.shutdown()
            httpd.server_close()
            httpd.cut_connections()
        self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def down(self) -> None:
        """Refuse connections (and cut open ones) until ``up()``."""
        self.stop()

    def up(self) -> None:
        """Listen again on the same port."""
        if self._httpd is None:
            self._bind()
            self.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def hook_url(self) -> str:
        """A generic JSON webhook receiver (Wirewatch's own webhook sink): every body is
        kept in ``hooks`` with its ``X-Wirewatch-Delivery`` as ``_delivery``. ``inject``
        faults apply to it as to the Web API."""
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def hooks(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._hooks)

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    # ------------------------------------------------------------------ faults

    def rate_limit(self, n: int, retry_after: float = 1) -> None:
        with self._lock:
            self._rate_limited = n
            self._retry_after = retry_after

    def server_errors(self, n: int, status: int = 500) -> None:
        with self._lock:
            self._server_errors = n
            self._server_status = status

    def channel_error(self, channel: str, error: str | None = "channel_not_found") -> None:
        with self._lock:
            if error is None:
                self._channel_errors.pop(channel, None)
            else:
                self._channel_errors[channel] = error

    def accept_then_drop(self, n: int = 1) -> None:
        with self._lock:
            self._drops = n

    def hold_answers(self, seconds: float) -> None:
        """Record each accepted post at once, but answer it only after ``seconds``: a
        client killed in between never learns that Slack accepted the message."""
        with self._lock:
            self._hold = seconds

    def method_error(self, method: str, error: str | None) -> None:
        """Answer every call of ``method`` (``conversations.history``) with ``error``
        (``missing_scope``...) until cleared with ``None``."""
        with self._lock:
            if error is None:
                self._method_errors.pop(method, None)
            else:
                self._method_errors[method] = error

    def inject(self, *faults: str, retry_after: float = 0.0, hang: float = 1.0) -> None:
        """Queue one-shot faults for the next Web API requests (see the module doc)."""
        known = {"ratelimited", "server_error", "drop", "accept_drop", "accept_timeout"}
        for f in faults:
            if f not in known:
                raise ValueError(f"unknown fault {f!r}")
        with self._lock:
            self._faults.extend(faults)
            self._fault_retry_after = retry_after
            self._hang = hang

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def set_delay(self, seconds: float) -> None:
        with self._lock:
            self._delay = seconds

    def reset_faults(self) -> None:
        with self._lock:
            self._rate_limited = self._server_errors = self._drops = 0
            self._delay = 0.0
            self._hold = 0.0
            self._channel_errors.clear()
            self._faults.clear()

    # ------------------------------------------------------------------ inspection

    @property
    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._messages)

    @property
    def updates(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._updates)

    @property
    def calls(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._calls)

    def view(self, channel: str) -> list[dict[str, Any]]:
        """What a person sees in ``channel``: top-level messages, oldest first, each a copy
        with ``replies`` (its thread, oldest first)."""
        cid = self.channel_id(channel)
        with self._lock:
            mine = [dict(m) for m in self._messages if m["channel_id"] == cid]
        top = [m for m in mine if m["thread_ts"] in (None, m["ts"]) or m.get("broadcast")]
        for m in top:
            m["replies"] = [r for r in mine if r["thread_ts"] == m["ts"] and r is not m]
            m["replies"] = [r for r in m["replies"] if r["ts"] != m["ts"]]
        top.sort(key=lambda m: float(m["ts"]))
        return top

    def tamper(self, channel: str, ts: str, *, repost: bool = False, **fields: Any) -> None:
        """Change the channel behind Wirewatch's back (a test of ``wirewatch audit``):
        replace fields of message ``ts``, or post a second copy of it (``repost``)."""
        cid = self.channel_id(channel)
        with self._lock:
            m = next(m for m in self._messages if m["channel_id"] == cid and m["ts"] == ts)
            if repost:
                copy = dict(m)
                copy["ts"] = self._next_ts()
                self._messages.append(copy)
            else:
                m.update(fields)

    def messages_in(self, channel: str) -> list[dict[str, Any]]:
        cid = self.channel_id(channel)
        with self._lock:
            return [m for m in self._messages if m["channel_id"] == cid]

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._updates.clear()
            self._calls.clear()
            self._hooks.clear()

    def wait_for(
        self, count: int, timeout: float = 5.0, *, channel: str | None = None
    ) -> list[dict[str, Any]]:
        """Block until at least ``count`` messages (in ``channel``, if given) were accepted;
        return them. Raises ``TimeoutError`` naming what did arrive."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = self.messages_in(channel) if channel else list(self._messages)
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"wanted {count} Slack messages, got {len(got)}: "
                        f"{[m['text'][:80] for m in got]}; calls: "
                        f"{[(c['method'], c['status'], c['error']) for c in self._calls[-10:]]}"
                    )
                self._cond.wait(min(left, 0.1))

    def channel_id(self, channel: str) -> str:
        if _ID.match(channel):
            with self._lock:
                self._names.setdefault(channel, channel)
            return channel
        name = channel.lstrip("#")
        cid = "C" + hashlib.sha1(name.encode("utf-8")).hexdigest()[:10].upper()
        with self._lock:
            self._names[cid] = name
        return cid

    # ------------------------------------------------------------------ HTTP

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        raw = self._read_body(h)
        payload = self._parse(h, url.query, raw)
        is_webhook = url.path.startswith("/services/")
        method = "webhook" if is_webhook else url.path.rsplit("/", 1)[-1]
        call: dict[str, Any] = {
            "method": method,
            "status": None,
            "error": None,
            "payload": payload,
            "time": time.time(),
        }
        with self._lock:
            self._calls.append(call)
            delay = self._delay
        if delay:
            time.sleep(delay)
        try:
            status, body, headers = self._dispatch(h, method, payload, is_webhook)
            with self._lock:
                hold = self._hold
            if hold and method == "chat.postMessage":
                with self._cond:
                    self._cond.notify_all()
                time.sleep(hold)  # accepted and recorded, answer not yet sent
        except _Drop:
            call["error"] = "dropped"
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            with self._cond:
                self._cond.notify_all()
            return
        call["status"] = status
        if isinstance(body, dict):
            call["error"] = body.get("error")
            data = json.dumps(body).encode("utf-8")
            ctype = "application/json; charset=utf-8"
        else:
            if status != 200:
                call["error"] = body
            data = body.encode("utf-8")
            ctype = "text/html" if status >= 500 else "text/plain; charset=utf-8"
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except OSError:  # the client gave up (timeout) or the server went down()
            h.close_connection = True
        with self._cond:
            self._cond.notify_all()

    @staticmethod
    def _read_body(h: BaseHTTPRequestHandler) -> bytes:
        if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(h.rfile.readline().strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    h.rfile.readline()
                    return out
                out += h.rfile.read(size)
                h.rfile.readline()
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length else b""

    @staticmethod
    def _parse(h: BaseHTTPRequestHandler, query: str, raw: bytes) -> dict[str, Any]:
        payload: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        ctype = (h.headers.get("Content-Type") or "").lower()
        if raw:
            if "json" in ctype:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_invalid_json": raw.decode("utf-8", "replace")}
                if isinstance(body, dict):
                    payload.update(body)
            else:
                payload.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        for key in ("blocks", "metadata", "attachments"):
            if isinstance(payload.get(key), str):
                try:
                    payload[key] = json.loads(payload[key])
                except ValueError:
                    payload[key] = {"_invalid_json": payload[key]}
        return payload

    def _dispatch(
        self,
        h: BaseHTTPRequestHandler,
        method: str,
        p: dict[str, Any],
        is_webhook: bool,
        faults: bool = True,
    ) -> tuple[int, dict[str, Any] | str, dict[str, str]]:
        with self._lock:
            use = faults and self._faults and not is_webhook
            fault = self._faults.pop(0) if use else None
        if fault is not None:
            return self._one_fault(h, fault, method, p)
        with self._lock:
            if self._rate_limited > 0:
                self._rate_limited -= 1
                ra = self._retry_after
                value = str(int(ra)) if float(ra).is_integer() else str(ra)
                body: dict[str, Any] | str = (
                    "rate_limited" if is_webhook else {"ok": False, "error": "ratelimited"}
                )
                return 429, body, {"Retry-After": value}
            if self._server_errors > 0:
                self._server_errors -= 1
                return self._server_status, "<html><body>Server Error</body></html>", {}
        if is_webhook:
            return self._webhook(p)
        if method == "hook":
            with self._cond:
                self._hooks.append({**p, "_delivery": h.headers.get("X-Wirewatch-Delivery")})
                self._cond.notify_all()
            return 204, "", {}
        auth = h.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else p.get("token")
        if method == "apps.connections.open":  # the app-level token, not the bot's
            return 200, self._connections_open(token), {}
        if self.token is not None:
            if not token:
                return 200, {"ok": False, "error": "not_authed"}, {}
            if token != self.token:
                return 200, {"ok": False, "error": "invalid_auth"}, {}
        with self._lock:
            refused = self._method_errors.get(method)
        if refused:
            return 200, {"ok": False, "error": refused}, {}
        handler = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.getPermalink": self._permalink,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "conversations.list": self._list,
        }.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        return 200, handler(p), {}

    def _one_fault(
        self, h: BaseHTTPRequestHandler, fault: str, method: str, p: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | str, dict[str, str]]:
        if fault == "ratelimited":
            ra = self._fault_retry_after
            value = str(int(ra)) if float(ra).is_integer() else str(ra)
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": value}
        if fault == "server_error":
            return 500, "<html><body>Server Error</body></html>", {}
        if fault == "drop":
            raise _Drop
        answer = self._dispatch(h, method, p, False, faults=False)  # applied as usual...
        if fault == "accept_drop":
            raise _Drop  # ...and never answered
        time.sleep(self._hang)  # ...answered after the client gave up
        return answer

    # ------------------------------------------------------------------ validation

    @staticmethod
    def _check_blocks(blocks: Any) -> str | None:
        if blocks is None:
            return None
        if not isinstance(blocks, list) or len(blocks) > 50:
            return "invalid_blocks"
        for b in blocks:
            if not isinstance(b, dict) or "type" not in b:
                return "invalid_blocks"
            text = b.get("text")
            if isinstance(text, dict):
                limit = 150 if b["type"] == "header" else 3000
                if not isinstance(text.get("text"), str) or len(text["text"]) > limit:
                    return "invalid_blocks"
                if b["type"] == "header" and text.get("type") != "plain_text":
                    return "invalid_blocks"
            fields = b.get("fields")
            if fields is not None and (
                len(fields) > 10 or any(len(f.get("text", "")) > 2000 for f in fields)
            ):
                return "invalid_blocks"
            elements = b.get("elements")
            if b["type"] == "context" and (not elements or len(elements) > 10):
                return "invalid_blocks"
            if b["type"] == "section" and not text and not fields:
                return "invalid_blocks"
            if b["type"] == "actions" and FakeSlack._check_actions(elements):
                return "invalid_blocks"
        return None

    @staticmethod
    def _check_actions(elements: Any) -> bool:
        """Whether an ``actions`` block breaks Slack's rules: 1 to 25 elements, unique
        action ids (255 chars), button text 75 chars and value 2,000, a menu's options 1
        to 100 with text 75 and value 150."""
        if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
            return True
        ids = [e.get("action_id") for e in elements if isinstance(e, dict)]
        if len(ids) != len(elements) or len(set(ids)) != len(ids):
            return True
        for e in elements:
            if not isinstance(e.get("action_id"), str) or len(e["action_id"]) > 255:
                return True
            if e.get("type") == "button":
                text = e.get("text") or {}
                if text.get("type") != "plain_text" or not 1 <= len(text.get("text", "")) <= 75:
                    return True
                if len(str(e.get("value", ""))) > 2000:
                    return True
            elif e.get("type") == "static_select":
                options = e.get("options") or []
                if not 1 <= len(options) <= 100:
                    return True
                for o in options:
                    if len(o["text"]["text"]) > 75 or len(o["value"]) > 150:
                        return True
            else:
                return True
        return False

    def _check_message(self, p: dict[str, Any]) -> str | None:
        text = p.get("text")
        blocks = p.get("blocks")
        if not text and not blocks:
            return "no_text"
        if isinstance(text, str) and len(text) > 40000:
            return "msg_too_long"
        return self._check_blocks(blocks)

    def _channel_fault(self, channel: str) -> str | None:
        cid = self.channel_id(channel)
        name = self._names.get(cid, channel)
        with self._lock:
            for key in (channel, cid, name, "#" + name):
                if key in self._channel_errors:
                    return self._channel_errors[key]
        return None

    def _next_ts(self) -> str:
        with self._lock:
            now = max(time.time(), self._last_ts + 0.000001)
            self._last_ts = now
            return f"{now:.6f}"

    def _store(self, channel: str, p: dict[str, Any], via: str) -> dict[str, Any]:
        ts = self._next_ts()
        msg = {
            "channel": channel,
            "channel_id": self.channel_id(channel),
            "text": p.get("text") or "",
            "blocks": p.get("blocks"),
            "thread_ts": p.get("thread_ts") or None,
            # a reply also sent to the channel: Slack shows it in the thread and, with
            # subtype thread_broadcast, in the channel itself
            "broadcast": bool(p.get("thread_ts")) and self._flag(p.get("reply_broadcast")),
            "metadata": p.get("metadata"),
            "ts": ts,
            "payload": p,
            "via": via,
        }
        msg["versions"] = [_shown(msg)]
        with self._cond:
            self._messages.append(msg)
            drop = self._drops > 0
            if drop:
                self._drops -= 1
            self._cond.notify_all()
        if drop:
            raise _Drop
        return msg

    # ------------------------------------------------------------------ methods

    def _webhook(self, p: dict[str, Any]) -> tuple[int, str, dict[str, str]]:
        fault = self._channel_fault(self.webhook_channel)
        if fault:
            return 404 if fault == "channel_not_found" else 403, fault, {}
        problem = self._check_message(p)
        if problem:
            return 400, problem, {}
        self._store(self.webhook_channel, p, "webhook")
        return 200, "ok", {}

    def _connections_open(self, token: str | None) -> dict[str, Any]:
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token != self.app_token:
            # (a bot token here is refused as Slack refuses it)
            error = "not_allowed_token_type" if token == self.token else "invalid_auth"
            return {"ok": False, "error": error}
        if not self.socket_url:
            return {"ok": False, "error": "internal_error"}
        return {"ok": True, "url": self.socket_url}

    @staticmethod
    def _auth_test(p: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake.slack.test/",
            "team": "Fake",
            "user": "wirewatch",
            "team_id": "T0000FAKE",
            "user_id": "U0000FAKE",
            "bot_id": "B0000FAKE",
        }

    def _post_message(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        fault = self._channel_fault(channel)
        if fault:
            return {"ok": False, "error": fault}
        problem = self._check_message(p)
        if problem:
            return {"ok": False, "error": problem}
        msg = self._store(channel, p, "api")
        return {
            "ok": True,
            "channel": msg["channel_id"],
            "ts": msg["ts"],
            "message": {"text": msg["text"], "ts": msg["ts"], "type": "message"},
        }

    def _update(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel") or "")
        fault = self._channel_fault(channel) if channel else "channel_not_found"
        if fault:
            return {"ok": False, "error": fault}
        problem = self._check_message(p)
        if problem:
            return {"ok": False, "error": problem}
        cid = self.channel_id(channel)
        ts = str(p.get("ts") or "")
        with self._lock:
            for m in self._messages:
                if m["channel_id"] == cid and m["ts"] == ts:
                    # Slack replaces the whole message: what the edit omits is gone
                    m["text"] = p.get("text") or ""
                    m["blocks"] = p.get("blocks")
                    m["metadata"] = p.get("metadata")
                    m["versions"] = [*m.get("versions", []), _shown(m)]
                    self._updates.append(
                        {
                            "channel": channel,
                            "channel_id": cid,
                            "ts": ts,
                            "text": m["text"],
                            "blocks": p.get("blocks"),
                            "metadata": p.get("metadata"),
                            "payload": p,
                        }
                    )
                    return {"ok": True, "channel": cid, "ts": ts, "text": m["text"]}
        return {"ok": False, "error": "message_not_found"}

    @staticmethod
    def _flag(value: Any) -> bool:
        return str(value).lower() in ("1", "true", "yes")

    def _page(
        self, p: dict[str, Any], msgs: list[dict[str, Any]], key: str = "messages"
    ) -> dict[str, Any]:
        oldest = float(p.get("oldest") or 0)
        latest = float(p.get("latest") or 0) or float("inf")
        inclusive = self._flag(p.get("inclusive"))
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            for r in self._messages:
                if r["thread_ts"] and r["thread_ts"] != r["ts"]:
                    k = (r["channel_id"], r["thread_ts"])
                    counts[k] = counts.get(k, 0) + 1
        out = []
        for m in msgs:
            t = float(m["ts"])
            if (t > oldest or (inclusive and t == oldest)) and (
                t < latest or (inclusive and t == latest)
            ):
                item: dict[str, Any] = {
                    "type": "message",
                    "ts": m["ts"],
                    "text": m["text"],
                    "user": "U0000FAKE",
                    "bot_id": "B0000FAKE",
                }
                if m["blocks"]:
                    item["blocks"] = m["blocks"]
                if m["thread_ts"]:
                    item["thread_ts"] = m["thread_ts"]
                if m.get("broadcast"):
                    item["subtype"] = "thread_broadcast"
                replies = counts.get((m["channel_id"], m["ts"]), 0)
                if replies and not m["thread_ts"]:  # a parent, as Slack lists it
                    item["thread_ts"] = m["ts"]
                    item["reply_count"] = replies
                if m["metadata"] and self._flag(p.get("include_all_metadata")):
                    item["metadata"] = m["metadata"]
                out.append(item)
        limit = max(1, min(int(p.get("limit") or 100), 999))
        start = int(p.get("cursor") or 0)
        page = out[start : start + limit]
        more = start + limit < len(out)
        return {
            "ok": True,
            key: page,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _history(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel") or "")
        fault = self._channel_fault(channel) if channel else "channel_not_found"
        if fault:
            return {"ok": False, "error": fault}
        cid = self.channel_id(channel)
        with self._lock:
            msgs = [
                m
                for m in self._messages
                if m["channel_id"] == cid
                and (m["thread_ts"] in (None, m["ts"]) or m.get("broadcast"))
            ]
        msgs.sort(key=lambda m: float(m["ts"]), reverse=True)
        return self._page(p, msgs)

    def _permalink(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel") or "")
        ts = str(p.get("message_ts") or "")
        cid = self.channel_id(channel) if channel else ""
        with self._lock:
            found = any(m["channel_id"] == cid and m["ts"] == ts for m in self._messages)
        if not found:
            return {"ok": False, "error": "message_not_found"}
        return {
            "ok": True,
            "channel": cid,
            "permalink": f"https://fake.slack.test/archives/{cid}/p{ts.replace('.', '')}",
        }

    def _replies(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = str(p.get("channel") or "")
        fault = self._channel_fault(channel) if channel else "channel_not_found"
        if fault:
            return {"ok": False, "error": fault}
        cid = self.channel_id(channel)
        ts = str(p.get("ts") or "")
        with self._lock:
            msgs = [
                m
                for m in self._messages
                if m["channel_id"] == cid and (m["ts"] == ts or m["thread_ts"] == ts)
            ]
        if not msgs:
            return {"ok": False, "error": "thread_not_found"}
        msgs.sort(key=lambda m: float(m["ts"]))
        return self._page(p, msgs)

    def _list(self, p: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            chans = [
                {"id": cid, "name": name, "is_channel": True, "is_member": True}
                for cid, name in sorted(self._names.items())
            ]
        limit = max(1, min(int(p.get("limit") or 100), 1000))
        start = int(p.get("cursor") or 0)
        more = start + limit < len(chans)
        return {
            "ok": True,
            "channels": chans[start : start + limit],
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }
