"""The live server: Flask + Socket.IO around one run, serving web/ (the live page, vqart.js, examples)."""

from vqart.server.app import (
    create_app,
    create_training_app,
    create_wsgi_app,
    serve,
    serve_in_background,
    serve_live,
    start_server,
)

__all__ = ["create_app", "create_training_app", "create_wsgi_app", "serve", "serve_in_background", "serve_live",
           "start_server"]
