"""`neuralworld record`: record a walk with a phone's browser, camera and motion sensors together.

The reference system began with a camera app that also logged the phone's motion (ARKit). This
is that app with nothing to install: a page served from here (record/page/) records the rear
camera with MediaRecorder and logs DeviceOrientation / DeviceMotion events on the video's clock
(the log's format: capture/sensors.py), uploads both while recording, and each finished
recording is imported into a capture through the same code as `neuralworld import`
(`--motion-format phone-sensors`: orientation from the sensors, translation from the video).

Serving: without --lan, plain HTTP on 127.0.0.1 only (a secure context for the browser, so a
laptop's own camera works); with --lan, HTTPS on the local network address with a self-signed
certificate made on first use (record/certificate.py). The address is printed with a one-time
token, as text and as a QR code.

The protocol (every request carries the token: `?token=` in the query, an `X-Token` header or
the `nw_token` cookie set with the page; 403 otherwise; JSON answers):

  GET    /?token=T                      the page (sets the cookie for its script and style)
  GET    /api/config                    {"max_bytes", "chunk_bytes"}
  POST   /api/recordings                body {"mime": "video/webm;codecs=vp8", "client": {...}}
                                        -> 201 {"id"}: the server names the recording
  PUT    /api/recordings/ID/video?offset=N
                                        body = the video's bytes from N on (any length); N must
                                        equal the bytes stored so far (409 {"received"} if not);
                                        -> {"received"}. Past the size cap: 413, and the whole
                                        recording is deleted.
  GET    /api/recordings/ID             {"state": "uploading", "received", "motion"} while
                                        uploading (a client that lost its connection asks this
                                        and resends from "received"), then "queued", "importing",
                                        "imported" (+ "capture", "frames", "train") or "failed"
                                        (+ "error")
  PUT    /api/recordings/ID/motion      body = the motion log (a JSON object; counts toward the
                                        cap: past it, 413 and the recording is deleted)
  POST   /api/recordings/ID/complete    body {"video_bytes": total}: when the stored size
                                        matches, the partial becomes FOLDER/raw/ID/ (video +
                                        motion.json + recording.json) and is queued for import
                                        into FOLDER/ID/; 409 {"received"} otherwise
  DELETE /api/recordings/ID             give up an upload (its partial is removed)

Partials live in FOLDER/.partial/ (record/store.py): removed when untouched for hours, and the
server's own partials when it stops (no page can resume them after: the next server has a new
token). Ctrl-C stops the server cleanly: finished recordings are in raw/ already, an import in
progress is finished first (a second Ctrl-C leaves it, and the command to redo it is printed).
"""

from __future__ import annotations

import argparse
import hmac
import http.cookies
import json
import queue
import re
import secrets
import shlex
import ssl
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from neuralworld.argtypes import port_type
from neuralworld.errors import DISK_FULL, UserError, os_error_line
from neuralworld.fileio import atomic_write_bytes
from neuralworld.record.store import PARTIAL_MAX_AGE_S, READ_BLOCK, OffsetMismatch, RecordingStore, TooLarge
from neuralworld.serving import HeaderDeadline, Server

DEFAULT_PORT = 8765
DEFAULT_MAX_MB = 2048
CHUNK_BYTES = 1 << 20  # the page sends at most this much per request (a dropped request costs little)
JSON_BODY_MAX = 64 * 1024  # create / complete bodies
# After a refusal, what is left of the request body is read off and thrown away, up to this much
# and this long, so that a client still sending sees the answer rather than a reset connection.
LINGER_BYTES = 8 << 20
LINGER_S = 2.0
PAGE_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
              "/index.html": ("index.html", "text/html; charset=utf-8"),
              "/record.js": ("record.js", "text/javascript; charset=utf-8"),
              "/style.css": ("style.css", "text/css; charset=utf-8")}
ROUTE = re.compile(r"^/api/recordings/([^/]+)(?:/(video|motion|complete))?$")
COOKIE = "nw_token"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, default=Path("recordings"),
                        help="folder for the recordings: raw/<id>/ keeps each uploaded video and motion "
                             "log, <id>/ is its capture (made if missing; existing recordings are kept)")
    parser.add_argument("--port", type=port_type, default=DEFAULT_PORT, help="TCP port to serve on (0: any free port)")
    parser.add_argument("--lan", action="store_true",
                        help="serve HTTPS on the local network so that a phone can open the page (a "
                             "self-signed certificate is made on first use: accept the browser's warning "
                             "once); without it, plain HTTP on 127.0.0.1 for this machine's own camera")
    parser.add_argument("--host", default=None,
                        help="with --lan: the address to serve on (default: this machine's address on the "
                             "network of its default route)")
    parser.add_argument("--max-mb", type=float, default=DEFAULT_MAX_MB,
                        help="size cap of one recording (video + motion log), in MB; larger uploads are "
                             "refused and deleted")
    parser.add_argument("--no-import", action="store_true",
                        help="keep the raw recordings only (import them later with `neuralworld import`)")


# --- import of finished recordings -------------------------------------------------------------
def import_command(raw_dir: Path, capture_dir: Path) -> str:
    """The `neuralworld import` command line that makes capture_dir from raw_dir."""
    meta = json.loads((raw_dir / "recording.json").read_text())
    return shlex.join(["neuralworld", "import", str(raw_dir / meta["video"]), "--motion",
                       str(raw_dir / "motion.json"), "--motion-format", "phone-sensors", "-o", str(capture_dir)])


def import_recording(raw_dir: Path, capture_dir: Path) -> dict:
    """Import a finished raw recording into a capture, through the importer (`neuralworld import`)."""
    from neuralworld.capture.importer import import_capture

    meta = json.loads((raw_dir / "recording.json").read_text())
    import_capture(raw_dir / meta["video"], capture_dir, motion=raw_dir / "motion.json",
                   motion_format="phone-sensors")
    from neuralworld.capture.format import open_capture
    cap = open_capture(capture_dir)
    report = cap.meta.get("import", {}).get("motion_report") or {}
    about = (f"{len(cap)} frames {cap.width}x{cap.height}, {cap.meta['duration_s']:.1f} s; rotation from "
             f"{report.get('rotation_source', '?')}, translation from {report.get('translation_source', '?')}")
    return {"frames": len(cap), "width": cap.width, "height": cap.height, "about": about}


class ImportQueue:
    """One worker thread importing finished recordings in arrival order; states for the page."""

    def __init__(self, store: RecordingStore, import_fn, log):
        self.store, self.import_fn, self.log = store, import_fn, log
        self.states: dict[str, dict] = {}
        self.current: str | None = None
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="record-import", daemon=True)
        self._thread.start()

    def put(self, rec_id: str) -> None:
        self.states[rec_id] = {"state": "queued"}
        self._queue.put(rec_id)

    def _work(self) -> None:
        while (rec_id := self._queue.get()) is not None:
            self.current = rec_id
            self.states[rec_id] = {"state": "importing"}
            raw, capture = self.store.raw(rec_id), self.store.capture(rec_id)
            try:
                summary = self.import_fn(raw, capture)
            except Exception as e:  # shown on the page and in the terminal; the raw recording stays
                message = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
                if not isinstance(e, UserError):
                    traceback.print_exc()
                atomic_write_bytes(raw / "import-error.txt", (message + "\n").encode())
                self.states[rec_id] = {"state": "failed", "error": message}
                self.log(f"recording {rec_id}: import failed: {message}\n"
                         f"  raw recording kept in {raw}\n  retry with: {import_command(raw, capture)}")
            else:
                train = shlex.join(["neuralworld", "train", str(capture), "-o", str(Path("worlds") / rec_id)])
                self.states[rec_id] = {"state": "imported", "capture": str(capture), "train": train, **summary}
                about = summary.get("about") or f"{summary.get('frames', '?')} frames"
                self.log(f"recording {rec_id}: capture {capture} ({about})\n  train on it: {train}")
            self.current = None

    def finish(self, timeout: float | None = None) -> bool:
        """Import what is queued, then stop the worker; False if still busy after `timeout`."""
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()


# --- HTTP -------------------------------------------------------------------------------------
class RecordHandler(HeaderDeadline, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: chunk uploads reuse one connection
    server_version = "neuralworld-record"

    @property
    def app(self) -> "RecordServer":
        return self.server.app

    def log_message(self, format, *args):  # the server prints what matters itself
        pass

    # --- answers --------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _refuse(self, status: int, message: str, **extra) -> None:
        """An error answer, sent at once; the rest of the request body is not read (`_linger`)."""
        if self._unread:
            self.close_connection = True
        self._json(status, {"error": message, **extra})
        self._linger()

    def _linger(self) -> None:
        """Read off and throw away what is left of the body, in small blocks, up to LINGER_BYTES
        and LINGER_S: closing a socket that still holds unread bytes resets the connection, and
        the client, still sending, would never see the answer."""
        deadline = time.monotonic() + LINGER_S
        budget = LINGER_BYTES
        try:
            while self._unread and budget > 0 and (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                block = self.rfile.read1(min(self._unread, budget, READ_BLOCK))
                if not block:
                    break
                self._unread -= len(block)
                budget -= len(block)
        except OSError:
            pass

    def _length(self) -> int:
        try:
            return max(0, int(self.headers.get("Content-Length") or 0))
        except ValueError:
            return 0

    def _read(self, n: int) -> bytes:
        """Up to `n` bytes of the request body (fewer only at its end, or if the client left)."""
        data = self.rfile.read(min(n, self._unread))
        self._unread -= len(data)
        return data

    def _body(self, limit: int) -> bytes | None:
        """The whole body when it is at most `limit` bytes; else a 413 answer and None."""
        if self._unread > limit:
            self._refuse(413, f"body over {limit} bytes")
            return None
        return self._read(self._unread)

    # --- token --------------------------------------------------------------------------------
    def _token_ok(self, query: dict) -> tuple[bool, bool]:
        """(allowed, came in the query string)."""
        expected = self.app.token
        given = query.get("token", [None])[0]
        if given is not None:
            return hmac.compare_digest(given.encode(), expected.encode()), True
        header = self.headers.get("X-Token")
        if header is not None:
            return hmac.compare_digest(header.encode(), expected.encode()), False
        cookies = http.cookies.SimpleCookie()
        try:
            cookies.load(self.headers.get("Cookie") or "")
        except http.cookies.CookieError:
            return False, False
        if COOKIE in cookies:
            return hmac.compare_digest(cookies[COOKIE].value.encode(), expected.encode()), False
        return False, False

    # --- dispatch -----------------------------------------------------------------------------
    def _handle(self) -> None:
        self._unread = self._length()  # body bytes not yet read
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        allowed, in_query = self._token_ok(query)
        if not allowed:
            self.close_connection = True
            return self._refuse(403, "missing or wrong token (open the address printed by `neuralworld record`)")
        try:
            if url.path in PAGE_FILES and self.command in ("GET", "HEAD"):
                return self._page(url.path, in_query)
            if url.path == "/api/config" and self.command == "GET":
                return self._json(200, {"max_bytes": self.app.store.max_bytes, "chunk_bytes": CHUNK_BYTES})
            if url.path == "/api/recordings" and self.command == "POST":
                return self._create()
            match = ROUTE.match(url.path)
            if match is None:
                return self._refuse(404, "no such page")
            rec_id, part = match.groups()
            state = self.app.state(rec_id)
            if state is None:
                return self._refuse(404, "no such recording")
            if part is None and self.command == "GET":
                return self._json(200, {"id": rec_id, **state})
            uploading = state["state"] == "uploading"
            if part is None and self.command == "DELETE":
                if uploading:
                    self.app.store.discard(rec_id)
                return self._json(200, {"id": rec_id, "state": "discarded" if uploading else state["state"]})
            if part == "complete" and self.command == "POST" and not uploading:  # a retry whose answer was lost
                if self._body(JSON_BODY_MAX) is not None:
                    self._json(200, {"id": rec_id, **state})
                return
            if not uploading:
                return self._refuse(409, f"recording is {state['state']}, no longer uploading", **state)
            if part == "video" and self.command == "PUT":
                return self._video(rec_id, query)
            if part == "motion" and self.command == "PUT":
                return self._motion(rec_id)
            if part == "complete" and self.command == "POST":
                return self._complete(rec_id)
            return self._refuse(405, f"{self.command} not allowed here")
        except FileNotFoundError:  # the partial went away meanwhile (discarded, too large, cleaned)
            return self._refuse(404, "no such recording")
        except OSError as e:
            if e.errno not in DISK_FULL:
                raise
            self.app.log(f"cannot store an upload: {os_error_line(e, self.app.folder)}")
            return self._refuse(507, "the recording computer's disk is full (free some space there; the upload "
                                     "resumes from what was stored)")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

    def _page(self, path: str, in_query: bool) -> None:
        name, content_type = PAGE_FILES[path]
        body = resources.files("neuralworld.record").joinpath("page", name).read_bytes()
        headers = {}
        if in_query:  # the page's script and style come without the query string: give a cookie
            secure = "; Secure" if self.app.secure else ""
            headers["Set-Cookie"] = f"{COOKIE}={self.app.token}; Path=/; HttpOnly; SameSite=Strict{secure}"
        self._send(200, body, content_type, headers)

    def _create(self) -> None:
        body = self._body(JSON_BODY_MAX)
        if body is None:
            return
        try:
            request = json.loads(body or b"{}")
            client = request.get("client") if isinstance(request.get("client"), dict) else {}
            rec_id = self.app.store.create(str(request.get("mime", "")), client)
        except (ValueError, AttributeError) as e:
            return self._json(400, {"error": str(e)})
        self.app.log(f"recording {rec_id}: started ({request.get('mime')}, "
                     f"{client.get('width', '?')}x{client.get('height', '?')})")
        self._json(201, {"id": rec_id})

    def _video(self, rec_id: str, query: dict) -> None:
        if "Content-Length" not in self.headers:
            self.close_connection = True
            return self._json(411, {"error": "Content-Length required"})
        try:
            offset = int(query.get("offset", ["x"])[0])
        except ValueError:
            return self._refuse(400, "offset=<bytes already sent> required")
        length = self._unread
        try:
            received = self.app.store.append(rec_id, offset, length, self._read)
        except OffsetMismatch as e:
            return self._refuse(409, "offset does not match the stored size", received=e.received)
        except TooLarge:
            self.app.log(f"recording {rec_id}: over the size cap, deleted")
            return self._refuse(413, f"recording over the size cap of {self.app.store.max_bytes} bytes; "
                                     "it was deleted (record a shorter clip or a lower resolution)")
        if received < offset + length:  # the client went away mid-body
            self.close_connection = True
        self._json(200, {"received": received})

    def _motion(self, rec_id: str) -> None:
        try:
            self.app.store.put_motion(rec_id, self._unread, self._read)
        except TooLarge:
            self.app.log(f"recording {rec_id}: over the size cap, deleted")
            return self._refuse(413, f"recording over the size cap of {self.app.store.max_bytes} bytes; "
                                     "it was deleted (record a shorter clip or a lower resolution)")
        except ValueError as e:
            return self._refuse(400, f"motion log refused ({e})")
        self._json(200, {"motion": True})

    def _complete(self, rec_id: str) -> None:
        body = self._body(JSON_BODY_MAX)
        if body is None:
            return
        try:
            size = int(json.loads(body or b"{}").get("video_bytes"))
        except (ValueError, TypeError, AttributeError):
            return self._json(400, {"error": 'body {"video_bytes": <total>} required'})
        try:
            raw = self.app.store.complete(rec_id, size)
        except OffsetMismatch as e:
            return self._json(409, {"error": f"{e.received} bytes stored, {size} announced", "received": e.received})
        except FileNotFoundError as e:
            return self._json(409, {"error": str(e)})
        self.app.log(f"recording {rec_id}: received ({size / 1e6:.1f} MB) -> {raw}")
        self.app.finished(rec_id)
        self._json(200, {"id": rec_id, **self.app.state(rec_id)})


class _Server(Server):
    allow_reuse_address = True
    connection_timeout = 60.0  # a phone's upload over a weak network may stall a while

    def __init__(self, address, app: "RecordServer", ssl_context: ssl.SSLContext | None):
        self.app, self.ssl_context = app, ssl_context
        super().__init__(address, RecordHandler)

    def finish_request(self, request, client_address):
        if self.ssl_context is not None:  # the TLS handshake happens in the request's own thread
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # e.g. a phone refusing the self-signed certificate before it is accepted
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ssl.SSLError):
            super().handle_error(request, client_address)


class RecordServer:
    """The recorder: uploads into `folder`, finished recordings imported by `import_fn(raw, capture)`.

        server = RecordServer(folder, token=..., port=0).start()   # serves in a thread
        ... server.url ...
        server.stop()
    """

    def __init__(self, folder: Path, token: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 max_bytes: int = DEFAULT_MAX_MB * 10**6, ssl_context: ssl.SSLContext | None = None,
                 import_fn=import_recording, log=print):
        self.folder, self.token, self.log = Path(folder), token, log
        self.secure = ssl_context is not None
        self.store = RecordingStore(self.folder, max_bytes)
        self.imports = ImportQueue(self.store, import_fn, log) if import_fn else None
        try:
            self.httpd = _Server((host, port), self, ssl_context)
        except OSError as e:
            raise UserError(f"--port {port}: cannot serve on {host}:{port} ({e.strerror}; pass another "
                            "--port, or 0 for any free one)") from None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"{'https' if self.secure else 'http'}://{host}:{port}/?token={self.token}"

    def state(self, rec_id: str) -> dict | None:
        stored = self.store.state(rec_id)
        if stored is None:
            return None
        if stored["stage"] == "uploading":
            return {"state": "uploading", "received": stored["received"], "motion": stored["motion"]}
        if self.imports and rec_id in self.imports.states:
            return dict(self.imports.states[rec_id])
        return {"state": "imported" if self.store.capture(rec_id).exists() else "received"}

    def finished(self, rec_id: str) -> None:
        if self.imports:
            self.imports.put(rec_id)
        else:
            raw = self.store.raw(rec_id)
            self.log(f"  import it with: {import_command(raw, self.store.capture(rec_id))}")

    def start(self) -> "RecordServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), name="record-http", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self, wait_imports: bool = True) -> None:
        """Stop serving, remove this server's partials, finish queued imports."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()
        removed = self.store.cleanup_own_partials()
        if removed:
            self.log(f"unfinished uploads removed: {', '.join(removed)}")
        if self.imports and wait_imports:
            self.imports.finish()


def print_address(url: str, phone: bool = True, out=sys.stdout) -> None:
    """The address as text, and for a phone as a QR code its camera app opens."""
    if not phone:
        print(f"\nOpen this address in this machine's browser (for a phone, run with --lan):\n\n  {url}\n", file=out)
        return
    import qrcode

    qr = qrcode.QRCode(border=1)
    qr.add_data(url)
    qr.print_ascii(out=out, invert=True)
    print(f"\nOpen this address on the phone (scan the code above; same network):\n\n  {url}\n", file=out)


def run(args) -> int:
    if args.max_mb <= 0:
        raise UserError(f"--max-mb {args.max_mb}: must be positive")
    if args.host and not args.lan:
        raise UserError("--host: only with --lan (without it the recorder serves 127.0.0.1 only)")
    folder = args.output
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder (pass another -o)")
    folder.mkdir(parents=True, exist_ok=True)
    ssl_context, host = None, "127.0.0.1"
    if args.lan:
        from neuralworld.record.certificate import ensure_certificate, lan_address, server_context
        host = args.host or lan_address()
        cert, key = ensure_certificate(host)
        ssl_context = server_context(cert, key)
        print(f"HTTPS with a self-signed certificate ({cert}): the phone warns once, accept it to continue")
    server = RecordServer(folder, token=secrets.token_urlsafe(16), host=host, port=args.port,
                          max_bytes=int(args.max_mb * 10**6), ssl_context=ssl_context,
                          import_fn=None if args.no_import else import_recording,
                          log=lambda message: print(message, flush=True))
    stale = server.store.cleanup_partials(PARTIAL_MAX_AGE_S)
    if stale:
        print(f"removed {len(stale)} abandoned partial upload(s) from {server.store.partial_root}")
    for rec_id in server.store.raw_without_capture():
        raw, capture = server.store.raw(rec_id), server.store.capture(rec_id)
        if server.imports and not (raw / "import-error.txt").exists():
            print(f"recording {rec_id}: not imported yet, importing it now")
            server.imports.put(rec_id)
        else:
            print(f"recording {rec_id}: not imported ({raw}); import it with: {import_command(raw, capture)}")
    print_address(server.url, phone=args.lan)
    print(f"Recordings go to {folder.resolve()}. Ctrl-C stops the server.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    try:
        if server.imports and server.imports.current:
            print(f"finishing the import of {server.imports.current} (Ctrl-C again to leave it for later)", flush=True)
        server.stop()
    except KeyboardInterrupt:
        for rec_id in server.store.raw_without_capture():
            raw = server.store.raw(rec_id)
            print(f"recording {rec_id}: not imported; raw recording kept in {raw}\n"
                  f"  import it with: {import_command(raw, server.store.capture(rec_id))}")
        return 130
    return 0

