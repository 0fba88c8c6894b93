"""Fixtures for the web service tests: a supervisor with a bus, a history store, a source with controls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from solarbridge.config import build  # noqa: E402
from solarbridge.model import (  # noqa: E402
    ControlError,
    ControlRequest,
    ControlResult,
    ControlSpec,
    DeviceInfo,
    Reading,
)
from solarbridge.plugin import Context, Source  # noqa: E402
from solarbridge.runtime import Supervisor  # noqa: E402
from solarbridge.sinks.history.sink import HistoryStore  # noqa: E402

T0 = 1_790_000_000  # a fixed instant (2026-09-21) so bucket alignment is known


def run(coro: Any, timeout: float = 30) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


class ControlSource(Source):
    """A source owning one device with one number control; records what it was asked."""

    SPEC = ControlSpec("charge_target_pct", "number", "Charge target", "%", 4, 100, 1)

    def __init__(self, tmp: Path, fail: bool = False) -> None:
        super().__init__(None, Context.standalone("ctl", "source", "test", tmp))
        self.fail = fail
        self.requests: list[ControlRequest] = []
        self.info = DeviceInfo("inv1", "inverter", "Acme", "X1", "SN1", source="ctl", controls=(self.SPEC,))

    async def run(self, emit: Any) -> None:
        await asyncio.Event().wait()

    def devices(self) -> list[DeviceInfo]:
        return [self.info]

    async def control(self, request: ControlRequest) -> ControlResult:
        if request.command != "charge_target_pct":
            raise ControlError(f"command: unknown command {request.command!r} (allowed: charge_target_pct)",
                               field_name="command")
        if not isinstance(request.value, int | float) or isinstance(request.value, bool) \
                or not 4 <= request.value <= 100:
            raise ControlError(f"charge_target_pct: must be a number from 4 to 100 (got {request.value!r})",
                               field_name="charge_target_pct")
        if self.fail:
            raise ConnectionError("inverter did not answer")
        self.requests.append(request)
        return ControlResult(True, "set", request.value)


def make_supervisor(tmp: Path, **api: Any) -> Supervisor:
    cfg = build({"daemon": {"state_dir": str(tmp), "history": False}, "api": api})
    return Supervisor(cfg)


def reading(device: str, ts: float, metrics: dict[str, Any], *, online: bool = True,
            info: DeviceInfo | None = None, dtype: str = "inverter", source: str = "ctl") -> Reading:
    return Reading(device, dtype, datetime.fromtimestamp(ts, UTC), metrics, source=source, online=online, info=info)


@asynccontextmanager
async def client_for(app: Any, **kw: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver", **kw) as c:
        yield c


@pytest.fixture
def store(tmp_path: Path) -> HistoryStore:
    s = HistoryStore(tmp_path / "history.sqlite")
    yield s
    s.close()
