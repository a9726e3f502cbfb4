"""The live server, end to end: a real python-socketio client against a really running server on loopback."""

from __future__ import annotations

import http.client
import io
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import socketio
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from conftest import served
from PIL import Image

from vqart.server import events
from vqart.server.client import InOrderClient
from vqart.server.validate import MAX_MESSAGE_BYTES, MAX_UPLOAD_BYTES, request_id

ALLOWED = "http://allowed.example"


@pytest.fixture(scope="module")
def server(tiny_run: Path):
    """A running server on a free loopback port; yields its base URL."""
    with served(tiny_run, (ALLOWED,)) as url:
        yield url


class Conn:
    """A Socket.IO client that records every reply and waits for the one carrying a given id."""

    EVENTS = ("info", "frames", "error", "streaming", "stopped")

    def __init__(self, url: str, origin: str | None = None):
        # websocket-client sends the server's own origin unless told another one, as a browser page would.
        self.sio = InOrderClient(reconnection=False, websocket_extra_options={"origin": origin} if origin else {})
        self.got: list[tuple[str, dict]] = []
        self.cv = threading.Condition()
        for name in self.EVENTS:
            self.sio.on(name, lambda payload, name=name: self._record(name, payload))
        self.sio.connect(url, transports=["websocket"], wait_timeout=10)

    def _record(self, name: str, payload: dict) -> None:
        with self.cv:
            self.got.append((name, payload))
            self.cv.notify_all()

    def wait(self, rid, after: int = 0, timeout: float = 20.0, kinds=EVENTS) -> tuple[str, dict]:
        """The first reply after position `after` whose id is `rid`."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for name, payload in self.got[after:]:
                    if name in kinds and isinstance(payload, dict) and payload.get("id") == rid:
                        return name, payload
                left = deadline - time.monotonic()
                assert left > 0, f"no reply with id {rid!r}; got {[(n, p.get('id')) for n, p in self.got[after:]]}"
                self.cv.wait(left)

    def ask(self, event: str, payload, timeout: float = 20.0, kinds=EVENTS) -> tuple[str, dict]:
        """Emit one request and wait for its reply (matched by the id the server can echo)."""
        with self.cv:
            mark = len(self.got)
        self.sio.emit(event, payload)
        return self.wait(request_id(payload), mark, timeout, kinds)

    def close(self) -> None:
        self.sio.disconnect()


@pytest.fixture(scope="module")
def conn(server: str):
    c = Conn(server)
    yield c
    c.close()


def png(pixels: np.ndarray) -> bytes:
    """uint8 (H, W) as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def decoded(reply: dict) -> np.ndarray:
    """A `frames` reply's frames as uint8 (N, H, W), checking each buffer's size."""
    out = []
    for f in reply["frames"]:
        assert isinstance(f["data"], bytes) and len(f["data"]) == f["width"] * f["height"]
        out.append(np.frombuffer(f["data"], dtype=np.uint8).reshape(f["height"], f["width"]))
    return np.stack(out)


def get(url: str, path: str, hops: int = 3) -> tuple[int, bytes]:
    """GET a raw (unnormalised) path, so traversal attempts reach the server as written; follows redirects."""
    host, port = url.removeprefix("http://").split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    location = r.getheader("Location")
    if r.status in (301, 302, 307, 308) and location and hops:
        return get(url, location.removeprefix(url), hops - 1)
    return r.status, r.read()


def assert_alive(c: Conn) -> None:
    """The server still answers a good request on this connection."""
    kind, reply = c.ask("sample", {"id": "alive", "n": 1})
    assert kind == "frames" and decoded(reply).shape == (1, 64, 64)


# ---- HTTP ------------------------------------------------------------------------------------------------


def test_health_and_api_info(server):
    health = json.loads(get(server, "/health")[1])
    assert health["status"] == "ok" and 0 <= health["pool"] <= 256
    info = json.loads(get(server, "/api/info")[1])
    assert info["codebook_size"] == 32 and info["grid"] == [16, 16] and info["frame_size"] == [64, 64]
    assert info["sketches"] == {"boxes": 40, "discs": 40, "orbits": 40}
    assert info["sampler"] == "unigram"  # no prior trained in the tiny run


def test_serves_page_client_examples_and_npm_files(server):
    for path, needle in [("/", b"vqart.connect"), ("/vqart.js", b"p5.Image"), ("/examples/", b"tiles.html"),
                         ("/examples/trails.js", b"model.stream"), ("/lib/p5.min.js", b"p5"),
                         ("/lib/socket.io.min.js", b"io")]:
        status, body = get(server, path)
        assert status == 200 and needle in body, path
    status, body = get(server, "/api/frame/discs/3.png")
    assert status == 200 and Image.open(io.BytesIO(body)).size == (64, 64)


@pytest.mark.parametrize("path", [
    "/examples/../../pyproject.toml", "/examples/..%2f..%2fpyproject.toml", "/examples/%2e%2e/package.json",
    "/examples//etc/passwd", "/lib/..%2fpackage.json", "/lib/p5.js", "/package.json", "/node_modules/p5/package.json",
    "/web/index.html", "/api/frame/..%2f..%2fetc/0.png", "/api/frame/discs/99.png", "/api/frame/nope/0.png",
])
def test_no_path_traversal(server, path):
    status, body = get(server, path)
    assert status in (400, 404) and b"[project]" not in body and b"dependencies" not in body


# ---- events ----------------------------------------------------------------------------------------------


def test_info_event(conn):
    kind, reply = conn.ask("info", {"id": "i1"})
    assert kind == "info" and reply["id"] == "i1"
    assert reply["codebook_size"] == 32 and reply["sketches"]["orbits"] == 40


def test_sample_frames_are_binary_and_seeds_repeat(conn):
    kind, reply = conn.ask("sample", {"id": 7, "n": 3})
    assert kind == "frames" and reply["id"] == 7 and decoded(reply).shape == (3, 64, 64)
    a = decoded(conn.ask("sample", {"id": "s1", "n": 2, "seed": 5, "temperature": 0.8})[1])
    b = decoded(conn.ask("sample", {"id": "s2", "n": 2, "seed": 5, "temperature": 0.8})[1])
    c = decoded(conn.ask("sample", {"id": "s3", "n": 2, "seed": 6, "temperature": 0.8})[1])
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    kind, reply = conn.ask("sample", {"id": "u", "n": 2, "sampler": "unigram"})
    assert kind == "frames" and len(reply["frames"]) == 2


def test_interpolate_refs_and_uploaded_images(conn, frames_dir):
    kind, reply = conn.ask("interpolate", {"id": "p", "a": "discs:0", "b": "boxes:5", "steps": 5})
    path = decoded(reply)
    assert kind == "frames" and reply["id"] == "p" and path.shape == (5, 64, 64)
    upload = png(np.asarray(Image.open(frames_dir / "discs" / "frame_00000.png")))
    kind, reply = conn.ask("interpolate", {"id": "q", "a": upload, "b": "boxes:5", "steps": 5, "method": "lerp"})
    assert kind == "frames" and decoded(reply).shape == (5, 64, 64)
    assert np.array_equal(decoded(reply)[-1], path[-1])  # same endpoint, same reconstruction


def test_largest_reply_arrives_whole_and_in_order(conn):
    path = decoded(conn.ask("interpolate", {"id": "max", "a": "discs:3", "b": "orbits:30", "steps": 512})[1])
    assert path.shape == (512, 64, 64)
    ends = [decoded(conn.ask("interpolate", {"id": i, "a": ref, "b": ref, "steps": 2})[1])[0]
            for i, ref in enumerate(["discs:3", "orbits:30"])]
    assert np.array_equal(path[0], ends[0]) and np.array_equal(path[-1], ends[1])  # ends are the reconstructions


def test_reconstruct_resizes_other_sizes(conn):
    kind, reply = conn.ask("reconstruct", {"id": "r", "image": png(np.full((80, 100), 200, np.uint8))})
    assert kind == "frames" and reply["id"] == "r" and decoded(reply).shape == (1, 64, 64)


@pytest.mark.parametrize("options", [
    {"mode": "walk", "frames": 16, "fps": 30},
    {"mode": "sample", "fps": 30, "temperature": 0.7, "seed": 3},
    {"mode": "interpolate", "a": "discs:0", "b": "orbits:20", "steps": 8, "fps": 60},
])
def test_stream_pushes_frames_until_stopped(conn, options):
    rid = f"st-{options['mode']}"
    kind, reply = conn.ask("stream", {"id": rid, **options})
    assert kind in ("streaming", "frames") and reply["id"] == rid
    mark = len(conn.got)
    seqs = []
    while len(seqs) < 6:
        _, reply = conn.wait(rid, mark, kinds=("frames",))
        mark = conn.got.index(("frames", reply)) + 1
        assert decoded(reply).shape == (1, 64, 64)
        seqs.append(reply["seq"])
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    kind, reply = conn.ask("stop", {"id": rid}, kinds=("stopped", "error"))  # frames may still arrive first
    assert kind == "stopped"
    time.sleep(0.3)  # a frame already on the wire may still land; after that, silence
    mark = len(conn.got)
    time.sleep(0.3)
    assert not [p for n, p in conn.got[mark:] if n == "frames" and p["id"] == rid]


def test_unknown_event_and_unknown_stream(conn):
    assert conn.ask("explode", {"id": "x"}) == ("error", {"id": "x", "code": "unknown_event",
                                                           "message": conn.got[-1][1]["message"]})
    kind, reply = conn.ask("stop", {"id": "never-started"})
    assert kind == "error" and reply["code"] == "not_found"


# ---- bad input -------------------------------------------------------------------------------------------

MALFORMED = [
    ("sample", {"id": 1, "n": "4"}, "bad_payload"),
    ("sample", {"id": 2, "n": 65}, "out_of_range"),
    ("sample", {"id": 3, "n": 10**30}, "out_of_range"),
    ("sample", {"id": 4, "n": True}, "bad_payload"),
    ("sample", {"id": 5, "temperature": float("nan")}, "out_of_range"),
    ("sample", {"id": 6, "temperature": -1}, "out_of_range"),
    ("sample", {"id": 7, "seed": -5}, "out_of_range"),
    ("sample", {"id": 8, "sampler": "oracle"}, "bad_payload"),
    ("sample", {"id": 9, "n": 2, "nn": 3}, "bad_payload"),
    ("sample", {"n": 2}, "bad_payload"),
    ("sample", {"id": "x" * 500}, "bad_payload"),
    ("sample", b"\x00\xff\xfe garbage", "bad_payload"),
    ("sample", [1, 2, 3], "bad_payload"),
    ("sample", "sample please", "bad_payload"),
    ("interpolate", {"id": 10, "a": "discs:0"}, "bad_payload"),
    ("interpolate", {"id": 11, "a": "discs:0", "b": "discs:1", "steps": 513}, "out_of_range"),
    ("interpolate", {"id": 12, "a": "discs:0", "b": "discs:1", "steps": 1}, "out_of_range"),
    ("interpolate", {"id": 13, "a": "/etc/passwd", "b": "discs:1"}, "bad_payload"),
    ("interpolate", {"id": 14, "a": "../../etc/passwd:1", "b": "discs:1"}, "not_found"),
    ("interpolate", {"id": 15, "a": "discs:40", "b": "discs:1"}, "not_found"),
    ("interpolate", {"id": 16, "a": b"\x89PNG not really", "b": "discs:1"}, "bad_payload"),
    ("interpolate", {"id": 17, "a": "discs:0", "b": "discs:1", "method": "cubic"}, "bad_payload"),
    ("reconstruct", {"id": 18}, "bad_payload"),
    ("reconstruct", {"id": 19, "image": "discs:0"}, "bad_payload"),
    ("reconstruct", {"id": 20, "image": png(np.zeros((2000, 8), np.uint8))}, "too_large"),
    ("stream", {"id": 21, "fps": 61}, "out_of_range"),
    ("stream", {"id": 22, "fps": 0}, "out_of_range"),
    ("stream", {"id": 23, "mode": "dance"}, "bad_payload"),
    ("stream", {"id": 24, "mode": "interpolate", "a": "discs:0"}, "bad_payload"),
    ("stream", {"id": 25, "mode": "walk", "frames": 100000}, "out_of_range"),
    ("stop", {}, "bad_payload"),
    ("info", {"id": 26, "extra": 1}, None),  # info ignores its payload: it answers, not refuses
]


@pytest.mark.parametrize(("event", "payload", "code"), MALFORMED)
def test_malformed_payloads_get_error_events(conn, event, payload, code):
    kind, reply = conn.ask(event, payload)
    if code is None:
        assert kind == "info"
    else:
        assert (kind, reply["code"]) == ("error", code), reply
        assert reply["id"] == request_id(payload) and reply["message"]
    assert_alive(conn)


GOOD = {
    "sample": {"n": 1},
    "interpolate": {"a": "discs:0", "b": "boxes:1", "steps": 2},
    "reconstruct": {"image": png(np.zeros((64, 64), np.uint8))},
    "stream": {"mode": "walk", "fps": 10},
}


def _whole(v, lo: int, hi: int) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and float(v).is_integer() and lo <= v <= hi


def _number(v, hi: float) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and 0 < v <= hi


VALID = {  # what each field accepts; hypothesis draws values outside it
    "n": lambda v: _whole(v, 1, 64),
    "steps": lambda v: _whole(v, 2, 512),
    "frames": lambda v: _whole(v, 8, 512),
    "seed": lambda v: v is None or _whole(v, 0, 2**32 - 1),
    "temperature": lambda v: _number(v, 4),
    "fps": lambda v: _number(v, 60),
    "sampler": lambda v: v in ("auto", "prior", "unigram"),
    "method": lambda v: v in ("slerp", "lerp"),
    "mode": lambda v: v in ("sample", "interpolate", "walk"),
    "a": lambda v: isinstance(v, str) and re.fullmatch(r"(discs|boxes|orbits):0*[0-3]?[0-9]", v.strip()) is not None,
    "image": lambda v: False,  # no junk drawn below is a readable image
}
VALID["b"] = VALID["a"]
junk = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**6), st.floats(), st.text(max_size=20),
    st.binary(max_size=64), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@st.composite
def bad_request(draw) -> tuple[str, object]:
    """A request made invalid in one way: a field wrong-typed or out of range, a required field gone, a stray key, or junk."""
    event = draw(st.sampled_from(sorted(GOOD)))
    payload = {"id": draw(st.integers(0, 10**6)), **GOOD[event]}
    fields = {"sample": ["n", "temperature", "seed", "sampler"], "interpolate": ["a", "b", "steps", "method"],
              "reconstruct": ["image"], "stream": ["mode", "fps", "frames", "temperature", "seed"]}[event]
    how = draw(st.sampled_from(["field", "drop", "stray", "junk"]))
    if how == "field":
        key = draw(st.sampled_from(fields))
        payload[key] = draw(junk.filter(lambda v: not VALID[key](v)))
    elif how == "drop":
        payload.pop(draw(st.sampled_from(["id", *[k for k in ("a", "b", "image") if k in payload]])))
    elif how == "stray":
        allowed = set(VALID) | {"id", "source"}  # a stray key is one no event knows
        payload[draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in allowed))] = 1
    else:
        return event, draw(junk)
    return event, payload


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=bad_request())
def test_generated_bad_requests_are_refused_and_server_survives(conn, request):
    event, payload = request
    kind, reply = conn.ask(event, payload)
    assert kind == "error" and reply["id"] == request_id(payload) and reply["code"], (payload, reply)
    assert_alive(conn)


def test_big_upload_is_refused_with_an_error_before_the_hard_limit(server):
    c = Conn(server)
    try:
        kind, reply = c.ask("reconstruct", {"id": "big", "image": b"\x89PNG" + bytes(MAX_UPLOAD_BYTES)})
        assert (kind, reply["code"]) == ("error", "too_large") and c.sio.connected
        assert_alive(c)
    finally:
        c.close()


def test_a_message_over_the_hard_limit_drops_only_that_client(server, conn):
    hostile = Conn(server)
    hostile.sio.emit("reconstruct", {"id": "huge", "image": bytes(MAX_MESSAGE_BYTES + 1)})
    deadline = time.monotonic() + 10
    while hostile.sio.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not hostile.sio.connected
    assert_alive(conn)


def test_requests_in_flight_are_limited_per_client(server):
    c = Conn(server)
    try:
        for i in range(12):
            c.sio.emit("interpolate", {"id": i, "a": "discs:0", "b": "orbits:9", "steps": 512})
        kinds = [c.wait(i)[0] for i in range(12)]
        busy = [c.wait(i)[1]["code"] for i in range(12) if kinds[i] == "error"]
        assert "frames" in kinds and busy and set(busy) == {"busy"}
        assert_alive(c)
    finally:
        c.close()


def test_streams_are_limited_per_client(server):
    c = Conn(server)
    try:
        for i in range(4):
            assert c.ask("stream", {"id": i, "mode": "sample", "fps": 5}, kinds=("streaming", "error"))[0] == "streaming"
        kind, reply = c.ask("stream", {"id": 0, "mode": "sample"}, kinds=("streaming", "error"))
        assert (kind, reply["code"]) == ("error", "bad_payload")  # that id is already streaming
        kind, reply = c.ask("stream", {"id": 9, "mode": "sample"}, kinds=("streaming", "error"))
        assert (kind, reply["code"]) == ("error", "busy")
        assert c.ask("stop", {"id": 2}, kinds=("stopped", "error"))[0] == "stopped"
        assert c.ask("stream", {"id": 9, "mode": "sample"}, kinds=("streaming", "error"))[0] == "streaming"
    finally:
        c.close()


def test_origin_is_refused_unless_allowed(server):
    with pytest.raises(socketio.exceptions.ConnectionError):
        Conn(server, origin="http://evil.example")
    for origin in (ALLOWED, server):
        c = Conn(server, origin=origin)
        assert_alive(c)
        c.close()


def test_connections_beyond_the_limit_are_refused(server, conn, monkeypatch):
    monkeypatch.setattr(events, "MAX_CLIENTS", 1)  # `conn` is already connected
    with pytest.raises(socketio.exceptions.ConnectionError):
        Conn(server)
    assert_alive(conn)


def test_garbage_on_the_raw_websocket_does_not_hurt_others(server, conn):
    ws = websocket.create_connection(server.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket", timeout=5)
    ws.recv()  # the Engine.IO open packet
    ws.send("40")  # join the default namespace
    for junk in ["42garbage", '42["sample",', "451-[\"sample\",{\"_placeholder\":true,\"num\":7}]", "4", "9999",
                 '42["sample",{"id":1,"n":1e999}]', "\x00\xff"]:
        try:
            ws.send(junk)
        except websocket.WebSocketException:
            break  # the server may hang up on a client this broken; that is fine
    for junk in [b"\x00\x01\x02", bytes(range(256))]:
        try:
            ws.send_binary(junk)
        except websocket.WebSocketException:
            break
    ws.close()
    assert_alive(conn)


def test_client_leaving_mid_stream_stops_its_stream(server, conn):
    c = Conn(server)
    c.ask("stream", {"id": "gone", "mode": "sample", "fps": 60})
    c.wait("gone", kinds=("frames",))
    c.sio.disconnect()
    assert_alive(conn)


def test_the_client_drops_the_attachments_of_a_reply_its_disconnect_cut_off():
    client, got = InOrderClient(), []
    client.on("frames", got.append)
    header = '51-["frames",{"id":"r","frames":[{"data":{"_placeholder":true,"num":0}}]}]'
    client._handle_eio_message(header)
    client._handle_eio_message(b"+frame")
    assert got == [{"id": "r", "frames": [{"data": b"+frame"}]}]
    client._handle_eio_message(header)
    client._handle_eio_disconnect("client disconnect")  # the stock client forgets the pending reply here
    client._handle_eio_message(b"+frame")  # and read this one as a packet: ValueError
    assert len(got) == 1


@pytest.mark.slow
def test_vqart_serve_runs_unattended(tiny_run):
    """`vqart serve` without a TTY: binds loopback, prints its URL, answers /health, stops on SIGTERM."""
    proc = subprocess.Popen([sys.executable, "-m", "vqart.cli", "serve", str(tiny_run), "--port", "0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stderr:
            match = re.search(r"http://127\.0\.0\.1:\d+", line)
            if match:
                url = match.group(0)
                break
        assert url, "vqart serve printed no URL"
        assert json.loads(get(url, "/health")[1])["status"] == "ok"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def motion_server(square_run: Path):
    """A server on a run that has a motion prior."""
    with served(square_run) as url:
        yield url


def _stream_frames(c: Conn, rid: str, count: int, timeout: float = 30) -> list[tuple[int, np.ndarray]]:
    """The first `count` (seq, frame) a stream sends."""
    deadline = time.monotonic() + timeout
    while True:
        with c.cv:
            got = [(p["seq"], decoded(p)[0]) for n, p in c.got if n == "frames" and p.get("id") == rid]
        if len(got) >= count:
            return got[:count]
        assert time.monotonic() < deadline, f"{rid}: {len(got)} of {count} frames"
        time.sleep(0.05)


def test_motion_streams_of_all_clients_advance_together_each_by_its_own_seed(motion_server):
    info = Conn(motion_server)
    try:
        assert info.ask("info", {"id": "i"})[1]["motion"] is True
    finally:
        info.close()
    clients = [Conn(motion_server) for _ in range(3)]
    try:
        seeds = [5, 5, 9]  # the first two must see the same frames, whoever else is batched with them
        for i, (c, seed) in enumerate(zip(clients, seeds)):
            name, reply = c.ask("stream", {"id": f"m{i}", "mode": "motion", "fps": 20, "seed": seed, "start": "high:10",
                                           "temperature": 4.0})  # hot: room for the seeds to differ
            assert name == "streaming", reply
        got = [_stream_frames(c, f"m{i}", 6) for i, c in enumerate(clients)]
        for c, i in zip(clients, range(3)):
            assert c.ask("stop", {"id": f"m{i}"}, kinds=("stopped", "error"))[0] == "stopped"
    finally:
        for c in clients:
            c.close()
    frames = [np.stack([f for _, f in g]) for g in got]
    assert all(f.shape == (6, 64, 64) for f in frames)
    assert [s for s, _ in got[0]] == sorted(s for s, _ in got[0])
    np.testing.assert_array_equal(frames[0], frames[1])
    assert not np.array_equal(frames[0], frames[2])


@pytest.mark.parametrize(("payload", "code", "message"), [
    ({"mode": "motion", "like": "nowhere"}, "not_found", "the motion prior knows high, low"),
    ({"mode": "motion", "start": "nowhere:3"}, "not_found", "unknown sketch 'nowhere'"),
    ({"mode": "motion", "like": 7}, "bad_payload", "like must be a sketch name"),
])
def test_bad_motion_streams_are_refused(motion_server, payload, code, message):
    c = Conn(motion_server)
    try:
        name, reply = c.ask("stream", {"id": "bad", **payload})
    finally:
        c.close()
    assert name == "error" and reply["code"] == code and message in reply["message"], reply


def test_motion_without_a_motion_prior_gets_the_command_that_trains_one(conn, tiny_run):
    assert conn.ask("info", {"id": "i"})[1]["motion"] is False
    name, reply = conn.ask("stream", {"id": "m", "mode": "motion"})
    assert name == "error" and reply["code"] == "not_found"
    assert f"vqart prior {tiny_run} --motion" in reply["message"]


def test_an_interpolation_decodes_on_more_threads_and_leaves_the_servers_one(tiny_run, monkeypatch):
    import torch

    from vqart import generate
    from vqart.run import open_run
    from vqart.server import engine as engine_module

    seen = []
    original = generate.interpolate
    monkeypatch.setattr(generate, "interpolate", lambda *a, **k: seen.append(torch.get_num_threads()) or original(*a, **k))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as `vqart serve` runs
    engine = engine_module.Engine(open_run(tiny_run, device="cpu"))
    try:
        path = engine.interpolate("discs:0", "boxes:5", steps=4, method="slerp")
        assert seen == [engine_module.BATCH_THREADS]
        assert engine._call(torch.get_num_threads) == 1  # the count is the calling thread's: ask the model thread
        run = engine.run
        offline = original(run, generate.dataset_frame(run, "discs:0"), generate.dataset_frame(run, "boxes:5"), steps=4)
        assert path.shape == (4, 64, 64) and np.abs(path.astype(int) - offline).max() <= 1
    finally:
        engine.close()
        torch.set_num_threads(before)


def test_every_model_call_runs_on_the_engines_one_thread_whichever_thread_asks(tiny_run, monkeypatch):
    import threading

    from vqart import generate
    from vqart.run import open_run
    from vqart.server.engine import Engine

    run, ran_on = open_run(tiny_run, device="cpu"), []
    for name in ("sample", "interpolate", "reconstruct"):
        original = getattr(generate, name)

        def record(on, *a, _f=original, **k):  # only this engine's calls: other tests' servers may still be filling
            if on is run:
                ran_on.append(threading.get_ident())
            return _f(on, *a, **k)

        monkeypatch.setattr(generate, name, record)
    engine = Engine(run, pool_size=0)
    try:
        asks = [
            lambda: engine.sample(1, seed=3),
            lambda: engine.interpolate("discs:0", "boxes:5", steps=2, method="lerp"),
            lambda: engine.reconstruct(engine.frame("discs:1")),
        ]
        callers = [threading.Thread(target=ask) for ask in asks]  # as Socket.IO runs each event on a new thread
        for caller in callers:
            caller.start()
            caller.join()
        assert len(ran_on) == 3 and len(set(ran_on)) == 1
        assert ran_on[0] not in {caller.ident for caller in callers} | {threading.get_ident()}
    finally:
        engine.close()


def test_a_closed_engine_answers_busy_rather_than_failing(tiny_run):
    from vqart.run import open_run
    from vqart.server.engine import Engine
    from vqart.server.validate import PayloadError

    engine = Engine(open_run(tiny_run, device="cpu"), pool_size=0)
    engine.close()
    with pytest.raises(PayloadError) as caught:
        engine.sample(1, seed=0)
    assert caught.value.code == "busy" and "shutting down" in str(caught.value)
