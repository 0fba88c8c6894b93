"""The ``solaredge`` daemon source: readings from inverters speaking the SolarEdge protocol.

Modes (``mode =``):

- ``network`` (default): act as the monitoring server; listen on ``listen``:``ports`` for inverter
  connections, ACK telemetry, answer time requests and key exchange (``key_file`` for the legacy
  encryption). Point the inverter's server name at this host (DNS) or use ``semonitor -n``.
- ``serial``: read ``serial_port`` (RS485 sniffing or RS232); with ``master = true`` and ``slaves``
  act as RS485 master, granting each inverter the bus in turn.
- ``file``: replay a recorded byte stream (``path``), optionally following it as it grows.

Example::

    [[sources]]
    type = "solaredge"
    mode = "network"
    ports = [22222]
    key_file = "/etc/solarbridge/7f104920.key"
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ...model import DeviceInfo, Reading
from ...plugin import Context, Emit, PluginConfig, Source
from ...util.ports import tcp_port
from . import functions as fn
from .readings import readings_from_payload
from .session import Failed, MasterPoll, Monitor, Received, Send


class SolarEdgeConfig(PluginConfig):
    type: Literal["solaredge"] = "solaredge"
    mode: Literal["network", "serial", "file"] = "network"
    listen: str = Field("0.0.0.0", description="network: address to listen on")
    ports: list[int] = Field(default_factory=lambda: [22222], description="network: TCP ports")
    key_file: str | None = Field(None, description="key file (32 hex chars) for encrypted inverters")
    serial_port: str | None = Field(None, description="serial: device path")
    baudrate: int = Field(115200, ge=300, le=4_000_000)
    master: bool = Field(False, description="serial: act as RS485 master")
    slaves: list[str] = Field(default_factory=list, description="serial master: inverter ids (hex)")
    grant_timeout_s: float = Field(10.0, gt=0, le=120)
    master_pause_s: float = Field(5.0, ge=0, le=3600)
    path: str | None = Field(None, description="file: recorded byte stream")
    follow: bool = Field(True, description="file: keep reading as the file grows")

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("at least one port is needed")
        return [tcp_port(p) for p in v]

    @field_validator("slaves")
    @classmethod
    def _slaves(cls, v: list[str]) -> list[str]:
        for s in v:
            if not re.fullmatch(r"[0-9a-fA-F]{1,8}", s):
                raise ValueError(f"slave id {s!r} is not a hex inverter id like 7f104920")
        return v

    @model_validator(mode="after")
    def _mode_keys(self) -> SolarEdgeConfig:
        if self.mode == "serial" and not self.serial_port:
            raise ValueError("mode 'serial' needs serial_port")
        if self.mode == "file" and not self.path:
            raise ValueError("mode 'file' needs path")
        if self.master and (self.mode != "serial" or not self.slaves):
            raise ValueError("master = true needs mode 'serial' and at least one slave id in slaves")
        return self


class SolarEdgeSource(Source):
    Config = SolarEdgeConfig

    def __init__(self, config: SolarEdgeConfig, ctx: Context) -> None:
        super().__init__(config, ctx)
        self._devices: dict[str, DeviceInfo] = {}
        self._key: bytes | None = None
        #: serial master mode: the session's bus-grant exchange, and a wake-up for its timer
        self._poll: MasterPoll | None = None
        self._poll_moved = asyncio.Event()
        self._seq = int(time.time()) & 0xFFFF

    # ------------------------------------------------------------------ common
    def devices(self) -> list[DeviceInfo]:
        return list(self._devices.values())

    def _monitor(self, reply: bool) -> Monitor:
        return Monitor(reply=reply, key=self._key)

    def _act(self, mon: Monitor, actions: list[Any], emit: Emit, write: Any) -> None:
        h = self.ctx.health
        for act in actions:
            if isinstance(act, Received):
                h.count("messages")
                fr = act.frame
                if fr.function == fn.POST_DATA and fr.payload:
                    for r in readings_from_payload(fr.payload, self.ctx.name or "solaredge"):
                        self._remember(r)
                        emit(r)
                    h.ok()
                elif self._poll is not None and fr.function == fn.MASTER_GRANT_ACK:
                    frames = self._poll.received(act, time.monotonic())
                    if frames and write is not None:
                        for f in frames:
                            write(mon.frame_bytes(f))
                    self._poll_moved.set()
            elif isinstance(act, Send) and write is not None:
                write(act.data)
            elif isinstance(act, Failed):
                h.count("record_errors")
        dec = mon.decoder
        for reason, n in dec.drops.items():
            h.counters[f"dropped_{reason}"] = n
        for reason, n in mon.drops.items():
            h.counters[f"dropped_{reason}"] = n

    def _remember(self, r: Reading) -> None:
        if r.device_id not in self._devices:
            model = {"inverter": "inverter", "optimizer": "power optimizer", "battery": "battery",
                     "meter": "meter"}.get(r.device_type, r.device_type)
            serial = r.device_id.split("-")[0]
            info = DeviceInfo(r.device_id, r.device_type, manufacturer="SolarEdge", model=model, serial=serial,
                              source=self.ctx.name or "solaredge")
            self._devices[r.device_id] = info
        r.info = self._devices[r.device_id]

    async def run(self, emit: Emit) -> None:
        c: SolarEdgeConfig = self.config
        if c.key_file:
            from .crypto import read_key_file

            self._key = read_key_file(c.key_file)
        if c.mode == "network":
            await self._run_network(emit)
        elif c.mode == "serial":
            await self._run_serial(emit)
        else:
            await self._run_file(emit)

    # ------------------------------------------------------------------ network
    async def _run_network(self, emit: Emit) -> None:
        c: SolarEdgeConfig = self.config
        connections: set[asyncio.Task[None]] = set()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                connections.add(task)
            self.ctx.health.count("connections")
            peer = writer.get_extra_info("peername")
            self.ctx.log.info("inverter connected from %s", peer)
            mon = self._monitor(reply=True)
            try:
                while True:
                    try:
                        data = await asyncio.wait_for(reader.read(65536), 120.0)
                    except TimeoutError:
                        break
                    if not data:
                        break
                    self._act(mon, mon.receive(data), emit, writer.write)
                    await writer.drain()
            except (ConnectionError, OSError) as e:
                self.ctx.log.info("connection from %s lost: %s", peer, e)
            except asyncio.CancelledError:
                # the source is stopping and the connection with it. The handler task must not end
                # cancelled: asyncio's stream callback (before Python 3.12) asks a cancelled task for
                # its exception and logs the CancelledError with a traceback at every shutdown.
                self.ctx.log.info("connection from %s closed: stopping", peer)
            finally:
                connections.discard(task)  # type: ignore[arg-type]
                writer.close()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)

        servers = [await asyncio.start_server(handle, c.listen, port) for port in c.ports]
        self.ctx.health.state = "running"
        try:
            await asyncio.gather(*(s.serve_forever() for s in servers))
        finally:
            for s in servers:
                s.close()
            # end the open connections here, while the loop runs, rather than leave them to its shutdown
            for t in list(connections):
                t.cancel()
            if connections:
                await asyncio.wait(list(connections), timeout=2.0)

    # ------------------------------------------------------------------ serial
    async def _run_serial(self, emit: Emit) -> None:
        import serial

        c: SolarEdgeConfig = self.config
        port = serial.Serial(c.serial_port, baudrate=c.baudrate, timeout=0)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        fd = port.fileno()

        def readable() -> None:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            queue.put_nowait(data or None)

        os.set_blocking(fd, False)
        loop.add_reader(fd, readable)
        mon = self._monitor(reply=c.master)
        master_task = None
        if c.master:
            self._poll = MasterPoll([int(s, 16) for s in c.slaves], grant_timeout=c.grant_timeout_s,
                                    pause=c.master_pause_s, next_seq=self._next_seq)
            master_task = asyncio.create_task(self._master(self._poll, mon, port.write))
        try:
            while True:
                data = await queue.get()
                if data is None:
                    raise ConnectionError(f"serial port {c.serial_port} closed")
                self._act(mon, mon.receive(data), emit, port.write)
        finally:
            loop.remove_reader(fd)
            if master_task is not None:
                master_task.cancel()
            port.close()

    def _next_seq(self) -> int:
        self._seq = self._seq % 0xFFFF + 1
        return self._seq

    async def _master(self, poll: MasterPoll, mon: Monitor, write: Any) -> None:
        """The timer side of the session's bus grants (ACKs move it on in :meth:`_act`)."""
        h = self.ctx.health
        while True:
            timeouts = poll.timeouts
            for f in poll.poll(time.monotonic()):
                write(mon.frame_bytes(f))
            if poll.timeouts != timeouts:
                h.count("grant_timeouts")
            self._poll_moved.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poll_moved.wait(), max(0.0, poll.wake_at - time.monotonic()))

    # ------------------------------------------------------------------ file
    async def _run_file(self, emit: Emit) -> None:
        c: SolarEdgeConfig = self.config
        assert c.path is not None
        mon = self._monitor(reply=False)
        with open(c.path, "rb") as f:
            while True:
                data = f.read(1 << 16)
                if data:
                    self._act(mon, mon.receive(data), emit, None)
                    await asyncio.sleep(0)
                elif c.follow:
                    await asyncio.sleep(0.2)
                else:
                    mon.finish()
                    return
