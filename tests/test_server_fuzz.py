"""10,000 fuzzed Socket.IO messages against a real server: no unhandled exception in its log, no `internal`
error, and a good answer afterwards."""

from __future__ import annotations

import logging
import random
import threading
import time
import traceback

import pytest

from vqart.run import open_run
from vqart.server import create_app, serve_in_background
from vqart.server.client import InOrderClient

EVENTS = ["info", "sample", "interpolate", "reconstruct", "stream", "stop", "control", "*", "", "connect",
          "disconnect", "message", "frames", "error"]
KEYS = ["id", "n", "temperature", "seed", "sampler", "a", "b", "steps", "method", "mode", "fps", "frames", "source",
        "image", "start", "like", "name", "value", "top_k", "guidance"]


def fuzz_value(rng: random.Random, depth: int = 0):
    """A random JSON-ish (or binary) value: the kinds of thing a broken or hostile client sends."""
    kind = rng.randrange(14 if depth < 6 else 10)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**53 + 1, -(2**63), 10**30, rng.randrange(-1000, 1000)])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, -1e308, 1e-320, float("nan"), float("inf"), rng.uniform(-10, 10)])
    if kind == 4:
        return "".join(rng.choice("ab:09 é\x00\ud7ff") for _ in range(rng.choice([0, 1, 5, 300, 5000])))
    if kind == 5:
        return rng.choice(["waves:0", "waves:99999", "discs:3", ":", "../../etc/passwd:1", "discs:-1", "x" * 250])
    if kind == 6:
        return rng.randbytes(rng.choice([0, 1, 8, 1000, 600_000]))
    if kind == 7:
        return b"\x89PNG\r\n\x1a\n" + rng.randbytes(rng.choice([10, 200]))  # a PNG signature, then garbage
    if kind == 8:
        nested: object = 1
        for _ in range(rng.choice([50, 500])):  # deep nesting
            nested = [nested] if rng.random() < 0.5 else {"a": nested}
        return nested
    if kind == 9:
        return rng.choice(["walk", "sample", "motion", "interpolate", "prior", "unigram", "slerp", "lerp", "auto"])
    if kind in (10, 11):
        return {rng.choice(KEYS): fuzz_value(rng, depth + 1) for _ in range(rng.randrange(6))}
    return [fuzz_value(rng, depth + 1) for _ in range(rng.randrange(4))]


RAW_PACKETS = [
    '2["sample",' + "[" * 100_000 + "]" * 100_000 + "]",  # deeper than any JSON decoder recurses
    '2["sample",{"id":1,"n":' + "9" * 5000 + "}]",  # a 5000-digit number
    '2["sample",{"id":1,"n":1e999}]',  # a float JSON cannot hold
    '2["sample",{"id":',  # truncated
    "2[]",  # no event name
    "2[1,2,3]",  # a number for the event name
    '51-["interpolate",{"id":1,"a":{"_placeholder":true,"num":7},"b":"x:1"}]',  # a binary packet with no binary
    "9zzz",  # no such packet type
    '2/nowhere,["info",{}]',  # an unknown namespace
]


class Caught(logging.Handler):
    """Collects log records that carry an exception (what an unhandled error in a handler leaves)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)


@pytest.mark.slow
def test_ten_thousand_fuzzed_messages_leave_the_server_answering(tiny_run, monkeypatch):
    caught = Caught()
    for name in ("vqart", "socketio", "engineio", "werkzeug", ""):
        logging.getLogger(name).addHandler(caught)
    crashes: list[str] = []  # tracebacks of exceptions nothing caught, in any thread
    monkeypatch.setattr(threading, "excepthook", lambda args: crashes.append(
        "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))))
    app, _ = create_app(open_run(tiny_run, device="cpu"))
    server = serve_in_background(app)
    url = f"http://127.0.0.1:{server.server_port}"
    errors: list[dict] = []
    answers: dict = {}
    client = InOrderClient(reconnection=False)
    client.on("error", lambda msg: errors.append(msg))
    client.on("info", lambda msg: answers.setdefault("info", msg))
    client.on("frames", lambda msg: answers.setdefault(msg.get("id"), msg))
    try:
        client.connect(url, transports=["websocket"], wait_timeout=10)
        rng = random.Random(1234)
        for i in range(10_000):
            event = rng.choice(EVENTS) if rng.random() < 0.8 else "".join(rng.choice("xyz_!") for _ in range(8))
            args = [fuzz_value(rng) for _ in range(rng.choice([0, 1, 1, 1, 2]))]
            try:
                if i % 50 == 0:  # past any client's encoder: raw Socket.IO packets, straight onto the wire
                    client.eio.send(rng.choice(RAW_PACKETS))
                else:
                    client.emit(event, tuple(args) if len(args) != 1 else args[0])
            except (ValueError, TypeError, RecursionError):
                pass  # the client itself refuses to encode some values (NaN in JSON, reserved names): fine
            if i % 500 == 0:
                time.sleep(0.05)
        assert client.connected, "the server dropped the connection"
        deadline, tries = time.monotonic() + 60, 0
        while ("info" not in answers or "good" not in answers) and time.monotonic() < deadline:
            # Asked again while the fuzz's last handlers still hold this client's in-flight slots (a "busy" reply).
            client.emit("info", {"id": f"after{tries}"})
            client.emit("sample", {"id": "good", "n": 2, "seed": 1})
            tries += 1
            until = time.monotonic() + 2
            while ("info" not in answers or "good" not in answers) and time.monotonic() < until:
                time.sleep(0.05)
        assert answers["info"]["codebook_size"] == 32
        assert len(answers["good"]["frames"]) == 2
    finally:
        client.disconnect()
        server.shutdown()
        app.extensions["vqart"].close()
        for name in ("vqart", "socketio", "engineio", "werkzeug", ""):
            logging.getLogger(name).removeHandler(caught)
    assert not [e for e in errors if e.get("code") == "internal"], [e for e in errors if e.get("code") == "internal"][:3]
    assert len(errors) > 1000  # the fuzz did reach the handlers, which refused it politely
    assert not crashes, crashes[0]
    assert not caught.records, [r.getMessage() for r in caught.records[:5]]
