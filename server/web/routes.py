"""GET /: the built-in page (Live, Reports, SQL) and its static files, the package data of
`server.web` (this package's directory).
No build step: plain HTML, CSS and JavaScript, with uPlot 1.6.31 (MIT, vendor/uPlot.LICENSE)
vendored from the npm registry. Only the files in that directory are served, by name.
GET /t.js: the page tracker (server/web/t.js)."""

from __future__ import annotations

import gzip
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

WEB_DIR = Path(__file__).resolve().parent  # the package server.web: these files are its package data
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".LICENSE": "text/plain; charset=utf-8"}
FILES = {str(path.relative_to(WEB_DIR)): path for path in WEB_DIR.rglob("*") if path.suffix in MEDIA_TYPES}
TRACKER = (WEB_DIR / "t.js").read_bytes()
TRACKER_GZIP = gzip.compress(TRACKER, compresslevel=9, mtime=0)


async def index(request: Request) -> Response:
    return FileResponse(WEB_DIR / "index.html", media_type=MEDIA_TYPES[".html"])


async def static(request: Request) -> Response:
    path = FILES.get(request.path_params["name"])
    if path is None:
        raise HTTPException(404, f"no file {request.path_params['name']!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers={"Cache-Control": "max-age=300"})


async def tracker(request: Request) -> Response:
    """The page tracker, gzipped for clients that take it (~1.7 KB instead of ~3.8 KB)."""
    headers = {"Cache-Control": "max-age=3600", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(TRACKER_GZIP, media_type=MEDIA_TYPES[".js"], headers={**headers, "Content-Encoding": "gzip"})
    return Response(TRACKER, media_type=MEDIA_TYPES[".js"], headers=headers)


def routes() -> list[Route]:
    return [Route("/", index, methods=["GET"]), Route("/static/{name:path}", static, methods=["GET"]),
            Route("/t.js", tracker, methods=["GET"])]
