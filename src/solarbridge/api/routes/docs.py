"""``/api/docs``: Swagger UI served from the ``swagger-ui-bundle`` package, so it works offline (no CDN)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles

ASSETS = "/api/docs/assets"
router = APIRouter()


@router.get("/api/docs", include_in_schema=False)
async def docs() -> Any:
    return get_swagger_ui_html(openapi_url="/api/openapi.json", title="solarbridge API",
                               swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                               swagger_css_url=f"{ASSETS}/swagger-ui.css",
                               swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
                               # no badge fetched from validator.swagger.io
                               swagger_ui_parameters={"validatorUrl": None})


def mount(app: FastAPI) -> None:
    """The page and the Swagger UI files it loads (a mount cannot live on a router)."""
    from swagger_ui_bundle import swagger_ui_path

    app.include_router(router)
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="swagger-ui")
