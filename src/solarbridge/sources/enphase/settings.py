"""enphase-monitor settings: the original's config keys, defaults, clamps and permission checks."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import conffile

LOGIN_URL = "https://enlighten.enphaseenergy.com/login/login.json?"
TOKENS_URL = "https://entrez.enphaseenergy.com/tokens"
#: hidden, for tests and the simulator: where the cloud login/token service lives and which CA to trust
ENV_LOGIN_URL = "SOLARBRIDGE_ENPHASE_LOGIN_URL"
ENV_TOKENS_URL = "SOLARBRIDGE_ENPHASE_TOKENS_URL"
ENV_CLOUD_CA = "SOLARBRIDGE_ENPHASE_CLOUD_CA"

TEST_KEYS = ("TEST_SESS", "TEST_TOKEN", "TEST_RELAY", "TEST_LIVE", "TEST_REPORTS", "TEST_SECCTRL", "TEST_INFO")
#: integer keys: (default, minimum); values below the minimum are raised to it, like the original
INT_KEYS: dict[str, tuple[int, int]] = {
    "POLLFREQ": (60, 5),
    "POLLFREQALERT": (20, 5),
    "RELAYFREQ": (2, 0),
    "LOADKWH": (768, 0),
    "LOGIN_TIMEOUT": (10, 5),
    "API_TIMEOUT": (10, 2),
    "OUTAGE_GRACE": (0, 0),  # solarbridge: seconds of gateway errors ridden through (0 = the original's rule)
}
REQUIRED = ("USERNAME", "PASSWORD", "SERIAL", "ENVOY_HOST", "STATE_DIR", "PORT_FILE")
#: every key the monitor reads; others are reported (a misspelt POLFREQ would silently do nothing)
KNOWN_KEYS = frozenset({*REQUIRED, *INT_KEYS, *TEST_KEYS, "TOKEN_FILE", "DISABLE_METERS", "KEEP_USER_LINES",
                        "DEBUG", "UPS", "TEST", "NUT_SYSCONFIG", "NUT_CONFPATH", "NUT_LOCALSTATE",
                        "NUT_STATEPATH", "CONFIG_FILE"})


def unknown_keys(raw: Mapping[str, str]) -> list[tuple[str, str]]:
    """(key, closest known key or "") for every key the monitor does not read."""
    import difflib

    out = []
    for key in raw:
        if key not in KNOWN_KEYS:
            close = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1, cutoff=0.75)
            out.append((key, close[0] if close else ""))
    return out


class Fatal(Exception):
    """Exit with the original's message; code 1 (fatal) or 2 (usage/invalid value)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def default_confdir(env: Mapping[str, str]) -> str:
    for key in ("NUT_SYSCONFIG", "NUT_CONFPATH"):
        if env.get(key):
            return env[key]
    return "/etc/nut" if Path("/etc/nut").is_dir() or not Path("/etc/ups").is_dir() else "/etc/ups"


def default_statedir(env: Mapping[str, str]) -> str:
    for key in ("NUT_LOCALSTATE", "NUT_STATEPATH"):
        if env.get(key):
            return env[key]
    for d in ("/var/lib/nut", "/var/state/ups"):
        if Path(d).is_dir():
            return d
    return "/var/lib/nut"


@dataclass
class Settings:
    ups: str
    username: str
    password: str
    serial: str
    port_file: Path | None  # None: no port file (the daemon source)
    token_file: Path
    state_dir: Path
    envoy_host: str = "envoy.local"
    pollfreq: int = 60
    pollfreqalert: int = 20
    relayfreq: int = 2
    loadkwh: int = 768
    login_timeout: int = 10
    api_timeout: int = 10
    outage_grace: int = 0
    disable_meters: bool = False
    keep_user_lines: bool = True
    debug: int = 0
    test: dict[str, str] | None = None
    login_url: str = LOGIN_URL
    tokens_url: str = TOKENS_URL
    cloud_verify: str | bool = True
    config_path: Path | None = None
    raw: dict[str, str] = field(default_factory=dict)
    #: keys of the config file the monitor does not read: (key, closest known key or "")
    unknown_keys: list[tuple[str, str]] = field(default_factory=list)

    def redacted(self) -> dict[str, str]:
        out = {k: v for k, v in self.raw.items() if not k.startswith("TEST_")}
        if "PASSWORD" in out:
            out["PASSWORD"] = "<hidden>"
        return out


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def check_config_perms(path: Path) -> None:
    if not os.access(path, os.R_OK) or not path.is_file():
        raise Fatal(f"Unable to read config '{path}'")
    if _mode(path) & 0o004:
        raise Fatal(f"World read permissions exist on config {path}")
    parent = path.resolve().parent
    if _mode(parent) & 0o002:
        raise Fatal(f"World write permissions on config directory {parent}")


def load(path: Path, ups: str = "", env: Mapping[str, str] | None = None, debug: int = 0,
         check_perms: bool = True) -> Settings:
    """Read, check and validate a config file; raises :class:`Fatal`."""
    env = os.environ if env is None else env
    if check_perms:
        check_config_perms(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        raise Fatal(f"Unable to read config '{path}'") from None
    try:
        raw = conffile.parse(text, env)
    except conffile.ConfSyntaxError as e:
        raise Fatal(f"Config {path} cannot be parsed ({e})") from None
    return from_values(raw, path, ups=ups, env=env, debug=debug)


def from_values(raw: dict[str, str], path: Path | None, ups: str = "", env: Mapping[str, str] | None = None,
                debug: int = 0) -> Settings:
    env = os.environ if env is None else env
    where = str(path) if path else "<config>"
    vals = dict(raw)
    ups = vals.get("UPS") or ups
    if not ups and path is not None:
        # -c <config> | <ups>: the config alone is enough; the UPS is named after the file
        # (enphase-<ups>.conf, like the path the <ups> form reads, or <name>.conf)
        stem = path.name.removesuffix(".conf")
        ups = stem.removeprefix("enphase-") or stem
    if not ups:
        raise Fatal(f"UPS must be set (env, {where} or as argument)", 2)
    vals.setdefault("ENVOY_HOST", "envoy.local")
    vals.setdefault("STATE_DIR", default_statedir(env))
    ints: dict[str, int] = {}
    for key, (default, minimum) in INT_KEYS.items():
        text = vals.get(key, "").strip()
        if not text:
            if key in vals and key not in ("LOADKWH", "OUTAGE_GRACE"):
                continue  # explicitly empty: reported by the required-values check
            ints[key] = default
            continue
        try:
            n = int(text, 10)
        except ValueError:
            raise Fatal(f"Config {where}: {key} must be a whole number >= {minimum} (got {text!r})", 2) from None
        ints[key] = max(n, minimum)
    missing = [k for k in REQUIRED if not vals.get(k)]
    missing += [k for k in ("POLLFREQ", "POLLFREQALERT", "LOGIN_TIMEOUT", "API_TIMEOUT") if k not in ints]
    if missing:
        raise Fatal(f"Config {where} requires values for {' '.join(missing)}")
    state_dir = Path(vals["STATE_DIR"])
    if not state_dir.is_dir() or not os.access(state_dir, os.W_OK):
        raise Fatal(f"STATE_DIR '{state_dir}' not writable!")
    if _mode(state_dir) & 0o002:
        raise Fatal(f"World write permissions on STATE_DIR {state_dir}")
    port = Path(vals["PORT_FILE"])
    if not port.is_absolute():
        port = state_dir / port
    if not port.parent.is_dir() or not os.access(port.parent, os.W_OK):
        raise Fatal(f"Port file directory '{port.parent}' not writable!")
    token = Path(vals.get("TOKEN_FILE") or f"enphase-{ups}.token")
    if not token.is_absolute():
        token = state_dir / token
    dbg = debug
    if vals.get("DEBUG", "").strip():
        try:
            dbg = int(vals["DEBUG"])
        except ValueError:
            dbg = 1
    test = {k: vals.get(k, "") for k in TEST_KEYS} if vals.get("TEST") else None
    ca = env.get(ENV_CLOUD_CA, "")
    return Settings(
        ups=ups, username=vals["USERNAME"], password=vals["PASSWORD"], serial=vals["SERIAL"],
        port_file=port, token_file=token, state_dir=state_dir, envoy_host=vals["ENVOY_HOST"],
        pollfreq=ints["POLLFREQ"], pollfreqalert=ints["POLLFREQALERT"], relayfreq=ints["RELAYFREQ"],
        loadkwh=ints["LOADKWH"], outage_grace=ints["OUTAGE_GRACE"], login_timeout=ints["LOGIN_TIMEOUT"], api_timeout=ints["API_TIMEOUT"],
        disable_meters=bool(vals.get("DISABLE_METERS")),
        keep_user_lines=vals.get("KEEP_USER_LINES", "1").strip() not in ("0", "no", "false"),
        debug=dbg, test=test,
        login_url=env.get(ENV_LOGIN_URL) or LOGIN_URL, tokens_url=env.get(ENV_TOKENS_URL) or TOKENS_URL,
        cloud_verify=ca or True, config_path=path, raw=vals, unknown_keys=unknown_keys(raw),
    )
