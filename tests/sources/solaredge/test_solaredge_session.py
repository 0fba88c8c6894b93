"""The RS485 master side of the sans-IO session: bus grants and command/answer matching, on a fake clock."""

from __future__ import annotations

import itertools

from solarbridge.sources.solaredge import functions as fn
from solarbridge.sources.solaredge.commands import parse_commands
from solarbridge.sources.solaredge.framing import Frame
from solarbridge.sources.solaredge.session import CommandRun, MasterPoll, Received

A, B = 0x7F104920, 0x7F104A31


def _ack(src: int) -> Received:
    return Received(Frame(1, src, fn.MASTER_ADDR, fn.MASTER_GRANT_ACK), "")


def test_master_grants_each_slave_in_turn_and_pauses() -> None:
    p = MasterPoll([A, B], grant_timeout=10, pause=5, next_seq=itertools.count(1).__next__)
    (g,) = p.poll(0.0)
    assert (g.dst, g.function, g.src, g.seq) == (A, fn.MASTER_GRANT, fn.MASTER_ADDR, 1)
    assert p.poll(9.9) == [] and p.received(_ack(B), 1.0) == []  # not B's turn
    (g,) = p.received(_ack(A), 1.0)
    assert g.dst == B and p.wake_at == 11.0
    assert p.received(_ack(B), 2.0) == [] and p.waiting_for is None and p.wake_at == 7.0  # the pause
    assert p.poll(6.9) == []
    assert [f.dst for f in p.poll(7.0)] == [A]
    assert p.timeouts == 0


def test_master_passes_over_a_silent_slave() -> None:
    p = MasterPoll([A, B], grant_timeout=10, pause=0, next_seq=itertools.count(1).__next__)
    p.poll(0.0)
    (g,) = p.poll(10.0)  # A never answered
    assert g.dst == B and p.timeouts == 1 and p.timed_out == A
    (g,) = p.received(_ack(B), 11.0)  # no pause: the next round starts at once
    assert g.dst == A


def test_commands_match_answers_by_slave_and_sequence_and_time_out() -> None:
    cmds = parse_commands("12,H239/12,H23a/33")
    run = CommandRun(A, cmds, grant=True, delay=2, timeout=10, next_seq=itertools.count(100).__next__)
    cmd, grant = run.poll(0.0)
    assert (cmd.seq, cmd.function, cmd.payload, cmd.dst) == (100, 0x12, b"\x39\x02", A)
    assert (grant.seq, grant.function) == (101, fn.MASTER_GRANT)
    # telemetry, another inverter, another sequence number: not the answer
    for other in (Frame(100, A, fn.MASTER_ADDR, fn.POST_DATA, b""), Frame(100, B, fn.MASTER_ADDR, 0x90),
                  Frame(99, A, fn.MASTER_ADDR, 0x90)):
        assert run.received(Received(other, {}), 1.0) == []
    answer = Received(Frame(100, A, fn.MASTER_ADDR, 0x90, b""), {"value": 5})
    assert run.received(answer, 1.0) == []  # answered; the next command waits for the delay
    assert run.results == [(cmds[0], 100, answer)]
    assert run.poll(2.9) == []
    cmd, _grant = run.poll(3.0)
    assert cmd.seq == 102
    assert run.poll(12.9) == []
    assert run.poll(13.0) == [] and run.results[1] == (cmds[1], 102, None)  # no answer in 10 s
    cmd, _grant = run.poll(15.0)
    assert cmd.function == 0x33 and not run.done
    run.received(Received(Frame(cmd.seq, A, fn.MASTER_ADDR, 0x0033 | 0x80, b""), ""), 16.0)
    assert run.done and [r[2] is None for r in run.results] == [False, True, False]
