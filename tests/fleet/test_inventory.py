"""Inventory files: rows expand into sources; every bad row is named by file:line, column and what is allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from solarbridge.config import ConfigError, load, masked
from solarbridge.fleet.inventory import InventoryError, parse_options
from solarbridge.fleet.inventory import load as load_inventory
from solarbridge.fleet.shard import Shard
from solarbridge.sources.givenergy.source import GivEnergyConfig

HEADER = "family,host,port,serial,name,site,options\n"


def config(tmp_path: Path, inventory: str, name: str = "fleet.csv", extra: str = "") -> Path:
    (tmp_path / name).write_text(inventory)
    p = tmp_path / "sb.toml"
    p.write_text(f'[daemon]\nstate_dir = "{tmp_path}/state"\n{extra}\n[inventory]\nfile = "{name}"\n'
                 '[inventory.defaults.givenergy]\npoll_interval = 10\n')
    p.chmod(0o600)
    return p


def errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(path)
    return str(e.value).splitlines()


def test_rows_expand_into_sources_with_defaults_options_and_names(tmp_path, monkeypatch):
    monkeypatch.delenv("SOLARBRIDGE_SHARD", raising=False)
    p = config(tmp_path, "# a comment\n" + HEADER
               + "givenergy,10.0.0.1,8899,SA2114G001,,farm-a,\n"
               + 'givenergy, 10.0.0.2 ,9000,,barn,farm-a,"batteries=0;poll_interval=5;layout=""v3"""\n'
               + "\n"
               + "enphase,10.0.0.3,8443,122301234567,,school,username=me@example.org\n"
               + "synthetic,,,home-7,,,interval=1\n")
    cfg = load(p)
    by_name = {s.name: s for s in cfg.sources}
    assert sorted(by_name) == ["barn", "enphase-122301234567", "givenergy-SA2114G001", "synthetic-home-7"]
    g1, g2 = by_name["givenergy-SA2114G001"], by_name["barn"]
    assert (g1.host, g1.port, g1.poll_interval) == ("10.0.0.1", 8899, 10)  # the family default applies
    assert (g2.host, g2.port, g2.poll_interval, g2.batteries, g2.layout) == ("10.0.0.2", 9000, 5, 0, "v3")
    e = by_name["enphase-122301234567"]
    assert (e.host, e.serial, e.username) == ("10.0.0.3:8443", "122301234567", "me@example.org")
    assert by_name["synthetic-home-7"].device_id == "home-7"
    inv = masked(cfg)["inventory"]
    assert inv["devices"] == 4 and inv["this_worker"] == 4 and inv["sites"] == 2
    assert [r["line"] for r in inv["rows"]] == [3, 4, 6, 7]
    assert {r["key"] for r in inv["rows"]} == {"givenergy:SA2114G001", "givenergy:10.0.0.2:9000",
                                               "enphase:122301234567", "synthetic:home-7"}
    assert masked(cfg)["sources"] == []  # inventory rows are summarised, not printed one table each


def test_every_bad_row_is_named_with_line_column_and_allowed_values(tmp_path):
    p = config(tmp_path, HEADER
               + "givenergy,10.0.0.1,8899,,,a,\n"                 # 2: fine
               + "givenrgy,10.0.0.2,8899,,,a,\n"                  # 3
               + "givenergy,10.0.0.3,99999,,,a,\n"                # 4
               + "givenergy,10.0.0.4,port,,,a,\n"                 # 5
               + "givenergy,10.0.0.5,,,,a,poll_interval=-1\n"     # 6
               + "givenergy,10.0.0.6,,,,a,polling=3\n"            # 7
               + "givenergy,10.0.0.1,8899,,,a,\n"                 # 8: same device as line 2
               + "enphase,10.0.0.7,,,,a,\n"                       # 9: enphase needs its serial
               + "givenergy,,,,,a,\n"                             # 10: no host
               + "givenergy,10.0.0.8,,,bad name,a,\n"             # 11
               + "givenergy,10.0.0.9,,,,a,batteries\n"            # 12
               + "givenergy,10.0.0.10,,,,a,host=x\n"              # 13
               + ",10.0.0.11,,,,a,\n")                            # 14
    f = tmp_path / "fleet.csv"
    # what options a givenergy row takes: every key of the source's config but those the columns fill
    GIVENERGY_OPTIONS = ", ".join(sorted(set(GivEnergyConfig.model_fields) - {"type", "name", "host", "port"}))
    assert "poll_interval" in GIVENERGY_OPTIONS
    assert errors(p) == [
        f"{f}:3: family: unknown family 'givenrgy' (allowed: enphase, givenergy, synthetic)",
        f"{f}:4: port: must be a TCP port 1..65535 (got '99999')",
        f"{f}:5: port: must be a TCP port 1..65535 (got 'port')",
        f"{f}:6: options.poll_interval: Input should be greater than 0 (got -1)",
        f"{f}:7: options.polling: unknown key for family givenergy (allowed: {GIVENERGY_OPTIONS})",
        f"{f}:8: host: the same device as line 2 (device key 'givenergy:10.0.0.1:8899')",
        f"{f}:9: serial: required for family enphase",
        f"{f}:10: host: required for family givenergy (the device's address)",
        f"{f}:11: name: letters, digits and _ . : - only (got 'bad name')",
        f"{f}:12: options: expected key=value pairs separated by ';' (got 'batteries')",
        f"{f}:13: options: host is set by its own column, not in options",
        f"{f}:14: family: required (allowed: enphase, givenergy, synthetic)",
    ]


def test_header_and_shape_errors(tmp_path):
    f = tmp_path / "fleet.csv"
    assert errors(config(tmp_path, "family,address\n")) == [
        f"{f}:1: unknown column 'address' (allowed: family, host, port, serial, name, site, options)"]
    assert errors(config(tmp_path, "host,port\n")) == [
        f"{f}:1: the header needs a family column (columns: family, host, port, serial, name, site, options)"]
    assert errors(config(tmp_path, "family,host\ngivenergy,h,1\n")) == [
        f"{f}:2: 3 fields but the header has 2 columns (quote options that contain commas)"]
    config(tmp_path, "", name="missing.csv")
    (tmp_path / "missing.csv").unlink()
    assert errors(tmp_path / "sb.toml") == [f"{tmp_path / 'missing.csv'}: no such file"]


def test_duplicate_serial_and_names_and_clash_with_config_names(tmp_path):
    f = tmp_path / "fleet.csv"
    p = config(tmp_path, HEADER + "givenergy,h1,,SA1,,,\ngivenergy,h2,,SA1,,,\ngivenergy,h3,,,x,,\n"
               "givenergy,h4,,,x,,\ngivenergy,h5,,,history,,\n")
    assert errors(p) == [
        f"{f}:3: serial: the same device as line 2 (device key 'givenergy:SA1')",
        f"{f}:5: name: 'x' is already used on line 4",
    ]
    text = p.read_text() + '[[sinks]]\ntype = "history"\nname = "history"\n'
    p.write_text(text)
    assert f"{f}:6: name: 'history' is already the name of a [[sources]] or [[sinks]] entry" in errors(p)


def test_toml_inventory_lines_are_the_device_tables(tmp_path):
    inv = ('# fleet\n[[devices]]\nfamily = "givenergy"\nhost = "10.0.0.1"\noptions = { poll_interval = 3 }\n\n'
           '[[devices]]\nfamily = "givenergy"\nhost = "10.0.0.2"\nport = 70000\n\n'
           '[[devices]]\nfamily = "givenergy"\nhost = "10.0.0.3"\noptions = { layout = "v9" }\n')
    p = config(tmp_path, inv, name="fleet.toml")
    f = tmp_path / "fleet.toml"
    assert errors(p) == [f"{f}:7: port: must be a TCP port 1..65535 (got 70000)",
                         f"{f}:12: options.layout: Input should be 'v1' or 'v3' (got 'v9')"]
    (tmp_path / "fleet.toml").write_text(inv.split("\n\n")[0] + "\n")
    assert [s.poll_interval for s in load(p).sources] == [3]


def test_unknown_defaults_family_is_refused(tmp_path):
    p = config(tmp_path, HEADER)
    p.write_text(p.read_text() + "[inventory.defaults.kafka]\nx = 1\n")
    assert errors(p) == [f"{p}: inventory.defaults.kafka: unknown family (allowed: enphase, givenergy, synthetic)"]


def test_options_values_parse_as_toml_where_they_can():
    assert parse_options("a=1; b=2.5;c=true;d=text") == {"a": 1, "b": 2.5, "c": True, "d": "text"}
    with pytest.raises(ValueError, match="a is given twice"):
        parse_options("a=1;a=2")


def test_each_worker_keeps_only_its_share(tmp_path, monkeypatch):
    rows = "".join(f"givenergy,10.0.{i // 200}.{i % 200},8899,SA{i:06d},,,\n" for i in range(300))
    p = config(tmp_path, HEADER + rows)
    seen: dict[str, int] = {}
    for k in range(4):
        monkeypatch.setenv("SOLARBRIDGE_SHARD", f"{k}/4")
        cfg = load(p)
        assert cfg.shard == Shard(k, 4)
        for s in cfg.sources:
            seen[s.name] = seen.get(s.name, 0) + 1
        assert masked(cfg)["daemon"]["shard"] == f"{k}/4"
        assert masked(cfg)["inventory"]["this_worker"] == len(cfg.sources)
    assert len(seen) == 300 and set(seen.values()) == {1}


def test_shard_errors_name_where_the_value_came_from(tmp_path, monkeypatch):
    p = config(tmp_path, HEADER, extra='shard = "5/4"')
    monkeypatch.delenv("SOLARBRIDGE_SHARD", raising=False)
    assert errors(p) == [f"{p}: daemon.shard: k must be 0..3 (got '5/4')"]
    monkeypatch.setenv("SOLARBRIDGE_SHARD", "ordinal/4")
    monkeypatch.setenv("HOSTNAME", "laptop")
    monkeypatch.delenv("SOLARBRIDGE_SHARD_INDEX", raising=False)
    assert errors(p) == [f"{p}: SOLARBRIDGE_SHARD: 'ordinal' needs SOLARBRIDGE_SHARD_INDEX or a host name ending"
                         " in -<number>, as a StatefulSet pod's (host name is 'laptop')"]
    monkeypatch.setenv("HOSTNAME", "solarbridge-3")
    assert load(p).shard == Shard(3, 4)


def test_check_config_prints_every_bad_row_and_exits_2(tmp_path):
    p = config(tmp_path, HEADER + "givenergy,h,1,,,,\ngivenrgy,h,2,,,,\ngivenergy,h,0,,,,\n")
    r = subprocess.run([sys.executable, "-m", "solarbridge.cli.main", "check-config", "-c", str(p)],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")})
    f = tmp_path / "fleet.csv"
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [
        f"solarbridge: config error: {f}:3: family: unknown family 'givenrgy' (allowed: enphase, givenergy,"
        " synthetic)",
        f"solarbridge: config error: {f}:4: port: must be a TCP port 1..65535 (got '0')"]
    (tmp_path / "fleet.csv").write_text(HEADER + "givenergy,h,1,,,,\n")
    ok = subprocess.run([sys.executable, "-m", "solarbridge.cli.main", "check-config", "-c", str(p)],
                        capture_output=True, text=True, timeout=60,
                        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src"),
                             "SOLARBRIDGE_SHARD": "0/1"})
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["daemon"]["shard"] == "0/1" and doc["inventory"]["devices"] == 1


def test_inventory_load_directly_reports_all_problems(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text(HEADER + "a,,,,,,\nb,,,,,,\n")
    with pytest.raises(InventoryError) as e:
        load_inventory(f)
    assert len(e.value.problems) == 2


def test_config_sources_are_sharded_by_name_and_per_worker_environment(tmp_path, monkeypatch):
    p = config(tmp_path, HEADER + "givenergy,h,1,,,,\n", extra="")
    p.write_text(p.read_text() + "".join(f'[[sources]]\ntype = "synthetic"\nname = "s{i}"\n' for i in range(20)))
    held: dict[str, int] = {}
    for k in range(3):
        monkeypatch.setenv("SOLARBRIDGE_SHARD", f"{k}/3")
        monkeypatch.setenv("SOLARBRIDGE_STATE_DIR", str(tmp_path / f"w{k}"))
        monkeypatch.setenv("SOLARBRIDGE_API_LISTEN", f"127.0.0.1:{18080 + k}")
        cfg = load(p)
        assert cfg.daemon.state_dir == tmp_path / f"w{k}" and cfg.api.listen == f"127.0.0.1:{18080 + k}"
        for s in cfg.sources:
            held[s.name] = held.get(s.name, 0) + 1
        # what check-config prints: this worker's [[sources]] tables, not the inventory's
        assert {s["name"] for s in masked(cfg)["sources"]} == {s.name for s in cfg.sources} - {"givenergy-h-1"}
    assert set(held) == {f"s{i}" for i in range(20)} | {"givenergy-h-1"} and set(held.values()) == {1}
    monkeypatch.setenv("SOLARBRIDGE_API_LISTEN", "127.0.0.1:99999")
    assert errors(p) == ["SOLARBRIDGE_API_LISTEN: port must be a TCP port 0..65535 (got '99999')"]


def test_a_worker_with_an_empty_share_runs_idle(tmp_path, monkeypatch):
    from solarbridge.cli.daemon import require_sources

    p = config(tmp_path, HEADER + "givenergy,h,1,,,,\n")
    owners = []
    for k in range(8):
        monkeypatch.setenv("SOLARBRIDGE_SHARD", f"{k}/8")
        cfg = load(p)
        owners.append(len(cfg.sources))
        require_sources(cfg)  # no "nothing to run" error for the seven idle workers
    assert sorted(owners) == [0] * 7 + [1]
    monkeypatch.delenv("SOLARBRIDGE_SHARD")
    (tmp_path / "fleet.csv").write_text(HEADER)
    with pytest.raises(ConfigError, match="nothing to run"):
        require_sources(load(p))


def test_inventory_devices_start_at_their_own_phase_of_the_poll_interval(tmp_path, monkeypatch):
    monkeypatch.delenv("SOLARBRIDGE_SHARD", raising=False)
    rows = "".join(f"givenergy,10.0.0.{i},8899,SA{i:06d},,,\n" for i in range(200))
    p = config(tmp_path, HEADER + rows)  # poll_interval = 10 from the family defaults
    p.write_text(p.read_text() + '[[sources]]\ntype = "synthetic"\nname = "home"\n')
    cfg = load(p)
    phases = [cfg.start_offset(s.name) for s in cfg.sources if s.name != "home"]
    assert all(0 <= x < 10 for x in phases)
    # spread over the interval, not one burst: every tenth of it holds some devices
    assert {int(x) for x in phases} == set(range(10))
    assert cfg.start_offset("home") == 0.0  # a [[sources]] table starts at once, as before
    assert [load(p).start_offset(s.name) for s in cfg.sources] == [cfg.start_offset(s.name) for s in cfg.sources]
