"""Home Assistant REST API output (GivTCP's HA_OUTPUT): POST ``/api/states/sensor.<id>``.

Generic over readings (it only needs metrics), so it is also usable as a daemon sink::

    [[sinks]]
    type = "ha_rest"
    url = "http://homeassistant.local:8123"
    token = { file = "/run/secrets/ha_token" }   # long-lived access token
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from ...config import Secret
from ...model import Reading, metric_spec, slug
from ...plugin import Sink, SinkConfig


class HaRestConfig(SinkConfig):
    url: str = Field(description="Home Assistant base URL, e.g. http://homeassistant.local:8123")
    token: Secret = Field(description="long-lived access token")
    prefix: str = Field("givtcp", description="entity ids are sensor.<prefix>_<device>_<metric>")
    timeout: float = Field(10.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")


def entity_id(prefix: str, device_id: str, metric: str) -> str:
    return "sensor." + slug(f"{prefix}_{device_id}_{metric}")


def state_body(reading: Reading, metric: str, value: Any) -> dict[str, Any]:
    spec = metric_spec(metric)
    attrs: dict[str, Any] = {"friendly_name": f"{reading.device_id} {metric.replace('_', ' ')}",
                             **spec.ha_attributes()}
    if isinstance(value, bool):
        value = "on" if value else "off"
    return {"state": value, "attributes": attrs}


class HaRestSink(Sink):
    Config = HaRestConfig

    def __init__(self, config: HaRestConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self._client: Any = None

    async def start(self) -> None:
        import httpx

        self._client = httpx.AsyncClient(
            timeout=self.config.timeout,
            headers={"Authorization": f"Bearer {self.config.token.get_secret_value()}",
                     "Content-Type": "application/json"})

    async def write(self, batch: list[Reading]) -> None:
        if self._client is None:
            await self.start()
        latest: dict[str, Reading] = {}
        for r in batch:
            if r.online:
                latest[r.device_id] = r
        for r in latest.values():
            for metric, value in r.metrics.items():
                url = f"{self.config.url}/api/states/{entity_id(self.config.prefix, r.device_id, metric)}"
                resp = await self._client.post(url, json=state_body(r, metric, value))
                if resp.status_code == 401:
                    raise RuntimeError(f"Home Assistant at {self.config.url} refused the token (401)")
                if resp.status_code >= 300:
                    raise RuntimeError(f"Home Assistant answered {resp.status_code} for {url}")
                self.ctx.health.count("states_posted")

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
