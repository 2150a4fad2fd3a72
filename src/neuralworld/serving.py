"""The HTTP server under `play` and `record`: one thread per connection, held under load.

socketserver's ThreadingHTTPServer alone listens with a backlog of 5 (a burst of connections
beyond that waits for the client's SYN retries, seconds each), never times a connection out
(a client that stops sending keeps its thread for ever) and starts a thread for every
connection. Here: a backlog of 1024, a time limit on every socket operation, and at most
MAX_CONNECTIONS connections served at once; the others wait in the backlog until one ends.
"""

from __future__ import annotations

import sys
import threading
from http.server import ThreadingHTTPServer

BACKLOG = 1024
MAX_CONNECTIONS = 64  # threads serving connections at once (a phone or a browser opens a few)
CONNECTION_TIMEOUT_S = 30.0  # a connection silent this long (no byte in or out) is closed
HEADER_TIMEOUT_S = 5.0  # a request's line and headers must not stall longer (a stalled client frees its slot)


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client never keeps the process alive
    block_on_close = False  # nor delays its stop
    request_queue_size = BACKLOG
    max_connections = MAX_CONNECTIONS
    connection_timeout = CONNECTION_TIMEOUT_S

    def __init__(self, address, handler):
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._closing = threading.Event()
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        # all slots busy: the serving loop waits here and new connections wait in the backlog
        while not self._slots.acquire(timeout=0.1):
            if self._closing.is_set():
                self.shutdown_request(request)
                return
        request.settimeout(self.connection_timeout)
        try:
            super().process_request(request, client_address)  # starts the connection's thread
        except Exception:  # it did not start (a Ctrl-C here may come after it started and released)
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def shutdown(self):
        self._closing.set()
        super().shutdown()

    def handle_error(self, request, client_address):
        # a client that closes or reloads mid-answer, or goes silent, is normal: no traceback
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class HeaderDeadline:
    """Handler mixin: until a request's headers are in, a silence of HEADER_TIMEOUT_S closes the
    connection, so clients that open connections and stall (or idle keep-alive ones) cannot hold
    every slot for the whole connection timeout; bodies then get the server's longer timeout."""

    def handle_one_request(self):
        self.connection.settimeout(HEADER_TIMEOUT_S)
        super().handle_one_request()

    def parse_request(self):
        parsed = super().parse_request()
        self.connection.settimeout(self.server.connection_timeout)
        return parsed
