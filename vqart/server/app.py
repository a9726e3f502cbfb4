"""The app factory: Flask + Flask-SocketIO (threading mode, simple-websocket) around one opened run."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import socketio
import torch
from flask import Flask
from flask_socketio import SocketIO
from rich.console import Console
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from vqart.run import Run, open_run
from vqart.server import api, static
from vqart.server.engine import Engine
from vqart.server.events import register
from vqart.server.validate import MAX_MESSAGE_BYTES

log = logging.getLogger("vqart")


def _no_delay(wsgi_app: Callable) -> Callable:
    """Set TCP_NODELAY on each connection: small binary frames otherwise stall ~40 ms (Nagle + delayed ACK)."""

    def app(environ: dict, start_response: Callable):
        sock = environ.get("werkzeug.socket") or environ.get("gunicorn.socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # not TCP (a unix socket behind a proxy): nothing to tune
                pass
        return wsgi_app(environ, start_response)

    return app


def _drop_malformed_packets(server: socketio.Server) -> None:
    """Drop a Socket.IO packet python-socketio cannot decode (bad JSON, nesting deeper than the decoder recurses,
    a number past Python's digit limit, a binary packet whose attachments do not fit) or an event without a
    string name or with a reserved one, with a one-line warning instead of an unhandled exception (python-socketio would fail on them
    in a handler thread); any half-assembled binary packet of that client goes with it, so its connection keeps
    working."""
    handle, dispatch = server._handle_eio_message, server._handle_event

    def named(eio_sid: str, namespace: str | None, ack: int | None, data: object) -> None:
        if not (isinstance(data, list) and data and isinstance(data[0], str)):
            log.warning("dropped a Socket.IO event without a name (%s)", str(data)[:40])
        elif data[0] in (*server.reserved_events, "*"):  # the server's own names ("*" is the catch-all's key)
            log.warning("dropped a Socket.IO event with the reserved name %r", data[0])
        else:
            dispatch(eio_sid, namespace, ack, data)

    def guarded(eio_sid: str, data: str | bytes) -> None:
        try:
            handle(eio_sid, data)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as err:
            server._binary_packet.pop(eio_sid, None)
            log.warning("dropped a malformed Socket.IO packet (%s: %s)", type(err).__name__, str(err)[:80])

    server._handle_event = named
    server.eio.on("message", guarded)


def _origins(allowed: tuple[str, ...]) -> Callable[[str, dict], bool] | None:
    """Socket.IO CORS policy: the served origin only (None), widened by `allowed` (e.g. an editor's dev server)."""
    if not allowed:
        return None
    extra = {origin.rstrip("/") for origin in allowed}

    def check(origin: str, environ: dict) -> bool:
        served = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin == served or origin in extra or "*" in extra

    return check


def _open(run_path: str | Path, device: str = "auto") -> Run:
    """Open the run for serving, with one torch thread: model calls are serialised and small, and at 64x64 a
    second intra-op thread only fights the socket threads for the CPU (measured: 2 threads ran 2-5x slower here)."""
    torch.set_num_threads(1)
    return open_run(run_path, device=device)


def create_app(run: Run, allowed_origins: Iterable[str] = ()) -> tuple[Flask, SocketIO]:
    """The Flask app serving web/ and the HTTP API, and its SocketIO carrying the model events."""
    app = Flask(__name__, static_folder=None)
    app.extensions["vqart"] = engine = Engine(run)
    app.register_blueprint(static.bp)
    app.register_blueprint(api.bp)
    socketio = SocketIO(
        app,
        async_mode="threading",
        cors_allowed_origins=_origins(tuple(allowed_origins)),
        max_http_buffer_size=MAX_MESSAGE_BYTES,
    )
    _drop_malformed_packets(socketio.server)
    register(socketio, engine)
    app.wsgi_app = _no_delay(app.wsgi_app)
    return app, socketio


def create_wsgi_app(run_path: str, allowed_origins: Iterable[str] = (), device: str = "auto") -> Flask:
    """A WSGI app for gunicorn: gunicorn -w 1 --threads 100 'vqart.server:create_wsgi_app("runs/demo")'."""
    app, _ = create_app(_open(run_path, device), allowed_origins)
    return app


class _Handler(WSGIRequestHandler):
    """Werkzeug's handler, hanging up once a WebSocket session ends (simple-websocket signals it as a dropped
    connection): kept alive, the socket would read the client's closing frame as a bad HTTP request and the
    client would wait seconds for its close handshake."""

    def connection_dropped(self, error: BaseException, environ: dict | None = None) -> None:
        self.close_connection = True


def start_server(app: Flask, host: str = "127.0.0.1", port: int = 5000) -> BaseWSGIServer:
    """A threaded Werkzeug server bound to host:port (0 picks a free port); call serve_forever() on it."""
    return make_server(host, port, app, threaded=True, request_handler=_Handler)


def serve_in_background(app: Flask, host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
    """Serve `app` from a daemon thread (tests, benchmarks); stop it with .shutdown()."""
    server = start_server(app, host, port)
    threading.Thread(target=server.serve_forever, name="vqart-server", daemon=True).start()
    return server


def serve(run_path: str | Path, host: str = "127.0.0.1", port: int = 5000, allowed_origins: Iterable[str] = ()) -> None:
    """Open the run and serve the live page and model events until interrupted."""
    app, _ = create_app(_open(run_path), allowed_origins)
    server = start_server(app, host, port)
    url = f"http://{host}:{server.server_port}/"
    Console(stderr=True, soft_wrap=True).print(
        f"vqart: serving {run_path} at [bold]{url}[/bold] (examples at {url}examples/; Ctrl+C stops)"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.extensions["vqart"].close()
