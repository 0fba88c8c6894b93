"""``enphase-monitor``: a drop-in for NUT's enphase-monitor script (IQ Gateway -> dummy-ups port file).

The ``enphase`` source feeding a ``nut`` sink under the Supervisor, with the original's
config file, options, messages and exit codes. Kept light on imports: the engine (and
httpx) load only after the options are valid.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

USAGE = """\
Usage: enphase-monitor [-d] [-v] [-s] [-x] [-h] -c <config> | <ups>

Feeds a NUT dummy-ups port file from an Enphase IQ Gateway (grid on/off, battery).

  -c <config>  config file (KEY=value lines); default <confdir>/enphase-<ups>.conf. Without UPS=
               in it, the UPS is named after the file (enphase-<ups>.conf or <ups>.conf)
  <ups>        UPS name (reads <confdir>/enphase-<ups>.conf when -c is not given)
  -d           debug output to stderr (repeat for more; level 2+ shows secrets)
  -v           verbose: report state changes
  -s           single: one poll and port file update, then exit
  -x           nocomms: hide the port file (rename to <file>-nocomms), then exit
  -h           this help

Environment: CONFIG_FILE, UPS, NUT_SYSCONFIG (config dir, now {confdir}),
NUT_LOCALSTATE (default STATE_DIR, now {statedir}).

Config keys: USERNAME PASSWORD SERIAL PORT_FILE (required), ENVOY_HOST (envoy.local),
STATE_DIR, POLLFREQ (60, min 5), POLLFREQALERT (20, min 5), RELAYFREQ (2; 0 disables
the fast relay check), TOKEN_FILE (enphase-<ups>.token), LOADKWH (768, 0 disables
ups.load), LOGIN_TIMEOUT (10, min 5), API_TIMEOUT (10, min 2), DISABLE_METERS,
KEEP_USER_LINES (1; 0 drops user input*/output*/battery* lines like the original),
DEBUG, UPS, TEST and TEST_* (TEST mode, see the test.conf example shipped in
solarbridge/data/enphase: copy test-ref.dev to test.dev, then run
enphase-monitor -c test.conf).
"""


def usage(out: object = None) -> str:
    from solarbridge.sources.enphase.settings import default_confdir, default_statedir

    return USAGE.format(confdir=default_confdir(os.environ), statedir=default_statedir(os.environ))


def die(ups: str, msg: str) -> None:
    print(f"enphase-monitor{' ' + ups if ups else ''}: {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    config = ""
    debug = verbose = single = nocomms = 0
    ups = ""
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-h", "--help"):
            sys.stdout.write(usage())
            return 0
        if a == "-c":
            if i + 1 >= len(args) or not args[i + 1]:
                print("Option -c requires an argument", file=sys.stderr)
                sys.stderr.write(usage())
                return 2
            config = args[i + 1]
            i += 2
            continue
        if a == "-d":
            debug += 1
        elif a == "-v":
            verbose = 1
        elif a == "-s":
            single = 1
        elif a == "-x":
            nocomms = 1
        elif a == "--":
            ups = args[i + 1] if i + 1 < len(args) else ""
            break
        elif a.startswith("-") and a != "-":
            print(f"Unknown option: '{a}'", file=sys.stderr)
            sys.stderr.write(usage())
            return 2
        else:
            ups = a  # the first non-option word; the rest is ignored, like the original
            break
        i += 1
    env = os.environ
    config = config or env.get("CONFIG_FILE", "")
    ups = ups or env.get("UPS", "")
    if not config and not ups:
        sys.stderr.write(usage())
        return 2

    from solarbridge.sources.enphase.settings import Fatal, default_confdir, load

    if not config:
        config = str(Path(default_confdir(env)) / f"enphase-{ups}.conf")
    try:
        settings = load(Path(config), ups=ups, env=env, debug=debug)
    except Fatal as e:
        die(ups, str(e))
        if e.code == 2 and str(e).startswith("UPS must be set"):
            sys.stderr.write(usage())
        return e.code
    for key, hint in settings.unknown_keys:
        die(settings.ups, f"unknown config key {key} in {config} (ignored{'; did you mean ' + hint + '?' if hint else ''})")
    return run(settings, verbose=bool(verbose), single=bool(single), nocomms=bool(nocomms))


def run(settings: object, verbose: bool = False, single: bool = False, nocomms: bool = False) -> int:
    """The ``enphase`` source feeding a ``nut`` sink under the Supervisor, with the original's options."""
    from solarbridge.sources.enphase import monitor as m
    from solarbridge.sources.enphase.settings import Fatal, Settings

    assert isinstance(settings, Settings)
    s = settings
    rep = m.Reporter(s.ups, verbose=verbose, debug=s.debug)
    for k, v in s.redacted().items():
        rep.debug(f"{k}={v}")
    if s.debug >= 2:
        rep.debug(f"PASSWORD={s.password}", 2)
    rep.debug(f"token file: {s.token_file}")
    rep.debug(f"port file: {s.port_file}")
    try:
        return asyncio.run(_run(s, rep, single=single, nocomms=nocomms))
    except Fatal as e:
        die(s.ups, str(e))
        return e.code
    except KeyboardInterrupt:
        return 0


async def _run(s: Any, rep: Any, *, single: bool, nocomms: bool) -> int:
    from solarbridge.config import Config, DaemonConfig
    from solarbridge.plugin import Context
    from solarbridge.runtime import Supervisor
    from solarbridge.sinks.nut.portfile import DEFAULT_SETTINGS, PortFileError
    from solarbridge.sinks.nut.sink import NutSink, NutSinkConfig
    from solarbridge.sources.enphase import monitor as m
    from solarbridge.sources.enphase.settings import Fatal
    from solarbridge.sources.enphase.source import EnphaseSource, MonitorMode
    from solarbridge.util.signals import StopSignals

    gateway: m.Gateway
    cloud: m.Cloud
    if s.test is not None:
        backend = m.CannedBackend(s.test, s.ups, rep)
        gateway, cloud = backend, backend
    else:
        gateway = m.HttpGateway(s.envoy_host, s.api_timeout, rep)
        cloud = m.HttpCloud(s.login_url, s.tokens_url, s.login_timeout, s.cloud_verify, rep)

    sink_cfg = NutSinkConfig.model_construct(type="nut", name="nut", port_file=str(s.port_file), device_id=s.serial,
                                             loadkwh=s.loadkwh, stale_after=0, keep_user_lines=s.keep_user_lines)
    sink = NutSink(sink_cfg, Context.standalone("nut", "sink", "nut", s.state_dir))
    sink.notes = rep
    try:
        sink.load_initial()  # the port file (or its -nocomms twin) must exist before anything else
    except PortFileError as e:
        await gateway.aclose()
        raise Fatal(str(e)) from None
    rep.debug(f"initial port file status: '{sink.status}'")
    stop = asyncio.Event()
    errors: list[str] = []

    def port_error(msg: str) -> None:
        errors.append(msg)
        stop.set()

    sink.on_error = port_error
    sup = Supervisor(Config(daemon=DaemonConfig(state_dir=s.state_dir, history=False)))

    async def written() -> None:
        # one poll at a time, like the original: the port file is up to date before the next request
        while sup.queue_depth("nut") and sink.ctx.health.state != "failed" and not errors:
            await asyncio.sleep(0)
        if errors:
            raise Fatal(errors[0])
        if sink.ctx.health.state == "failed":
            raise Fatal(sink.ctx.health.last_error)

    def charge_low() -> str | None:
        return {**DEFAULT_SETTINGS, **sink.port.overrides()}.get("battery.charge.low")

    mode = MonitorMode(s, gateway, cloud, rep, single=single, nocomms=nocomms, after_emit=written,
                       charge_low=charge_low)
    src = EnphaseSource.monitor_mode(s, Context.standalone(s.ups or "enphase", "source", "enphase", s.state_dir),
                                     mode)
    sup.add_sink(sink)
    sup.add_source(src)
    with StopSignals(event=stop) as signals:
        await sup.start()
        finished = asyncio.create_task(sup.wait_sources())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({finished, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if signals.signum is not None:
            rep.info(f"Stopping on signal {signals.name}")
        await sup.stop()
        finished.cancel()
    if src.fatal is not None:
        raise src.fatal
    if errors:
        raise Fatal(errors[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
