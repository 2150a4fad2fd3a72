"""`neuralworld play`: serves only the web folder, with the right types, exports when stale, stops on Ctrl-C."""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from neuralworld import export, play, serving
from neuralworld.errors import UserError

from http_clients import burst, connection_threads, slow_clients
from player_worlds import save_world

needs_runtime = pytest.mark.skipif(not (export.RUNTIME_DIR / "ort.wasm.min.mjs").is_file(),
                                   reason="ONNX Runtime Web not fetched (run bash scripts/fetch-web-runtime.sh)")


@pytest.fixture
def served(tmp_path):
    """A fake web folder inside a parent that holds a secret, served on a free port."""
    web = tmp_path / "web"
    web.mkdir()
    for name, body in {"index.html": "<!doctype html>hi", "player.js": "1", "ort.min.mjs": "x",
                       "ort.wasm": "\0asm", "model.onnx": "m", "world.json": "{}"}.items():
        (web / name).write_text(body)
    (tmp_path / "secret.txt").write_text("do not serve")
    os.symlink(tmp_path / "secret.txt", web / "link.txt")
    server = play.make_server(web, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def get(server, path):
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=5)
    conn.putrequest("GET", path, skip_host=False, skip_accept_encoding=True)  # path sent as is
    conn.endheaders()
    r = conn.getresponse()
    return r.status, r.getheader("Content-Type"), r.read()


def test_serves_files_with_their_types(served):
    assert play.server_url(served).startswith("http://127.0.0.1:")
    status, ctype, body = get(served, "/")
    assert status == 200 and ctype.startswith("text/html") and body == b"<!doctype html>hi"
    assert get(served, "/ort.min.mjs")[1].startswith("text/javascript")
    assert get(served, "/player.js")[1].startswith("text/javascript")
    assert get(served, "/ort.wasm")[1] == "application/wasm"
    assert get(served, "/model.onnx")[1] == "application/octet-stream"
    assert get(served, "/world.json")[1] == "application/json"
    assert get(served, "/player.js?v=1")[0] == 200


@pytest.mark.parametrize("path", ["/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt",
                                  "//../secret.txt", "/link.txt", "/./../../secret.txt"])
def test_nothing_outside_the_folder(served, path):
    status, _, body = get(served, path)
    assert status == 404 and b"do not serve" not in body


def test_refuses_a_folder_without_a_player(tmp_path):
    with pytest.raises(UserError, match="neuralworld export"):
        play.make_server(tmp_path, "127.0.0.1", 0)


def test_busy_port_is_a_user_error(served):
    with pytest.raises(UserError, match="--port"):
        play.make_server(served.RequestHandlerClass.keywords["directory"], "127.0.0.1", served.server_address[1])


def test_200_clients_at_once_are_all_served(served):
    # socketserver's backlog of 5 left clients waiting for their SYN retries: 68 to 189 of 200
    # served within 5 s, the slowest after 14 to 55 s; with a backlog of 1024, all within 0.2 s
    results = burst(served.server_address[:2], "/", 200)
    assert all(status == 200 for status, _ in results)
    assert max(seconds for _, seconds in results) < 5


def test_slow_clients_are_bounded_and_timed_out(tmp_path, monkeypatch):
    monkeypatch.setattr(serving.Server, "max_connections", 4)
    monkeypatch.setattr(serving.Server, "connection_timeout", 1.0)
    (tmp_path / "index.html").write_text("hi")
    server = play.make_server(tmp_path, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        socks = slow_clients(server.server_address[:2], 12)
        time.sleep(0.3)
        assert connection_threads() <= 4  # one thread per slow client before: 12
        # a new client waits in the backlog; each slow client is dropped after its second of silence
        status, seconds = burst(server.server_address[:2], "/", 1)[0]
        assert status == 200 and seconds < 20
        for s in socks:  # every slow client was closed by the server
            s.settimeout(20)
            assert s.recv(100) == b""
            s.close()
    finally:
        server.shutdown()
        server.server_close()


def test_stalled_headers_free_their_slot_before_the_connection_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(serving.Server, "max_connections", 4)
    monkeypatch.setattr(serving.Server, "connection_timeout", 60.0)
    monkeypatch.setattr(serving, "HEADER_TIMEOUT_S", 0.5)
    (tmp_path / "index.html").write_text("hi")
    server = play.make_server(tmp_path, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        socks = slow_clients(server.server_address[:2], 12)  # more half-sent requests than slots
        time.sleep(0.3)
        # each stalled request is dropped at the header deadline, not after the 60 s connection timeout
        status, seconds = burst(server.server_address[:2], "/", 1)[0]
        assert status == 200 and seconds < 30
        for s in socks:
            s.close()
    finally:
        server.shutdown()
        server.server_close()


@needs_runtime
def test_exports_only_when_missing_or_stale(tmp_path, capsys):
    world = save_world(tmp_path / "world")
    web = play.web_folder_for(world)
    assert web == world / "web" and (web / "model.onnx").is_file()
    stamp = (web / "model.onnx").stat().st_mtime_ns
    assert play.web_folder_for(world) == web and (web / "model.onnx").stat().st_mtime_ns == stamp
    assert play.web_folder_for(web) == web  # a web folder is served as it is
    (world / "world.json").write_text(json.dumps({**json.loads((world / "world.json").read_text()), "preset": "other"}))
    play.web_folder_for(world)
    assert json.loads((web / "world.json").read_text())["preset"] == "other"


@needs_runtime
@pytest.mark.slow
def test_command_prints_the_url_and_stops_on_ctrl_c(tmp_path, interruptible):
    world = save_world(tmp_path / "world")
    play.web_folder_for(world)  # exported here, so the command only serves
    proc = subprocess.Popen([sys.executable, "-m", "neuralworld", "play", str(world), "--port", "0", "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=interruptible)
    try:
        deadline = time.time() + 60
        line = ""
        while "http://" not in line and time.time() < deadline:
            line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line
        url = line[line.index("http://"):].split()[0]
        host, port = url.split("//")[1].strip("/").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        conn.request("GET", "/model.onnx")
        r = conn.getresponse()
        assert r.status == 200 and len(r.read()) == (world / "web" / "model.onnx").stat().st_size
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
