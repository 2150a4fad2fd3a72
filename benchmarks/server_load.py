"""How do the two servers (`play`, `record`) hold up under many, slow and hostile clients?

Each server runs in a child process on 127.0.0.1 (its threads and memory are read from
/proc/PID/status) and is measured from this one:

  burst      N clients connect at once and each fetches a small page: how many are served
             within 5 s, and the slowest
  slow       S clients open a connection, send half a request and wait: the server's threads
             and resident memory while they wait
  (record only)
  refusals   time to the answer of: a motion log that brings the recording over the size cap,
             a motion log over the cap on its own (and whether the recording is then gone),
             an upload without the token
  no-token   20 clients without the token each send an 8 MB body at once: peak memory
  big-motion one 300 MB motion log (under a 320 MB cap): peak memory

    python benchmarks/server_load.py [--clients 200] [--slow 20] [--server play|record|both]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from neuralworld.errors import run_script

TOKEN = "benchmark-token"
RECORD_CAP = 320 * 10**6  # the recorder's size cap here: room for the 300 MB motion log


def child(kind: str, folder: str) -> None:
    """Serve in this process until stdin closes; the port goes to stdout."""
    if kind == "play":
        from neuralworld.play import make_server
        server = make_server(Path(folder), "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
    else:
        from neuralworld.record.server import RecordServer
        server = RecordServer(Path(folder), token=TOKEN, port=0, max_bytes=RECORD_CAP, import_fn=None,
                              log=lambda m: None).start()
        port = server.httpd.server_address[1]
    print(port, flush=True)
    sys.stdin.read()


def status(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()[0] if value.split() else ""
    return {"threads": int(fields["Threads"]), "rss_mb": int(fields["VmRSS"]) / 1024,
            "peak_mb": int(fields["VmHWM"]) / 1024}


def fetch(port: int, path: str, method: str = "GET", body=None, headers=None, timeout: float = 60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"X-Token": TOKEN, **(headers or {})})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def burst(port: int, path: str, n: int) -> dict:
    start = threading.Barrier(n + 1)
    done = [None] * n

    def client(i):
        start.wait()
        t0 = time.perf_counter()
        try:
            if fetch(port, path, timeout=60)[0] == 200:
                done[i] = time.perf_counter() - t0
        except OSError:
            pass
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join()
    times = [t for t in done if t is not None]
    return {"clients": n, "served_in_5s": sum(t <= 5 for t in times), "served": len(times),
            "slowest_s": round(max(times), 2) if times else None}


def slow(port: int, pid: int, n: int, wait: float) -> dict:
    before = status(pid)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line that ends the request
        socks.append(s)
    time.sleep(wait)
    during = status(pid)
    for s in socks:
        s.close()
    return {"slow_clients": n, "threads_before": before["threads"], "threads_during": during["threads"],
            "rss_mb_before": round(before["rss_mb"], 1), "rss_mb_during": round(during["rss_mb"], 1)}


def new_recording(port: int) -> str:
    return json.loads(fetch(port, "/api/recordings", "POST", json.dumps({"mime": "video/webm"}))[1])["id"]


def timed(call) -> tuple[float, object]:
    t0 = time.perf_counter()
    try:
        result = call()
    except OSError as e:
        result = type(e).__name__
    return round(time.perf_counter() - t0, 3), result


def send_raw(port: int, head: str, body_bytes: int, start: bytes = b"", end: bytes = b"", timeout: float = 90) -> str:
    """Send a request with a body of `body_bytes`: `start`, then digits, then `end` (as fast as
    the server takes them); -> the status line of the answer, or what went wrong."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"{head}Content-Length: {body_bytes}\r\n\r\n".encode() + start)
        block, left = b"0" * (1 << 20), body_bytes - len(start) - len(end)
        try:
            while left > 0:
                left -= s.send(block[:min(left, len(block))])
            s.sendall(end)
        except OSError as e:
            sent = f"stopped with {left} bytes left ({type(e).__name__})"
        else:
            sent = "all sent"
        try:
            answer = s.recv(200).split(b"\r\n")[0].decode()
        except OSError as e:
            answer = type(e).__name__
        return f"{answer or 'closed'}; {sent}"


def record_checks(port: int, pid: int, cap: int) -> dict:
    out = {}
    rec = new_recording(port)
    fetch(port, f"/api/recordings/{rec}/video?offset=0", "PUT", bytes(cap - 100))
    out["motion_over_total_cap"] = timed(lambda: fetch(port, f"/api/recordings/{rec}/motion", "PUT", bytes(1000))[0])
    rec = new_recording(port)
    head = f"PUT /api/recordings/{rec}/motion HTTP/1.1\r\nHost: x\r\nX-Token: {TOKEN}\r\n"
    out["motion_alone_over_cap"] = timed(lambda: send_raw(port, head, cap + 1000, b"{", b"}"))
    out["motion_alone_over_cap_then_state"] = fetch(port, f"/api/recordings/{rec}")[0]
    head = f"PUT /api/recordings/{rec}/video?offset=0 HTTP/1.1\r\nHost: x\r\n"
    out["no_token_8mb"] = timed(lambda: send_raw(port, head, 8 << 20))
    return out


def no_token_flood(port: int, pid: int, n: int = 20, size: int = 8 << 20) -> dict:
    before = status(pid)
    head = "PUT /api/recordings HTTP/1.1\r\nHost: x\r\n"
    answers = [None] * n

    def client(i):
        answers[i] = timed(lambda: send_raw(port, head, size))
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = status(pid)
    return {"clients": n, "rss_mb_before": round(before["rss_mb"], 1), "peak_mb_after": round(after["peak_mb"], 1),
            "slowest_answer_s": max(a[0] for a in answers), "answers": sorted({a[1].split(";")[0] for a in answers})}


def big_motion(port: int, pid: int, size: int = 300 << 20) -> dict:
    before = status(pid)
    rec = new_recording(port)
    head = (f"PUT /api/recordings/{rec}/motion HTTP/1.1\r\nHost: x\r\nX-Token: {TOKEN}\r\n"
            "Content-Type: application/json\r\n")
    seconds, answer = timed(lambda: send_raw(port, head, size, b'{"format": "neuralworld-phone-sensors", "pad": "', b'"}'))
    after = status(pid)
    return {"motion_mb": size >> 20, "seconds": seconds, "answer": answer,
            "rss_mb_before": round(before["rss_mb"], 1), "peak_mb_after": round(after["peak_mb"], 1)}


def measure(kind: str, clients: int, slow_clients: int, slow_wait: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / kind
        folder.mkdir()
        (folder / "index.html").write_text("<!doctype html>" + "x" * 2000)
        proc = subprocess.Popen([sys.executable, __file__, "--child", kind, str(folder)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            port = int(proc.stdout.readline())
            path = "/" if kind == "play" else "/api/config"
            result = {"server": kind, "idle": status(proc.pid), "burst": burst(port, path, clients)}
            result["slow"] = slow(port, proc.pid, slow_clients, slow_wait)
            result["burst_after_slow"] = burst(port, path, 20)
            if kind == "record":
                result["refusals"] = record_checks(port, proc.pid, RECORD_CAP)
                result["no_token_flood"] = no_token_flood(port, proc.pid)
                result["big_motion"] = big_motion(port, proc.pid)
            result["end"] = status(proc.pid)
            return result
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--slow", type=int, default=20)
    p.add_argument("--slow-wait", type=float, default=3.0, help="seconds the slow clients wait")
    p.add_argument("--server", choices=["play", "record", "both"], default="both")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(*a.child)
    for kind in (["play", "record"] if a.server == "both" else [a.server]):
        print(json.dumps(measure(kind, a.clients, a.slow, a.slow_wait), indent=1), flush=True)


if __name__ == "__main__":
    run_script(main)
