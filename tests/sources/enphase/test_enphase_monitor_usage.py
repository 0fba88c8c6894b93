"""enphase-monitor as a new user meets it (issue 17 items 8 and 10): the simulator's hint, -c without UPS=,
one-line messages without a stray space, and a warning for a misspelt config key."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from servers import wait_for
from solarbridge.cli.enphase_monitor import main

REPO = Path(__file__).resolve().parents[3]


def _start_simulator(*extra: str) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen([sys.executable, "-m", "solarbridge.cli.main", "simulate", "enphase", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    last = [""]

    def hint() -> str | None:  # blocks for one line of its output
        last[0] = line = p.stdout.readline()
        return line[len("try: "):].strip() if line.startswith("try: ") else None

    try:
        url = wait_for(hint, 20, "the simulator's 'try:' hint", interval=0,
                       stop_if=lambda: not last[0] and p.poll() is not None
                       and f"it exited {p.returncode}: {p.stderr.read() if p.stderr else ''}")
    except BaseException:
        p.kill()
        raise
    return p, str(url)


def _stop(p: subprocess.Popen[str]) -> None:
    p.terminate()
    try:
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()


@pytest.mark.parametrize("extra", [(), ("--fixture", str(REPO / "tests/data/enphase/7.6.175_with_cts_3phase"))])
def test_simulator_hint_works_as_printed(extra: tuple[str, ...]) -> None:
    p, hint = _start_simulator(*extra)
    try:
        # run exactly what was printed, through a shell, with a clean environment (no UPS, no CONFIG_FILE)
        env = {k: v for k, v in os.environ.items() if k not in ("UPS", "CONFIG_FILE")}
        r = subprocess.run(hint, shell=True, capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, (hint, r.stdout, r.stderr)
        assert "ups.status now OL" in r.stdout
        conf = Path(shlex.split(hint)[-1])
        text = (conf.parent / "ups.dev").read_text()
        # a site without a battery: livedata's soc is 0, so the original's rule says OL LB
        assert ("ups.status: OL\n" if not extra else "ups.status: OL LB\n") in text
    finally:
        _stop(p)


@pytest.fixture(autouse=True)
def _loopback_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never the real Enlighten: the cloud URLs point at a closed loopback port."""
    monkeypatch.setenv("SOLARBRIDGE_ENPHASE_LOGIN_URL", "https://127.0.0.1:1/login/login.json?")
    monkeypatch.setenv("SOLARBRIDGE_ENPHASE_TOKENS_URL", "https://127.0.0.1:1/tokens")


def _conf(d: Path, name: str, host: str = "127.0.0.1:1", **extra: str) -> Path:
    d.chmod(0o755)
    keys = {"USERNAME": "u@example.com", "PASSWORD": "p", "SERIAL": "1", "PORT_FILE": "ups.dev",
            "STATE_DIR": str(d), "ENVOY_HOST": host, **extra}
    conf = d / name
    conf.write_text("".join(f"{k}={v}\n" for k, v in keys.items()))
    conf.chmod(0o600)
    (d / "ups.dev").write_text("")
    return conf


def test_config_without_ups_names_the_ups_after_the_file(tmp_path: Path, capsys, monkeypatch) -> None:
    from solarbridge.sources.enphase.settings import load

    monkeypatch.delenv("UPS", raising=False)
    s = load(_conf(tmp_path, "enphase-garage.conf"), env={})
    assert s.ups == "garage" and s.token_file == tmp_path / "enphase-garage.token"
    assert load(_conf(tmp_path, "shed.conf"), env={}).ups == "shed"
    assert load(_conf(tmp_path, "x.conf", UPS="named"), env={}).ups == "named"  # UPS= still wins
    rc = main(["-x", "-c", str(tmp_path / "enphase-garage.conf")])  # -x: no gateway, but the cloud is needed
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("enphase-monitor garage: Enphase login failed")  # got past "UPS must be set"


def test_unknown_config_keys_are_warned_about(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("UPS", raising=False)
    conf = _conf(tmp_path, "enphase-garage.conf", POLFREQ="30", MY_HELPER="x")
    main(["-x", "-c", str(conf)])
    err = capsys.readouterr().err.splitlines()
    assert f"enphase-monitor garage: unknown config key POLFREQ in {conf} (ignored; did you mean POLLFREQ?)" in err
    assert f"enphase-monitor garage: unknown config key MY_HELPER in {conf} (ignored)" in err
    # the documented keys are not reported
    conf = _conf(tmp_path, "enphase-garage.conf", POLLFREQ="30", RELAYFREQ="0", DEBUG="", KEEP_USER_LINES="1",
                 OUTAGE_GRACE="60")
    main(["-x", "-c", str(conf)])
    assert "unknown config key" not in capsys.readouterr().err


def test_no_stray_space_without_a_ups(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("UPS", raising=False)
    monkeypatch.delenv("CONFIG_FILE", raising=False)
    rc = main(["-c", str(tmp_path / "missing.conf")])
    err = capsys.readouterr().err
    assert rc == 1 and err == f"enphase-monitor: Unable to read config '{tmp_path / 'missing.conf'}'\n"
