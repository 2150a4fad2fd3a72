"""Clients for the servers' load tests: many at once, and slow ones."""

from __future__ import annotations

import http.client
import socket
import threading
import time


def burst(address, path: str, n: int, headers: dict | None = None) -> list[tuple[int | None, float]]:
    """`n` clients connect at the same moment and GET `path`: (status or None, seconds) each."""
    start = threading.Barrier(n + 1)
    results = [(None, float("inf"))] * n

    def client(i):
        start.wait()
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(*address, timeout=60)
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            r.read()
            results[i] = (r.status, time.perf_counter() - t0)
        except OSError:
            pass
        finally:
            conn.close()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join()
    return results


def slow_clients(address, n: int) -> list[socket.socket]:
    """`n` connections that send half a request and then nothing (close them when done)."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(address)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        socks.append(s)
    return socks


def connection_threads() -> int:
    """Threads of this process that serve a connection (socketserver names them after it)."""
    return sum("process_request_thread" in t.name for t in threading.enumerate())
