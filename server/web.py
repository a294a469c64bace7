"""GET /: the built-in page (Live, Reports, SQL) and its static files, shipped in server/web/.
No build step: plain HTML, CSS and JavaScript, with uPlot 1.6.31 (MIT, vendor/uPlot.LICENSE)
vendored from the npm registry. Only the files in that directory are served, by name."""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

WEB_DIR = Path(__file__).resolve().parent / "web"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".LICENSE": "text/plain; charset=utf-8"}
FILES = {str(path.relative_to(WEB_DIR)): path for path in WEB_DIR.rglob("*") if path.suffix in MEDIA_TYPES}


async def index(request: Request) -> Response:
    return FileResponse(WEB_DIR / "index.html", media_type=MEDIA_TYPES[".html"])


async def static(request: Request) -> Response:
    path = FILES.get(request.path_params["name"])
    if path is None:
        raise HTTPException(404, f"no file {request.path_params['name']!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers={"Cache-Control": "max-age=300"})


def routes() -> list[Route]:
    return [Route("/", index, methods=["GET"]), Route("/static/{name:path}", static, methods=["GET"])]
