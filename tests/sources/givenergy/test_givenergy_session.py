"""The sans-IO session: request matching, refusals, timeouts by the caller's clock, heartbeats (no sockets)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from solarbridge.sources.givenergy.framing import (
    FC_READ_HOLDING,
    FC_READ_INPUT,
    Heartbeat,
    ReadRequest,
    WriteRequest,
    decode_frame,
    encode_error_response,
    encode_heartbeat,
    encode_read_response,
    encode_write_response,
)
from solarbridge.sources.givenergy.session import Answered, Refused, Session

AD, INV = "WF1234G567", "SA1234G567"


def _hr(base: int, values: list[int], device: int = 0x11, fn: int = FC_READ_HOLDING) -> bytes:
    return encode_read_response(AD, device, fn, INV, base, values)


def test_request_bytes_are_the_wire_frame_and_outstanding_until_answered() -> None:
    s = Session()
    key, data = s.request(ReadRequest(0x11, FC_READ_HOLDING, 0, 60), now=100.0, timeout=1.5)
    req = decode_frame(data)
    assert isinstance(req, ReadRequest) and (req.device, req.function, req.base, req.count) == (0x11, 3, 0, 60)
    assert s.outstanding() == (key,) and s.deadline(key) == 101.5
    events = s.receive(_hr(0, list(range(60))), now=100.2)
    assert events == [Answered(key, events[0].reply)] and events[0].reply.values[5] == 5
    assert s.outstanding() == () and s.plant.holding[59] == 59


def test_reply_is_matched_by_shape_not_order_and_others_refresh_the_cache() -> None:
    s = Session()
    key, _ = s.request(ReadRequest(0x11, FC_READ_INPUT, 180, 60), now=0.0, timeout=1.0)
    # another client's reply (HR 0-59) arrives first: no event, but the cache learns it
    other = _hr(0, [7] * 60)
    mine = _hr(180, [1] * 60, fn=FC_READ_INPUT)
    events = s.receive(other + mine, now=0.1)
    assert [e.key for e in events] == [key]
    assert s.stats["unsolicited"] == 1 and s.plant.holding[0] == 7 and s.plant.input[180] == 1


def test_timeouts_come_from_the_callers_clock() -> None:
    s = Session()
    key, _ = s.request(ReadRequest(0x11, FC_READ_HOLDING, 60, 60), now=10.0, timeout=2.0)
    assert s.expire(11.9) == [] and s.next_deadline() == 12.0
    assert s.expire(12.0) == [key] and s.stats["timeouts"] == 1 and s.outstanding() == ()
    # a late reply is no longer an answer
    assert s.receive(_hr(60, [0] * 60), now=12.5) == [] and s.stats["unsolicited"] == 1


def test_write_echo_and_exception_reply() -> None:
    s = Session()
    key, data = s.request(WriteRequest(0x11, 116, 55), now=0.0, timeout=1.0)
    assert isinstance(decode_frame(data), WriteRequest)
    [ev] = s.receive(encode_write_response(AD, 0x11, INV, 116, 55), now=0.1)
    assert isinstance(ev, Answered) and ev.reply.value == 55
    key, _ = s.request(WriteRequest(0x11, 116, 55), now=1.0, timeout=1.0)
    [ev] = s.receive(encode_error_response(AD, 0x11, 6, INV, 116, 55), now=1.1)
    assert isinstance(ev, Refused) and ev.key == key and "charge_target_soc" in ev.message
    assert s.stats["error_replies"] == 1


def test_heartbeat_is_echoed_through_the_outbox() -> None:
    s = Session()
    assert s.receive(encode_heartbeat(AD, 2), now=5.0) == []
    out = s.data_to_send()
    assert decode_frame(out) == Heartbeat(AD, 2) and s.data_to_send() == b""
    assert s.last_heartbeat == 5.0 and s.stats["heartbeats"] == 1


def test_request_gap() -> None:
    s = Session(gap=0.25)
    assert s.send_delay(0.0) == 0.0
    s.request(ReadRequest(0x11, FC_READ_HOLDING, 0, 60), now=1.0, timeout=1.0)
    assert abs(s.send_delay(1.1) - 0.15) < 1e-9
    assert s.send_delay(1.3) == 0.0


def test_reset_abandons_what_was_outstanding() -> None:
    s = Session()
    key, _ = s.request(ReadRequest(0x11, FC_READ_HOLDING, 0, 60), now=0.0, timeout=1.0)
    s.receive(_hr(0, [1] * 60)[:20], now=0.0)  # half a frame
    assert s.reset() == [key] and s.outstanding() == () and s.framer.buffered == 0


@given(st.binary(max_size=400), st.lists(st.integers(0, 399), max_size=5))
def test_garbage_never_crashes_and_never_answers_a_wrong_request(junk: bytes, cuts: list[int]) -> None:
    s = Session()
    key, _ = s.request(ReadRequest(0x11, FC_READ_HOLDING, 0, 60), now=0.0, timeout=1.0)
    stream = junk + _hr(0, list(range(60)))
    pos = 0
    events = []
    for c in sorted(cuts) + [len(stream)]:
        events += s.receive(stream[pos:c], now=0.1)
        pos = max(pos, c)
    assert all(e.key == key for e in events)
