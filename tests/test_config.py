"""Config loading: exact one-line errors naming file, key path and what is allowed; secrets handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from solarbridge.config import ConfigError, load, masked
from support.paths import REPO


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    p = tmp_path / "sb.toml"
    p.write_text(text)
    p.chmod(mode)
    return p


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as e:
        load(path)
    return str(e.value)


def test_valid_config_builds_plugins(tmp_path):
    p = write(tmp_path, f"""
[daemon]
state_dir = "{tmp_path}"
[[sources]]
type = "synthetic"
interval = 5
[[sinks]]
type = "jsonl"
rotate = "daily"
""")
    cfg = load(p)
    assert cfg.sources[0].interval == 5.0
    assert cfg.sources[0].name == "synthetic"
    assert cfg.sinks[0].rotate == "daily"


def test_unknown_key_names_path_and_allowed_keys(tmp_path):
    p = write(tmp_path, '[[sources]]\ntype = "synthetic"\nintervall = 5\n')
    msg = error_of(p)
    assert msg.startswith(f"{p}: sources[0].intervall: unknown key (allowed: ")
    assert "interval" in msg and "seed" in msg


def test_bad_type_names_range_and_value(tmp_path):
    p = write(tmp_path, '[[sources]]\ntype = "synthetic"\ninterval = -3\n')
    assert error_of(p) == f"{p}: sources[0].interval: Input should be greater than 0 (got -3)"


def test_wrong_value_type(tmp_path):
    p = write(tmp_path, '[[sinks]]\ntype = "jsonl"\nrotate = "weekly"\n')
    assert error_of(p) == (f"{p}: sinks[0].rotate: Input should be 'none', 'size' or 'daily' (got 'weekly')")


def test_unknown_plugin_type_lists_allowed(tmp_path):
    p = write(tmp_path, '[[sinks]]\ntype = "kafka"\n')
    msg = error_of(p)
    assert msg.startswith(f"{p}: sinks[0].type: unknown sink type 'kafka' (allowed: ")
    assert "history" in msg and "mqtt" in msg


def test_unknown_top_level_section(tmp_path):
    p = write(tmp_path, "[deamon]\nstate_dir = '/tmp'\n")
    assert error_of(p) == f"{p}: deamon: unknown key (allowed: api, counters, daemon, inventory, sinks, sites, sources)"


def test_bad_toml_syntax(tmp_path):
    p = write(tmp_path, "[daemon\n")
    assert error_of(p).startswith(f"{p}: not valid TOML: ")


def test_missing_file(tmp_path):
    assert error_of(tmp_path / "nope.toml") == f"{tmp_path / 'nope.toml'}: no such file"


def test_duplicate_names(tmp_path):
    p = write(tmp_path, '[[sinks]]\ntype = "jsonl"\nname = "a"\n[[sinks]]\ntype = "csv"\nname = "a"\n')
    assert "'a' is used twice" in error_of(p)


def test_world_readable_secrets_refused_with_chmod_hint(tmp_path):
    p = write(tmp_path, '[api]\ntoken = "hunter2"\n', mode=0o644)
    assert error_of(p) == (f"{p}: holds secrets (api.token) but is readable by group or others (mode 0644);"
                           f" fix with: chmod 600 {p}")


def test_group_readable_secrets_refused(tmp_path):
    p = write(tmp_path, '[api]\ntoken = "hunter2"\n', mode=0o640)
    assert "fix with: chmod 600" in error_of(p)


def test_world_readable_without_secrets_is_fine(tmp_path):
    p = write(tmp_path, '[api]\nlisten = "127.0.0.1:9"\n', mode=0o644)
    assert load(p).api.listen == "127.0.0.1:9"


def test_secret_from_env_and_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SB_TEST_TOKEN", "from-env")
    p = write(tmp_path, '[api]\ntoken = { env = "SB_TEST_TOKEN" }\n', mode=0o644)
    assert load(p).api.token.get_secret_value() == "from-env"
    sf = tmp_path / "tok"
    sf.write_text("from-file\n")
    sf.chmod(0o600)
    p = write(tmp_path, f'[api]\ntoken = {{ file = "{sf}" }}\n', mode=0o644)
    assert load(p).api.token.get_secret_value() == "from-file"
    sf.chmod(0o644)
    assert error_of(p) == (f"{p}: api.token: secret file {sf} is readable by group or others (mode 0644);"
                           f" fix with: chmod 600 {sf}")


def test_missing_env_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("SB_NOT_SET", raising=False)
    p = write(tmp_path, '[api]\ntoken = { env = "SB_NOT_SET" }\n')
    assert error_of(p) == f"{p}: api.token: environment variable SB_NOT_SET is not set"


def test_masked_hides_secrets(tmp_path):
    p = write(tmp_path, '[api]\ntoken = "hunter2"\n')
    doc = masked(load(p))
    assert "hunter2" not in json.dumps(doc)
    assert doc["api"]["token"] == "**********"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "solarbridge.cli.main", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO / "src")})


def test_check_config_cli_exit_codes(tmp_path):
    p = write(tmp_path, '[api]\ntoken = "hunter2"\n[[sources]]\ntype = "synthetic"\n')
    ok = run_cli("check-config", "-c", str(p))
    assert ok.returncode == 0, ok.stderr
    assert "hunter2" not in ok.stdout and json.loads(ok.stdout)["sources"][0]["type"] == "synthetic"
    p.chmod(0o644)
    bad = run_cli("check-config", "-c", str(p))
    assert bad.returncode == 2
    assert bad.stderr.strip() == (f"solarbridge: config error: {p}: holds secrets (api.token) but is readable"
                                  f" by group or others (mode 0644); fix with: chmod 600 {p}")
    assert "Traceback" not in bad.stderr
