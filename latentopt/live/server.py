"""The live view's HTTP server: read-only, GET only, loopback unless asked otherwise.

Routes (all GET; anything else is 405, unknown paths 404):

* ``/``: the page (:mod:`latentopt.live.page`), self-contained (inline script and style under a
  per-response nonce, no request leaves the server).
* ``/state.json``: :meth:`latentopt.live.state.RunState.snapshot`.
* ``/image/<name>``: a best image of a recorded generation; ``name`` must be one the state lists
  (``best_<thread>_NNNNN.png``) and a regular file in ``RUN_DIR/images``. No other part of a URL reaches
  the file system.

Bound to a loopback address, requests must name that host (``Host: 127.0.0.1:PORT`` or ``localhost``), so
a web page elsewhere cannot read the view through DNS rebinding. With ``allow_remote`` (required for any other
address) every request needs ``?token=<token>``, a random token made at start (403 without it).
"""

from __future__ import annotations

import errno
import hmac
import ipaddress
import json
import math
import secrets
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from latentopt.errors import LatentoptError
from latentopt.live.page import page_html
from latentopt.live.state import RunState

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_IMAGE_BYTES = 32 << 20


class LiveError(LatentoptError, RuntimeError):
    """The live view cannot start as asked (a port in use, an address that needs ``--allow-remote``)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is a loopback address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    view: LiveServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a failed request (a client gone mid-answer, a bug) is one line, never a traceback in the operator's console
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            print(f"latentopt-live: request failed: {type(error).__name__}: {error}", file=sys.stderr, flush=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "latentopt-live"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no line per request in the operator's console

    def do_GET(self) -> None:
        view = self.server.view
        parts = urlsplit(self.path)
        refusal = view.refusal(self.headers.get("Host"), parse_qs(parts.query).get("token", []))
        if refusal is not None:
            self._send(HTTPStatus.FORBIDDEN, refusal.encode(), "text/plain; charset=utf-8")
            return
        if parts.path in ("/", "/index.html"):
            nonce = secrets.token_urlsafe(16)
            self._send(HTTPStatus.OK, page_html(nonce=nonce, title=view.state.run_dir.name).encode(),
                       "text/html; charset=utf-8", nonce=nonce)
        elif parts.path == "/state.json":
            body = json.dumps(_json_safe(view.state.snapshot()), allow_nan=False).encode()
            self._send(HTTPStatus.OK, body, "application/json")
        elif parts.path.startswith("/image/"):
            self._image(unquote(parts.path[len("/image/"):]))
        elif parts.path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain; charset=utf-8")

    def _image(self, name: str) -> None:
        path = self.server.view.state.image_path(name)
        data = None
        if path is not None:
            try:
                with open(path, "rb") as file:
                    data = file.read(MAX_IMAGE_BYTES + 1)
            except OSError:
                data = None
        if data is None or len(data) > MAX_IMAGE_BYTES:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain; charset=utf-8")
        else:
            self._send(HTTPStatus.OK, data, "image/png", cache=True)

    def _refuse_method(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"read-only: GET only", "text/plain; charset=utf-8",
                   extra={"Allow": "GET"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _refuse_method

    def _send(self, code: HTTPStatus, body: bytes, content_type: str, *, nonce: str | None = None,
              cache: bool = False, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "private, max-age=3600" if cache else "no-store")
        sources = f"'nonce-{nonce}'" if nonce else "'none'"
        self.send_header("Content-Security-Policy", f"default-src 'none'; script-src {sources}; style-src {sources}; "
                         "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                         "frame-ancestors 'none'")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class LiveServer:
    """The live view of one run folder, bound at construction; :meth:`start` serves in a daemon thread.

    Args:
        run_dir: the run folder (read only).
        host: the address to bind (default loopback).
        port: the port; 0 picks a free one (:attr:`url` names it).
        allow_remote: required to bind a non-loopback address; every request then needs the token.
        token: the token (default: a random one when ``allow_remote``; None: no token).

    Raises:
        LiveError: one line naming the culprit (the port in use, an address not allowed or not bindable).
    """

    def __init__(self, run_dir: Path | str, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 allow_remote: bool = False, token: str | None = None, state: RunState | None = None) -> None:
        if not is_loopback(host) and not allow_remote:
            raise LiveError(f"--host {host} would serve the run to other machines; add --allow-remote (every "
                            "request then needs the random token printed with the URL)")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise LiveError(f"port must be an integer in 0..65535 (0: a free one), got {port!r}")
        self.host, self.loopback = host, is_loopback(host)
        self.token = (token or secrets.token_urlsafe(24)) if allow_remote else None
        self.state = state or RunState(run_dir)
        bind = host.strip("[]")
        cls = _Server6 if ":" in bind else _Server
        try:
            self._server = cls((bind, port), _Handler)
        except OSError as err:
            reason = "in use by another program" if err.errno == errno.EADDRINUSE else (err.strerror or str(err))
            hint = "; choose another port, or port 0 for a free one" if err.errno in (errno.EADDRINUSE,
                                                                                     errno.EACCES) else ""
            raise LiveError(f"cannot serve on {host} port {port}: {reason}{hint}") from None
        self._server.view = self
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The page's URL (with ``?token=`` when one is required)."""
        host = self.host if ":" not in self.host.strip("[]") else f"[{self.host.strip('[]')}]"
        if host in ("0.0.0.0", "[::]"):
            host = socket.gethostname()
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def refusal(self, host_header: str | None, tokens: list[str]) -> str | None:
        """Why a request is refused (403), or None: a wrong host on loopback, a missing or wrong token."""
        if self.loopback and host_header is not None:
            name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
            if not is_loopback(name):
                return "forbidden: this view answers only requests to a loopback host name"
        if self.token is not None and not any(hmac.compare_digest(t.encode(), self.token.encode()) for t in tokens):
            return "forbidden: a valid ?token= is required"
        return None

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`close` (or Ctrl-C)."""
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> LiveServer:
        """Serve in a daemon thread (it never keeps a process alive); returns self."""
        self._thread = threading.Thread(target=self._serve_contained, name="latentopt-live", daemon=True)
        self._thread.start()
        return self

    def _serve_contained(self) -> None:
        try:
            self.serve_forever()
        except Exception as err:  # the view stops; whatever runs beside it goes on
            print(f"latentopt-live: the view stopped: {type(err).__name__}: {err}", file=sys.stderr, flush=True)

    def close(self) -> None:
        """Stop serving and release the port (waits at most ~1 s). Safe to call twice."""
        if self._thread is not None and self._thread.is_alive():
            stopper = threading.Thread(target=self._server.shutdown, daemon=True)
            stopper.start()
            stopper.join(1.0)
        self._server.server_close()
        self._thread = None

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
