"""The dashboard: one static page and its assets (api/static/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent.parent / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def index() -> Any:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def mount(app: FastAPI) -> None:
    """The page and its static files (a mount cannot live on a router)."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
