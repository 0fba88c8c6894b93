"""Controls: send a command to a device (needs the bearer token when one is set)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ...model import ControlError, ControlRequest
from ..errors import BAD_REQUEST, ApiError, ErrorOut
from ..sse import json_safe
from . import deps

log = logging.getLogger("solarbridge.api")
router = APIRouter()


class ControlIn(BaseModel):
    command: str = Field(min_length=1, max_length=100, description="a control name from the device's controls")
    value: Any = None


class ControlResultOut(BaseModel):
    ok: bool
    message: str
    value: Any = Field(None, description="the new state read back, as the control's state metric shows it")
    details: dict[str, Any] = Field(default_factory=dict, description="what was done, e.g. the writes by name")


@router.post("/api/devices/{device_id}/control", response_model=ControlResultOut, tags=["control"],
             dependencies=[Depends(deps.require_token)],
             responses={**BAD_REQUEST, 401: {"model": ErrorOut}, 403: {"model": ErrorOut},
                        404: {"model": ErrorOut}, 502: {"model": ErrorOut}})
async def control(device_id: str, body: ControlIn, sup: Any = Depends(deps.supervisor)) -> Any:
    """Send a command to a device (see the device's ``controls``). Needs the bearer token when one is set."""
    req = ControlRequest(device_id=device_id, command=body.command, value=body.value, origin="api")
    try:
        result = await sup.control(req)
    except ControlError:
        raise
    except Exception as e:  # noqa: BLE001 - a device failure is the device's, not a server bug
        log.warning("control %s %s failed: %s", device_id, body.command, e)
        raise ApiError(502, f"the device did not accept the command: {type(e).__name__}: {e}") from None
    return JSONResponse({"ok": bool(result.ok), "message": result.message, "value": json_safe(result.value),
                         "details": json_safe(result.details)})
