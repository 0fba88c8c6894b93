"""Every client error is a 4xx with ``{"detail": "<one line naming the field and what is allowed>"}``.

:class:`ApiError` is what routes raise; :func:`install` maps it, FastAPI's validation errors (400, not
422) and :class:`~solarbridge.model.ControlError` to that shape, and documents it in the OpenAPI schema.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..model import ControlError


class ErrorOut(BaseModel):
    detail: str = Field(description="what was wrong, naming the field and the allowed values")


#: ``responses=`` of a route that validates its input
BAD_REQUEST: dict[int | str, dict[str, Any]] = {400: {"model": ErrorOut}}


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def bad(detail: str) -> ApiError:
    return ApiError(400, detail)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    e = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(x) for x in e.get("loc", ())]
    field = ".".join(loc[1:]) or (loc[0] if loc else "request")  # loc[0] is query, path or body
    msg = str(e.get("msg", "invalid"))
    if e.get("type") == "json_invalid":
        field, msg = "body", "not valid JSON"
    return JSONResponse({"detail": f"{field}: {msg}"}, status_code=400)


async def _control_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ControlError)
    status = exc.status if 400 <= exc.status < 600 else 400
    body: dict[str, Any] = {"detail": str(exc)}
    if exc.field_name:
        body["field"] = exc.field_name
    return JSONResponse(body, status_code=status)


def install(app: FastAPI) -> None:
    """Answer errors in the one shape, and say so in the OpenAPI schema."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ControlError, _control_error)
    _document_400(app)


def _document_400(app: FastAPI) -> None:
    """Validation errors are answered 400 with ErrorOut (not FastAPI's 422): say so in the OpenAPI schema."""
    from fastapi.openapi.utils import get_openapi

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            for item in doc.get("paths", {}).values():
                for op in item.values():
                    responses = op.get("responses", {})
                    if responses.pop("422", None) is not None:
                        responses.setdefault("400", {
                            "description": "Bad request: the message names the field and what is allowed",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}})
            comps = doc.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                comps.pop(name, None)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = schema  # type: ignore[method-assign]
