"""`neuralworld play`: serve a world's web player on this machine and open it in the browser.

Only the web folder is served (nothing outside it), on 127.0.0.1 unless another address is
asked for. 127.0.0.1 counts as a secure context, so the page's service worker can cache the
world for offline play; a LAN address over plain HTTP does not.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import threading
import webbrowser
from pathlib import Path

from neuralworld.argtypes import port_type
from neuralworld.errors import UserError
from neuralworld.serving import HeaderDeadline, Server

MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".bin": "application/octet-stream",
    ".png": "image/png",
}


class WebFolderHandler(HeaderDeadline, http.server.SimpleHTTPRequestHandler):
    """Static files of one folder; any path that would leave it is answered 404."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def send_head(self):
        # the base class already drops ".." from paths; this also refuses links that lead outside
        root = Path(self.directory).resolve()
        target = Path(self.translate_path(self.path)).resolve()
        if target != root and root not in target.parents:
            self.send_error(404, "File not found")
            return None
        return super().send_head()

    def end_headers(self):
        # revalidate every load, so a re-export is never hidden by the browser's cache
        self.send_header("Cache-Control", "no-cache")
        # cross-origin isolation: lets the page use several WebAssembly threads (?threads=N)
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def log_message(self, format, *args):  # noqa: A002 -- the base class's name
        pass


def make_server(web_dir: Path, host: str = "127.0.0.1", port: int = 8000) -> Server:
    """A server for `web_dir` bound to host:port (port 0: any free port); not yet serving."""
    web_dir = Path(web_dir)
    if not (web_dir / "index.html").is_file():
        raise UserError(f"{web_dir}: not a web player folder (make one with `neuralworld export WORLD`)")
    handler = functools.partial(WebFolderHandler, directory=os.fspath(web_dir.resolve()))
    try:
        server = Server((host, port), handler)
    except OSError as e:
        raise UserError(f"{host}:{port}: cannot listen there ({e.strerror}; pass another --port or --host)") from None
    return server


def server_url(server: http.server.HTTPServer) -> str:
    host, port = server.server_address[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/"


def serve(web_dir: Path, host: str = "127.0.0.1", port: int = 8000, open_browser: bool = True) -> None:
    """Serve `web_dir` until Ctrl-C, printing the URL and opening it in the browser."""
    server = make_server(web_dir, host, port)
    url = server_url(server)
    print(f"playing {web_dir} at {url}  (Ctrl-C stops)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print("note: offline play (the service worker) needs 127.0.0.1, localhost or HTTPS; "
              "other devices get the page but not offline caching", flush=True)
    if open_browser:
        threading.Timer(0.3, lambda: webbrowser.open(url)).start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()


def web_folder_for(path: Path, sampler_steps: int | None = None) -> Path:
    """The web folder to serve for `path`: a world folder (exported first when its web folder
    is missing or stale) or an exported web folder itself."""
    from neuralworld.export import WEB_FORMAT, export_world, is_current
    from neuralworld.fileio import read_json

    path = Path(path)
    meta = read_json(path / "world.json", "world or web folder (world.json)")
    if meta.get("format") == WEB_FORMAT:
        return path
    web = path / "web"
    if not is_current(path, web, sampler_steps):
        print(f"exporting {path} -> {web}", flush=True)
        export_world(path, web, sampler_steps=sampler_steps)
    return web


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("world", type=Path,
                        help="world folder (exported to WORLD/web first when that is missing or stale), or a web folder")
    parser.add_argument("--port", type=port_type, default=8000, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; the default serves this machine only (e.g. 0.0.0.0 for the local network)")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser, only print the URL")
    parser.add_argument("--sampler-steps", type=int, default=None, metavar="K",
                        help="flow worlds: Euler steps of the sampler per frame (exported again when it differs); "
                             "more steps, more detail, slower")


def run(args) -> int:
    serve(web_folder_for(args.world, args.sampler_steps), host=args.host, port=args.port, open_browser=not args.no_browser)
    return 0
