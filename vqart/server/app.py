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
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, get_sockaddr, make_server, select_address_family

from vqart.errors import VqartError
from vqart.live import LiveView
from vqart.run import Run, open_run
from vqart.server import api, static
from vqart.server.engine import Engine
from vqart.server.events import register
from vqart.server.training import FileSource, LiveSource, register_training
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


def _socket_app(allowed_origins: Iterable[str]) -> tuple[Flask, SocketIO]:
    """A Flask app serving the web files, with Socket.IO (threading, origin-checked, malformed packets dropped)."""
    app = Flask(__name__, static_folder=None)
    app.register_blueprint(static.bp)
    socketio = SocketIO(
        app,
        async_mode="threading",
        cors_allowed_origins=_origins(tuple(allowed_origins)),
        max_http_buffer_size=MAX_MESSAGE_BYTES,
    )
    _drop_malformed_packets(socketio.server)
    app.wsgi_app = _no_delay(app.wsgi_app)
    return app, socketio


def create_app(run: Run, allowed_origins: Iterable[str] = ()) -> tuple[Flask, SocketIO]:
    """The Flask app serving web/ and the HTTP API, and its SocketIO carrying the model events; /train shows how
    the run trained, from its files."""
    app, socketio = _socket_app(allowed_origins)
    app.extensions["vqart"] = engine = Engine(run)
    app.register_blueprint(api.bp)
    register(socketio, engine)
    register_training(app, socketio, FileSource(run))
    app.add_url_rule("/", "index", static.index)
    return app, socketio


def create_training_app(view: LiveView, allowed_origins: Iterable[str] = ()) -> tuple[Flask, SocketIO]:
    """The live training view's app: the page at / and /train, its history, and its updates and controls."""
    app, socketio = _socket_app(allowed_origins)
    register_training(app, socketio, LiveSource(view, socketio))
    app.add_url_rule("/", "index", static.training_page)
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
    """A threaded Werkzeug server bound to host:port (0 picks a free port); call serve_forever() on it.
    VqartError in one line when the port is taken."""
    _check_listenable(host, port)
    return make_server(host, port, app, threaded=True, request_handler=_Handler)


def _check_listenable(host: str, port: int) -> None:
    """VqartError naming host:port when it cannot be bound (Werkzeug would print two lines and exit instead)."""
    try:
        family = select_address_family(host, port)  # the family and address Werkzeug will bind
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
            probe.bind(get_sockaddr(host, port, family))
    except OSError as err:
        reason = err.strerror or str(err)
        raise VqartError(f"cannot listen on {host}:{port} ({reason}); choose another with --port") from None


def serve_in_background(app: Flask, host: str = "127.0.0.1", port: int = 0) -> BaseWSGIServer:
    """Serve `app` from a daemon thread (tests, benchmarks); stop it with .shutdown()."""
    server = start_server(app, host, port)
    threading.Thread(target=server.serve_forever, name="vqart-server", daemon=True).start()
    return server


def serve_live(view: LiveView, host: str = "127.0.0.1", port: int = 5001,
               allowed_origins: Iterable[str] = ()) -> BaseWSGIServer:
    """Serve the live training view of `view` from a background thread; VqartError when the port is taken."""
    app, _ = create_training_app(view, allowed_origins)
    return serve_in_background(app, host, port)


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
