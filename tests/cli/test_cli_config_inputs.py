"""Issue 17 items 8, 12 and 16: inputs that must be refused, default instance names, what `run` prints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from solarbridge.config import ConfigError, build

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}
SB = [sys.executable, "-m", "solarbridge.cli.main"]
SYNTH = '[[sources]]\ntype = "synthetic"\n'


def sb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SB, *args], capture_output=True, text=True, env=ENV, timeout=60)


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "sb.toml"
    p.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n' + text)
    p.chmod(0o600)
    return str(p)


BAD = [
    ('[api]\nlisten = "127.0.0.1:99999"\n' + SYNTH, "api.listen: port must be a TCP port 0..65535 (got '99999')"),
    ('[api]\nlisten = "127.0.0.1:http"\n' + SYNTH, "api.listen: port must be a TCP port 0..65535 (got 'http')"),
    ('[api]\ngivtcp_listen = "127.0.0.1:70000"\n' + SYNTH, "api.givtcp_listen: port must be a TCP port 0..65535"),
    ('[api]\nenabled = "yes"\n' + SYNTH, "api.enabled: Input should be a valid boolean (got 'yes')"),
    (SYNTH + '[[sinks]]\ntype = "jsonl"\nfsync = "yes"\n', "sinks[0].fsync: must be true or false (got 'yes')"),
    (SYNTH + '[[sinks]]\ntype = "mqtt"\nurl = "x"\n', "sinks[0].url: url must look like mqtt://host:1883"),
    (SYNTH + '[[sinks]]\ntype = "influxdb2"\nhost = "x"\norg = "o"\nbucket = "b"\n', "host must start with http://"),
    ('[[sources]]\ntype = "synthetic"\ninterval = -3\n', "sources[0].interval: Input should be greater than 0"),
    (SYNTH + '[[sites]]\nname = "h"\ndevices = ["x"]\ntimezone = "Mars/Base"\n',
     "sites[0].timezone: unknown time zone 'Mars/Base' (use an IANA name such as Europe/London)"),
    ('[counters]\ntimezone = "Mars/Base"\n' + SYNTH, "counters.timezone: unknown time zone 'Mars/Base'"),
]


@pytest.mark.parametrize(("text", "needle"), BAD, ids=[n.split(":")[0] for _, n in BAD])
def test_check_config_refuses_with_one_line(tmp_path, text, needle):
    out = sb("check-config", "-c", write(tmp_path, text))
    assert out.returncode == 2, out.stdout
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr
    # the value is shown once, never "(got 'x') (got 'x')" nor "'x' ... (got 'x')"
    assert lines[0].count("(got ") <= 1, lines[0]
    for value in ("'Mars/Base'", "'99999'", "'yes'"):
        assert lines[0].count(value) <= 1, lines[0]


def test_check_config_prints_the_keys_as_written(tmp_path):
    """The InfluxDB sink's key is `schema` (a Python name clash made it `schema_` inside): check-config
    prints what a config file must say, in both formats, and the printed TOML is a valid config again."""
    text = SYNTH + '[[sinks]]\ntype = "influxdb2"\nhost = "http://127.0.0.1:8086"\norg = "o"\nbucket = "b"\n' \
                   'schema = "sunsniff"\n'
    for fmt in ("toml", "json"):
        out = sb("check-config", "-c", write(tmp_path, text), "--format", fmt)
        assert out.returncode == 0, out.stderr
        assert "schema_" not in out.stdout
        assert ('schema = "sunsniff"' if fmt == "toml" else '"schema": "sunsniff"') in out.stdout, out.stdout
    again = tmp_path / "again.toml"
    out = sb("check-config", "-c", write(tmp_path, text), "--format", "toml")
    again.write_text("\n".join(ln for ln in out.stdout.splitlines() if not ln.startswith("#")))
    again.chmod(0o600)
    assert sb("check-config", "-c", str(again)).returncode == 0
    out = sb("check-config", "-c", write(tmp_path, text.replace("schema =", "schema_ =")))
    assert out.returncode == 2 and "sinks[0].schema_: unknown key" in out.stderr, out.stderr


def test_no_sources_is_said_and_exits_2(tmp_path):
    cfg = write(tmp_path, '[[sinks]]\ntype = "jsonl"\n')
    for command in ("run", "check-config"):
        t0 = time.monotonic()
        out = sb(command, "-c", cfg)
        assert out.returncode == 2
        assert out.stderr.strip().endswith("sources: none configured, so there is nothing to run "
                                           "(add a [[sources]] table, e.g. type = \"synthetic\")"), out.stderr
        assert time.monotonic() - t0 < 30  # it does not run forever


# ----------------------------------------------------------------------------- item 12: default names


def names(raw: dict) -> list[str]:
    cfg = build(raw)
    return [c.name for c in cfg.sources + cfg.sinks]


def test_default_names_are_numbered_per_type():
    raw = {"sources": [{"type": "synthetic"}, {"type": "synthetic"}],
           "sinks": [{"type": "csv"}, {"type": "jsonl"}, {"type": "csv"}, {"type": "csv"},
                     {"type": "influxdb2", "org": "o", "bucket": "b", "token": "t"},
                     {"type": "influxdb2", "org": "o", "bucket": "b", "token": "t"}]}
    assert names(raw) == ["synthetic", "synthetic2", "csv", "jsonl", "csv2", "csv3", "influxdb2", "influxdb2-2"]


def test_default_names_survive_reordering_across_types():
    """Spool and token files are named after these: moving, adding or removing entries of other types
    must not rename an entry."""
    influx = {"type": "influxdb2", "org": "o", "bucket": "b", "token": "t", "host": "http://127.0.0.1:1"}
    a = {"sources": [{"type": "synthetic"}], "sinks": [dict(influx), {"type": "csv"}, {"type": "jsonl"}]}
    b = {"sources": [{"type": "synthetic"}], "sinks": [{"type": "jsonl"}, {"type": "csv"}, {"type": "state"},
                                                       dict(influx)]}
    by_type_a = {c.type: c.name for c in build(a).sinks}
    by_type_b = {c.type: c.name for c in build(b).sinks}
    assert by_type_a["influxdb2"] == by_type_b["influxdb2"] == "influxdb2"
    assert by_type_a["csv"] == by_type_b["csv"] == "csv"


def test_explicit_names_are_not_reused():
    raw = {"sources": [{"type": "synthetic"}],
           "sinks": [{"type": "csv"}, {"type": "csv", "name": "csv2"}, {"type": "csv"}]}
    assert names(raw) == ["synthetic", "csv", "csv2", "csv3"]
    with pytest.raises(ConfigError, match="'csv' is used twice"):
        build({"sources": [{"type": "synthetic"}], "sinks": [{"type": "csv", "name": "csv"},
                                                             {"type": "csv", "name": "csv"}]})


# ----------------------------------------------------------------------------- item 16: what `run` prints


def test_run_prints_a_summary_and_state_changes_without_verbose(tmp_path):
    """No -v: one start-up line naming sources, sinks and the dashboard, one line when a device first
    answers, one line per source failure, then "stopping"/"stopped"; nothing per reading."""
    from servers import finish, free_port, wait_for

    port = free_port()
    cfg = write(tmp_path, f'[api]\nenabled = true\nlisten = "127.0.0.1:{port}"\n'
                          '[[sources]]\ntype = "synthetic"\ninterval = 0.05\n'
                          '[[sinks]]\ntype = "jsonl"\n[[sinks]]\ntype = "csv"\nname = "sheets"\n')
    proc = subprocess.Popen([*SB, "run", "-c", cfg], env=ENV, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines: list[str] = []

    def next_line() -> bool:  # blocks for one line of the log
        line = proc.stderr.readline()
        assert line, f"daemon ended: {lines}"
        lines.append(line.rstrip("\n"))
        return "device synthetic-home" in line

    wait_for(next_line, 30, lambda: f"the daemon to log 'device synthetic-home' (log: {lines})", interval=0)
    time.sleep(1.0)  # ~20 more readings: none of them may print anything
    proc.send_signal(signal.SIGTERM)
    _, rest = finish(proc)
    lines += rest.splitlines()
    assert proc.returncode == 0, lines
    summary = [ln for ln in lines if "running 1 source(s)" in ln]
    assert len(summary) == 1, lines
    assert "synthetic" in summary[0] and "2 sink(s)" not in summary[0]  # history is added: 3 sinks
    assert "3 sink(s): jsonl, sheets (csv), history" in summary[0]
    assert f"dashboard http://127.0.0.1:{port}/" in summary[0]
    device = [ln for ln in lines if "device synthetic-home" in ln]
    assert len(device) == 1 and device[0].endswith("online")
    assert [ln.split(": ")[-1] for ln in lines if "solarbridge.status" in ln][-2:] == ["stopping", "stopped"]
    site = [ln for ln in lines if "device site:synthetic-home" in ln]  # the device's own site (auto_sites)
    assert len(site) == 1 and site[0].endswith("online"), lines
    assert len(lines) == 5, lines


def test_check_config_prints_the_resolved_sites_in_both_formats(tmp_path):
    text = (SYNTH + '[[sites]]\nname = "home"\ntimezone = "Europe/London"\ngrid = "meter"\npv = ["inv"]\n'
            'exclude = ["pvmeter"]\n')
    out = sb("check-config", "-c", write(tmp_path, text))
    assert out.returncode == 0, out.stderr
    resolved = json.loads(out.stdout)["sites_resolved"]
    assert "site site:home (Europe/London)" in resolved
    assert any(line.startswith("grid:    meter grid_power_w") for line in resolved), resolved
    assert "pv:      inv pv_power_w" in resolved and "excluded: pvmeter" in resolved
    out = sb("check-config", "-c", write(tmp_path, text), "--format", "toml")
    comments = [ln for ln in out.stdout.splitlines() if ln.startswith("#")]
    assert "# site site:home (Europe/London)" in comments and "#   load:    derived = pv + grid + battery" in comments
