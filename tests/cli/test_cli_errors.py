"""Issue 17 item 5: every one of these is one line on stderr and an exit code, never a Python traceback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}
SB = [sys.executable, "-m", "solarbridge.cli.main"]


def sb(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SB, *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def assert_one_line(err: str, *, contains: str = "") -> None:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert contains in lines[0], err


def test_history_db_that_is_not_a_database():
    out = sb("history", "--db", str(REPO / "README.md"))
    assert out.returncode == 1
    assert_one_line(out.stderr, contains="README.md: not a solarbridge history database")


def test_history_db_that_is_sqlite_but_not_ours(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "other.sqlite")
    db.execute("CREATE TABLE t (x)")
    db.close()
    out = sb("history", "--db", str(tmp_path / "other.sqlite"))
    assert out.returncode == 1
    assert_one_line(out.stderr, contains="not a solarbridge history database")


@pytest.mark.parametrize("command", ["run", "check-config", "history"])
def test_config_that_is_a_directory(tmp_path, command):
    out = sb(command, "-c", str(tmp_path))
    assert out.returncode == 2
    assert_one_line(out.stderr, contains=f"{tmp_path}: is a directory")


def test_history_db_that_is_a_directory(tmp_path):
    out = sb("history", "--db", str(tmp_path))
    assert out.returncode == 1
    assert_one_line(out.stderr, contains="is a directory")


# ----------------------------------------------------------------------------- | head


def piped_into_head(argv: list[str]) -> tuple[int, str, str]:
    """Run ``argv | head -n 2`` in a real shell; the command's own exit code, head's output, stderr."""
    cmd = " ".join(subprocess.list2cmdline([a]) for a in argv)
    script = f'{cmd} 2>"$ERR" | head -n 2; exit "${{PIPESTATUS[0]}}"'
    errfile = Path(os.environ.get("TMPDIR", "/tmp")) / f"sb-head-{os.getpid()}-{threading.get_ident()}.err"
    try:
        res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                             env={**ENV, "ERR": str(errfile)})
        return res.returncode, res.stdout, errfile.read_text()
    finally:
        errfile.unlink(missing_ok=True)


def big_history(tmp_path: Path) -> Path:
    """A history database with far more rows than a pipe buffer holds."""
    from solarbridge.model import Reading
    from solarbridge.sinks.history.sink import HistoryStore

    path = tmp_path / "history.sqlite"
    store = HistoryStore(path)
    t0 = datetime.now(UTC) - timedelta(hours=5)
    readings = [Reading("inv1", "inverter", t0 + timedelta(seconds=i), {f"m{i % 400}_w": float(i)}, source="x")
                for i in range(16000)]
    store.insert(readings)
    store.close()
    return path


def test_history_into_head(tmp_path):
    db = big_history(tmp_path)
    for args in (["history", "--db", str(db)],
                 ["history", "--db", str(db), "--device", "inv1", "--metric", "m7_w", "--since", "1d"],
                 ["history", "--db", str(db), "--device", "inv1", "--metric", "m7_w", "--since", "1d",
                  "--format", "json"]):
        rc, out, err = piped_into_head([*SB, *args])
        assert len(out.splitlines()) == 2
        assert rc == 0 and err == "", err


def test_check_config_into_head(tmp_path):
    cfg = tmp_path / "big.toml"
    cfg.write_text(f'[daemon]\nstate_dir = "{tmp_path}"\n[[sources]]\ntype = "synthetic"\n'
                   + "".join(f'[[sinks]]\ntype = "jsonl"\npath = "r{i}.jsonl"\n' for i in range(1500)))
    for fmt in ("json", "toml"):
        rc, out, err = piped_into_head([*SB, "check-config", "-c", str(cfg), "--format", fmt])
        assert len(out.splitlines()) == 2
        assert rc == 0 and err == "", err


def test_se2graphite_dry_run_into_head(tmp_path):
    src = (REPO / "tests" / "data" / "converters" / "recorded.json").read_text()
    big = tmp_path / "big.json"
    big.write_text(src * 40)
    rc, out, err = piped_into_head([sys.executable, "-m", "solarbridge.cli.se2graphite", "--dry-run",
                                    "--no-progress", str(big)])
    assert len(out.splitlines()) == 2
    assert rc == 0 and err == "", err  # not "Broken pipe; 0 point(s) not confirmed"


# ----------------------------------------------------------------------------- state_dir


def config_with_state_dir(tmp_path: Path, state_dir: str) -> Path:
    cfg = tmp_path / "sb.toml"
    cfg.write_text(f'[daemon]\nstate_dir = "{state_dir}"\n[[sources]]\ntype = "synthetic"\n')
    return cfg


@pytest.mark.parametrize("where", ["under-a-file", "in-proc"])
def test_state_dir_that_cannot_be_created(tmp_path, where):
    if where == "under-a-file":
        (tmp_path / "plain").write_text("x")
        state = tmp_path / "plain" / "state"
    else:
        state = Path("/proc/self/solarbridge-state")
    out = sb("run", "-c", str(config_with_state_dir(tmp_path, str(state))))
    assert out.returncode == 2
    assert_one_line(out.stderr, contains=f"daemon.state_dir: cannot create {state}")


def test_state_dir_with_a_read_only_parent(tmp_path):
    """A read-only file system mounted in a private mount namespace (root ignores mode bits)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare not installed")
    ro = tmp_path / "ro"
    ro.mkdir()
    cfg = config_with_state_dir(tmp_path, str(ro / "state"))
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot create a mount namespace here")
    script = (f"mount -t tmpfs -o ro,size=1m tmpfs {ro} && exec "
              + subprocess.list2cmdline([*SB, "run", "-c", str(cfg)]))
    out = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=ENV,
                         timeout=60)
    assert out.returncode == 2
    assert_one_line(out.stderr, contains="Read-only file system")


def test_existing_state_dir_that_is_not_writable(tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        pytest.skip("cannot create a mount namespace here")
    ro = tmp_path / "ro"
    ro.mkdir()
    cfg = config_with_state_dir(tmp_path, str(ro))
    script = (f"mount -t tmpfs -o ro,size=1m tmpfs {ro} && exec "
              + subprocess.list2cmdline([*SB, "run", "-c", str(cfg)]))
    out = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=ENV,
                         timeout=60)
    assert out.returncode == 2
    assert_one_line(out.stderr, contains=f"daemon.state_dir: {ro} is not writable")


# ----------------------------------------------------------------------------- demo + browser + Ctrl-C


def test_demo_ctrl_c_with_event_streams_open(tmp_path):
    """`make demo`, a browser tab open on the dashboard (live event streams and page requests), Ctrl-C:
    the demo stops with exit 0 and nothing on stderr (no "_GatheringFuture exception was never retrieved",
    no CancelledError trace from uvicorn). The trace came in 2 of 3 stops: three fresh runs, each stopped
    once, share one demo dir (the later runs resume its state, so they start quicker)."""
    for run in range(3):
        took = _demo_ctrl_c_once(tmp_path / "demo", run)
        print(f"run {run + 1}: demo stopped {took:.2f} s after SIGINT with 3 event streams open")


def _demo_ctrl_c_once(demo_dir, run: int) -> float:
    from servers import free_port, wait_for

    port = free_port()
    proc = subprocess.Popen([*SB, "demo", "--dir", str(demo_dir), "--listen", f"127.0.0.1:{port}"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = ""
        for line in proc.stdout:
            banner += line
            if "Press Ctrl-C" in line:
                break
        assert f"Dashboard: http://127.0.0.1:{port}/" in banner, banner
        base = f"http://127.0.0.1:{port}"
        # the dashboard is listening when its URL is printed
        assert httpx.get(base + "/api/health", timeout=30).status_code == 200  # a loaded machine is slow
        events: list[str] = []

        def stream() -> None:
            try:
                with httpx.stream("GET", base + "/api/events", timeout=30) as r:
                    for ln in r.iter_lines():
                        events.append(ln)
            except httpx.HTTPError:
                pass

        clients = [threading.Thread(target=stream, daemon=True) for _ in range(3)]
        for c in clients:
            c.start()
        wait_for(lambda: sum(1 for e in events if e.startswith("event: ")) >= 3, 20, "3 events on the streams")
        with httpx.Client(base_url=base, timeout=30) as c:  # keep-alive page requests, as a browser makes
            for path in ("/", "/api/devices", "/api/health"):
                assert c.get(path).status_code == 200
            proc.send_signal(signal.SIGINT)
            t0 = time.monotonic()
            out, err = proc.communicate(timeout=40)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for c in clients:
        c.join(10)
        assert not c.is_alive(), f"run {run + 1}: an event stream stayed open after the demo stopped"
    assert proc.returncode == 0, f"run {run + 1}: {err}"
    for bad in ("Traceback", "never retrieved", "CancelledError", "Task was destroyed", "Exception ignored"):
        assert bad not in err, f"run {run + 1}: {err}"
    assert out.rstrip().endswith("demo stopped cleanly."), f"run {run + 1}: {out}"
    return took
