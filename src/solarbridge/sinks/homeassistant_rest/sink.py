"""Home Assistant REST API output (GivTCP's HA_OUTPUT): POST ``/api/states/sensor.<id>``.

Generic over readings (it only needs metrics), so it is also usable as a daemon sink::

    [[sinks]]
    type = "ha_rest"
    url = "http://homeassistant.local:8123"
    token = { file = "/run/secrets/ha_token" }   # long-lived access token
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

from pydantic import Field, field_validator

from ...config import Secret
from ...model import Reading, metric_spec, slug
from ...plugin import DeliveryPending, Sink, SinkConfig
from ...util.backoff import Backoff


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
    """One state per (device, metric) entity, the newest wins.

    A state is *delivered* when Home Assistant answered 2xx to its POST. Until then it is held in the sink
    (:meth:`pending`), newest value per entity, so an outage costs no memory beyond one state per entity and
    a returning Home Assistant gets the latest values. :meth:`flush`/:meth:`deliver` retry until the caller's
    deadline; :meth:`undelivered` names the entities still held.
    """

    Config = HaRestConfig

    def __init__(self, config: HaRestConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self._client: Any = None
        #: entity id -> (reading time, state body) taken but not yet accepted by Home Assistant
        self._held: dict[str, tuple[float, dict[str, Any]]] = {}
        #: entity id -> reading time of the state Home Assistant last accepted (older ones are not re-sent)
        self._sent: dict[str, float] = {}
        self._devices: dict[str, str] = {}  # entity id -> device id, for the undelivered report
        self._last_error = ""

    async def start(self) -> None:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.config.timeout,
                headers={"Authorization": f"Bearer {self.config.token.get_secret_value()}",
                         "Content-Type": "application/json"})

    def _take(self, batch: list[Reading]) -> None:
        for r in batch:
            if not r.online:
                continue
            ts = r.timestamp.timestamp()
            for metric, value in r.metrics.items():
                eid = entity_id(self.config.prefix, r.device_id, metric)
                held = self._held.get(eid)
                if (held is not None and held[0] > ts) or self._sent.get(eid, float("-inf")) > ts:
                    continue  # a newer state of this entity is held or delivered already
                self._held[eid] = (ts, state_body(r, metric, value))
                self._devices[eid] = r.device_id

    async def write(self, batch: list[Reading]) -> None:
        self._take(batch)
        await self._post_held()

    async def _post_held(self) -> None:
        """POST every held state; raise :class:`DeliveryPending` at the first one Home Assistant did not take."""
        import httpx

        await self.start()
        for eid, entry in list(self._held.items()):
            url = f"{self.config.url}/api/states/{eid}"
            try:
                resp = await self._client.post(url, json=entry[1])
            except httpx.HTTPError as e:
                self._failed(f"cannot reach Home Assistant at {self.config.url}: {type(e).__name__}"
                             + (f": {e}" if str(e) else ""))
            if resp.status_code == 401:
                self._failed(f"Home Assistant at {self.config.url} refused the token (401)")
            if not 200 <= resp.status_code < 300:
                self._failed(f"Home Assistant answered {resp.status_code} for {url}")
            if self._held.get(eid) is entry:  # not replaced by a newer state meanwhile
                del self._held[eid]
            self._sent[eid] = max(entry[0], self._sent.get(eid, float("-inf")))
            self.ctx.health.count("states_posted")
        self._last_error = ""

    def _failed(self, text: str) -> NoReturn:
        self._last_error = text
        raise DeliveryPending(text)

    async def flush(self) -> None:
        """Deliver every held state, retrying with backoff; the caller bounds the wait."""
        backoff = Backoff(initial=0.2, cap=2.0)
        while self._held:
            try:
                await self._post_held()
            except DeliveryPending as e:
                self.ctx.health.last_error = str(e)
                await asyncio.sleep(backoff.next_delay())

    def pending(self) -> int:
        return len(self._held)

    def undelivered(self, show: int = 5) -> str:
        n = len(self._held)
        if not n:
            return ""
        names = sorted(self._held)
        more = f" and {n - show} more" if n > show else ""
        devices = len({self._devices[e] for e in names})
        why = f" ({self._last_error})" if self._last_error else ""
        return (f"{n} state(s) of {devices} device(s) not accepted by Home Assistant at {self.config.url}{why}: "
                f"{', '.join(names[:show])}{more}")

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
