"""Async client for the GivEnergy dongle (TCP 8899): one request in flight, a thin driver of the session.

Which reply answers which request, heartbeats and the register cache are the sans-IO
:class:`~.session.Session`'s business; this module opens the socket, moves bytes, waits
for the session's verdicts and runs the plant-level sequences (detect, refresh, execute).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...model import ControlError
from .controls import WritePlan, check_write, register_name
from .framing import (
    DEFAULT_ADAPTER_SERIAL,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    Framer,
    ReadRequest,
    ReadResponse,
    WriteRequest,
    WriteResponse,
)
from .model import (
    FIRST_BATTERY_ADDRESS,
    FIRST_BCU_ADDRESS,
    FIRST_BMU_ADDRESS,
    MAX_BATTERIES,
    MAX_BCUS,
    MAX_BMUS,
    METER_ADDRESSES,
    METER_BLOCK,
    Plant,
    battery_present,
    hv_present,
    meter_present,
)
from .registers import BASE_HOLDING_FAST, BASE_HOLDING_FULL, BASE_INPUT, BATTERY_BLOCK, Block, family_blocks
from .session import Refused, RequestKey, Session

DEFAULT_PORT = 8899
INVERTER_ADDRESS = 0x11


class GivEnergyError(Exception):
    """Communication with the dongle failed (timeout, connection lost, exception reply)."""


class InverterRefused(GivEnergyError):
    """The inverter answered with an exception reply (function code | 0x80)."""


@dataclass
class PollPlan:
    """What :meth:`GivEnergyClient.refresh` reads: (base, count) blocks at ``read_address``."""

    family: str = "unknown"
    read_address: int = INVERTER_ADDRESS
    input_blocks: tuple[Block, ...] = BASE_INPUT  # every poll
    holding_fast: tuple[Block, ...] = BASE_HOLDING_FAST  # every poll
    holding_full: tuple[Block, ...] = BASE_HOLDING_FULL  # full refreshes
    batteries: str = "lv"  # lv | hv | none
    unsupported: tuple[tuple[int, int], ...] = ()  # (function, base) of probed blocks that failed


class GivEnergyClient:
    """Moves bytes between a socket and a :class:`~.session.Session`; the session does the protocol."""

    def __init__(self, host: str, port: int = DEFAULT_PORT, *, timeout: float = 1.5, retries: int = 2,
                 gap: float = 0.01, read_address: int | None = None, write_address: int = INVERTER_ADDRESS,
                 adapter_serial: str = DEFAULT_ADAPTER_SERIAL, connect_timeout: float = 3.0,
                 plant: Plant | None = None, probe_timeout: float = 1.0,
                 meters: tuple[int, ...] | None = None, log: logging.Logger | None = None) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.retries = retries
        #: None = chosen by model after :meth:`detect` (0x31 for Gen1 hybrid and AC, else 0x11)
        self.pinned_read_address = read_address
        self.read_address = INVERTER_ADDRESS if read_address is None else read_address
        self.probe_timeout = probe_timeout
        self.log = log or logging.getLogger("solarbridge.givenergy")
        self.plan: PollPlan | None = None
        self._plans: dict[tuple[int, int], PollPlan] = {}  # (HR0, HR21) -> probed plan, kept over reconnects
        self._logged_unsupported: set[tuple[int, int]] = set()
        self.write_address = write_address
        self.connect_timeout = connect_timeout
        self.session = Session(plant, adapter_serial=adapter_serial, gap=gap)
        self.battery_count: int | None = None
        self.hv_addresses: tuple[int, ...] = ()  # present BCUs and BMUs
        self.hv_blocks: tuple[tuple[int, int], ...] = ()  # (device address, IR base) read on every poll
        #: external meters to read: None = probe addresses 1..8 after detection (the model family permitting),
        #: else exactly these addresses, unprobed
        self.pinned_meters = meters
        self.meter_addresses: tuple[int, ...] = ()  # meters found (or pinned), read on every poll
        self._meters_found: dict[tuple[int, int], tuple[int, ...]] = {}  # (HR0, HR21) -> probed, kept over reconnects
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._rx_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._waiters: dict[RequestKey, asyncio.Future[Any]] = {}

    # the session's state, under the names the source and tests read
    @property
    def plant(self) -> Plant:
        return self.session.plant

    @property
    def stats(self) -> Counter[str]:
        return self.session.stats

    @property
    def framer(self) -> Framer:
        return self.session.framer

    @property
    def adapter_serial(self) -> str:
        return self.session.adapter_serial

    @property
    def gap(self) -> float:
        return self.session.gap

    @property
    def last_heartbeat(self) -> float | None:
        return self.session.last_heartbeat

    # ------------------------------------------------------------------ connection

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing() and \
            self._rx_task is not None and not self._rx_task.done()

    async def connect(self) -> None:
        await self.close()
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout)
        except (OSError, TimeoutError) as e:
            raise GivEnergyError(f"cannot connect to {self.host}:{self.port}: {e or 'timeout'}") from None
        self.session.reset()
        self._rx_task = asyncio.create_task(self._rx_loop())
        self.stats["connects"] += 1

    async def close(self) -> None:
        task, self._rx_task = self._rx_task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                # the reader's cancellation is expected; ours (close() called while being cancelled) is not
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            except Exception:  # noqa: BLE001 - the reader's own failure was already reported
                pass
        w, self._writer = self._writer, None
        if w is not None:
            w.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(w.wait_closed(), 1)
        self._fail_waiters(GivEnergyError("connection closed"))

    async def __aenter__(self) -> GivEnergyClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _fail_waiters(self, exc: Exception) -> None:
        self.session.reset()
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(exc)
        self._waiters.clear()

    async def _rx_loop(self) -> None:
        assert self._reader is not None
        session = self.session
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for ev in session.receive(data, time.monotonic()):
                    fut = self._waiters.pop(ev.key, None)
                    if fut is None or fut.done():
                        continue
                    if isinstance(ev, Refused):
                        fut.set_exception(InverterRefused(ev.message))
                    else:
                        fut.set_result(ev.reply)
                out = session.data_to_send()
                if out and self._writer is not None and not self._writer.is_closing():
                    self._writer.write(out)
        except (ConnectionError, OSError):
            pass
        finally:
            self.stats["disconnects"] += 1
            self._fail_waiters(GivEnergyError("connection lost"))

    # ------------------------------------------------------------------ requests

    async def _transact(self, req: ReadRequest | WriteRequest, timeout: float | None = None,
                        retries: int | None = None) -> Any:
        timeout = self.timeout if timeout is None else timeout
        retries = self.retries if retries is None else retries
        session = self.session
        async with self._lock:
            for _attempt in range(retries + 1):
                if not self.connected:
                    raise GivEnergyError(f"not connected to {self.host}:{self.port}")
                wait = session.send_delay(time.monotonic())
                if wait > 0:
                    await asyncio.sleep(wait)
                key, data = session.request(req, time.monotonic(), timeout)
                fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                self._waiters[key] = fut
                assert self._writer is not None
                self._writer.write(data)
                try:
                    # wait until the reply, or until the session says this request's time is up
                    while not fut.done():
                        deadline = session.deadline(key)
                        if deadline is None:
                            break
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(asyncio.shield(fut), max(0.0, deadline - time.monotonic()))
                        if not fut.done():
                            for gone in session.expire(time.monotonic()):
                                w = self._waiters.pop(gone, None)
                                if w is not None and not w.done():
                                    w.cancel()
                finally:
                    # cancelled while waiting (shutdown): nobody will look at this future any more
                    if self._waiters.get(key) is fut:
                        del self._waiters[key]
                    if not fut.done():
                        session.cancel(key)
                        fut.cancel()
                if fut.cancelled():
                    continue  # timed out: retry
                return fut.result()  # raises InverterRefused / GivEnergyError
            raise GivEnergyError(f"no reply from {self.host}:{self.port} within {timeout:g} s")

    async def read(self, function: int, base: int, count: int = 60, device: int | None = None,
                   timeout: float | None = None, retries: int | None = None) -> ReadResponse:
        dev = self.read_address if device is None else device
        req = ReadRequest(dev, function, base, count, self.adapter_serial)
        return await self._transact(req, timeout, retries)  # type: ignore[no-any-return]

    async def write_register(self, register: int, value: int, device: int | None = None) -> None:
        """Write one holding register; checked against the whitelist first, confirmed by its echo."""
        check_write(register, value)
        dev = self.write_address if device is None else device
        resp: WriteResponse = await self._transact(WriteRequest(dev, register, value, self.adapter_serial))
        if resp.value != value:
            raise GivEnergyError(f"write of {register_name(register)} echoed {resp.value}, expected {value}")
        self.stats["writes"] += 1

    # ------------------------------------------------------------------ plant level

    async def detect(self, batteries: int | None = None) -> Plant:
        """Identify the inverter (HR 0-59 at 0x11), choose the poll plan for its model family (probing
        the optional blocks once), then find the batteries: LV packs at 0x32+n (all-zero block = absent)
        or, on HV systems, BCUs at 0x70+n and BMU modules at 0x50+m."""
        await self.read(FC_READ_HOLDING, 0, 60, device=INVERTER_ADDRESS)
        plan = await self._make_plan()
        self.plan = plan
        self.read_address = plan.read_address if self.pinned_read_address is None else self.pinned_read_address
        self.hv_addresses = ()
        self.hv_blocks = ()
        if plan.batteries == "hv":
            self.hv_addresses = await self._find_hv()
            batteries = 0
        elif plan.batteries == "none" and batteries is None:
            batteries = 0
        if batteries is None:
            found = 0
            for n in range(MAX_BATTERIES):
                if not await self._probe_unit(FIRST_BATTERY_ADDRESS + n):
                    break
                if not battery_present(self.plant.batteries.get(n, {})):
                    break
                found = n + 1
            batteries = found
        self.battery_count = batteries
        for n in list(self.plant.batteries):
            if n >= batteries:
                del self.plant.batteries[n]
        for addr in list(self.plant.hv):
            if addr not in self.hv_addresses:
                del self.plant.hv[addr]
        self.meter_addresses = await self._find_meters()
        for addr in list(self.plant.meters):
            if addr not in self.meter_addresses:
                del self.plant.meters[addr]
        return self.plant

    async def _find_meters(self) -> tuple[int, ...]:
        """External meters at device addresses 1..8: each address probed once (IR 60-89, no retry), kept when it
        answers with a phase-1 voltage. Every address is probed: meters need not be contiguous (the EMS capture
        has meters at 1 and 3), and an empty address answers all-zero or not at all. The result is kept for the
        life of the client, so a reconnect does not probe again."""
        if self.pinned_meters is not None:
            return tuple(self.pinned_meters)
        identity = self.plant.identity
        cached = self._meters_found.get(identity)
        if cached is not None:
            return cached
        found: list[int] = []
        if family_blocks(*identity).meters:
            base, count = METER_BLOCK
            for addr in METER_ADDRESSES:
                if await self._probe(FC_READ_INPUT, base, count, device=addr, retries=0) and \
                        meter_present(self.plant.meters.get(addr, {})):
                    found.append(addr)
        if found:
            self.log.info("givenergy %s:%s: external meters at %s", self.host, self.port,
                          ", ".join(str(a) for a in found))
        self._meters_found[identity] = tuple(found)
        return tuple(found)

    async def _probe(self, function: int, base: int, count: int, device: int | None = None,
                     retries: int = 1) -> bool:
        """A read with the probe timeout: False on an exception reply (at once) or when every try times out
        (one retry by default, so a single lost or corrupted frame does not drop a block for good)."""
        try:
            await self.read(function, base, count, device=device, timeout=min(self.timeout, self.probe_timeout),
                            retries=retries)
        except GivEnergyError:
            if not self.connected:
                raise
            return False
        return True

    async def _probe_unit(self, device: int) -> bool:
        # absent units answer all-zero blocks (or time out): no retry, as before
        return await self._probe(FC_READ_INPUT, BATTERY_BLOCK, 60, device=device, retries=0)

    async def _make_plan(self) -> PollPlan:
        identity = self.plant.identity
        cached = self._plans.get(identity)
        if cached is not None:
            return cached
        fam = family_blocks(*identity)
        address = fam.read_address if self.pinned_read_address is None else self.pinned_read_address
        unsupported: list[tuple[int, int]] = []
        supported: dict[int, list[Block]] = {FC_READ_INPUT: [], FC_READ_HOLDING: []}
        for function, blocks in ((FC_READ_INPUT, fam.extra_input), (FC_READ_HOLDING, fam.extra_holding)):
            for base, count in blocks:
                if await self._probe(function, base, count, device=address):
                    supported[function].append((base, count))
                    continue
                unsupported.append((function, base))
                self.stats["unsupported_blocks"] += 1
                if (function, base) not in self._logged_unsupported:
                    self._logged_unsupported.add((function, base))
                    self.log.info("givenergy %s:%s: %s block %d-%d not supported by this %s, dropped from the "
                                  "poll", self.host, self.port, "IR" if function == FC_READ_INPUT else "HR", base,
                                  base + count - 1, self.plant.model.label)
        plan = PollPlan(family=self.plant.model.key, read_address=address,
                        input_blocks=BASE_INPUT + tuple(supported[FC_READ_INPUT]),
                        holding_fast=BASE_HOLDING_FAST,
                        holding_full=BASE_HOLDING_FULL + tuple(supported[FC_READ_HOLDING]),
                        batteries=fam.batteries, unsupported=tuple(unsupported))
        self._plans[identity] = plan
        return plan

    async def _find_hv(self) -> tuple[int, ...]:
        """BCUs at 0x70+n, then BMU modules at 0x50+m, each until the first absent one."""
        found: list[int] = []
        for first, limit in ((FIRST_BCU_ADDRESS, MAX_BCUS), (FIRST_BMU_ADDRESS, MAX_BMUS)):
            for n in range(limit):
                addr = first + n
                if not await self._probe_unit(addr) or not hv_present(self.plant.hv.get(addr, {})):
                    break
                found.append(addr)
        blocks = [(addr, 60) for addr in found]
        for addr in found:  # a BCU's second block (IR 120-179, seen in the AIO captures), if it answers
            if addr >= FIRST_BCU_ADDRESS and await self._probe(FC_READ_INPUT, 120, 60, device=addr):
                blocks.append((addr, 120))
        self.hv_blocks = tuple(blocks)
        return tuple(found)

    async def refresh(self, full: bool = False, plan: PollPlan | None = None,
                      due: Callable[[str], bool] | None = None) -> Plant:
        """Read the live blocks (and the holding blocks of the plan on a full refresh) into :attr:`plant`.

        ``due(key)`` (keys ``IR<base>``, ``HR<base>``, ``battery``, ``hv``, ``meters``) can leave blocks out of this
        refresh: the source's poll profile reads slow-changing blocks less often than live ones.
        """
        if self.battery_count is None or self.plan is None:
            await self.detect()
        plan = plan or self.plan or PollPlan()
        address = plan.read_address if self.pinned_read_address is None else self.pinned_read_address
        want = due or (lambda _key: True)
        for base, count in plan.input_blocks:
            if want(f"IR{base}"):
                await self.read(FC_READ_INPUT, base, count, device=address)
        for base, count in plan.holding_full if full else plan.holding_fast:
            if want(f"HR{base}"):
                await self.read(FC_READ_HOLDING, base, count, device=address)
        if self.battery_count and want("battery"):
            for n in range(self.battery_count):
                await self.read(FC_READ_INPUT, 60, device=FIRST_BATTERY_ADDRESS + n)
        if self.hv_blocks and want("hv"):
            for addr, base in self.hv_blocks:
                await self.read(FC_READ_INPUT, base, device=addr)
        if self.meter_addresses and want("meters"):
            base, count = METER_BLOCK
            for addr in self.meter_addresses:
                await self.read(FC_READ_INPUT, base, count, device=addr)
        return self.plant

    def block_keys(self, full: bool = True) -> list[str]:
        """The keys :meth:`refresh` asks ``due`` about with the current plan."""
        plan = self.plan or PollPlan()
        keys = [f"IR{b}" for b, _ in plan.input_blocks]
        keys += [f"HR{b}" for b, _ in (plan.holding_full if full else plan.holding_fast)]
        if self.battery_count:
            keys.append("battery")
        if self.hv_blocks:
            keys.append("hv")
        if self.meter_addresses:
            keys.append("meters")
        return keys

    def holding_blocks_for(self, registers: Any) -> list[Block]:
        """The poll plan's holding blocks that hold ``registers`` (a unit may refuse any other block shape,
        e.g. three-phase HR 1000/1060/1120); 60-register blocks from a multiple of 60 where no block of
        the plan has a register."""
        blocks = list((self.plan or PollPlan()).holding_full)
        out: set[Block] = set()
        for r in registers:
            block = next(((b, n) for b, n in blocks if b <= r < b + n), None)
            out.add(block or (r // 60 * 60, 60))
        return sorted(out)

    async def read_holding(self, registers: Any) -> None:
        """Read the holding blocks that hold ``registers`` again (at the write address), into the plant."""
        for base, count in self.holding_blocks_for(registers):
            await self.read(FC_READ_HOLDING, base, count, device=self.write_address)

    async def execute(self, plan: WritePlan) -> None:
        """Write each register of a validated plan, then read back and compare; mismatch = error."""
        for reg, val in plan.writes:
            check_write(reg, val)
        for reg, val in plan.writes:
            try:
                await self.write_register(reg, val)
            except InverterRefused as e:
                raise ControlError(f"{plan.command}: {e}", field_name=register_name(reg), status=502) from None
        expected = {r: v for r, v in plan.writes if r not in plan.unverified}
        await self.read_holding(expected)
        wrong = {r: self.plant.holding.get(r) for r, v in expected.items() if self.plant.holding.get(r) != v}
        if wrong:
            detail = ", ".join(f"{register_name(r)} reads {v}, expected {expected[r]}" for r, v in wrong.items())
            raise ControlError(f"{plan.command}: read-back mismatch: {detail}", status=502)
