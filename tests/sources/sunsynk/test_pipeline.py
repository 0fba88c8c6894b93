"""The capture pipeline (frames -> TCP -> reports -> readings) on garbage, and its unknown-message notes.

The pcap/pcapng reader and the packet decoder it uses are tested in tests/capture/.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from support.sunsynk import FRAME


@given(st.lists(st.one_of(st.binary(max_size=120).map(lambda b: FRAME[:54] + b),
                          st.binary(max_size=400),
                          st.integers(0, 400).map(lambda n: FRAME[:n])), max_size=30))
def test_pipeline_never_crashes_on_garbage_frames(frames):
    from solarbridge.sources.sunsynk.source import Pipeline

    pipe = Pipeline(user_filter="tcp port 51100")
    out = pipe.frames_in((i * 0.5, f) for i, f in enumerate(frames))
    out += pipe.poll(1e9) + pipe.close()
    assert all(r.device_id for r in out)


def test_unknown_lengths_logged_once_each_and_capped(tmp_path, caplog):
    import logging

    from solarbridge.sources.sunsynk.simulator import DongleState, session_frames, write_pcap
    from support.sunsynk import run_file

    path = tmp_path / "noise.pcap"
    write_pcap(path, session_frames(DongleState(seed=9), reports=30, noise=True, split=2))
    with caplog.at_level(logging.INFO):
        readings, src = run_file(path)
    assert len(readings) == 30
    notes = [r for r in caplog.records if "not a 292/302-byte report" in r.getMessage()]
    assert 1 <= len(notes) <= 5
    assert src.pipeline is not None and src.pipeline.stats()["unknown_messages"] >= 30
