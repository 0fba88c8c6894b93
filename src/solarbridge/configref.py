"""Generate the config reference (docs/config-reference.md) from the plugins' own pydantic models,
so the documented keys, types and defaults are always the ones the loader accepts."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from . import registry
from .config import ApiConfig, DaemonConfig, InventoryConfig, default_state_dir
from .stages.counters import CounterOptions
from .stages.sites import BatteryRole, GridRole, LoadRole, PvRole, SiteConfig


def _type_name(ann: Any) -> str:
    """A short, readable name for a field's type (``secret``, ``int | None``, ``'a' | 'b'``)."""
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Annotated:
        return "secret" if args and args[0] is SecretStr else _type_name(args[0])
    if ann is SecretStr:
        return "secret"
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join(_type_name(a) for a in args if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]" if inner else origin.__name__
    if ann is type(None):
        return "None"
    return getattr(ann, "__name__", str(ann))


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is default_state_dir:
        return "`$XDG_STATE_HOME/solarbridge` if set, else `/var/lib/solarbridge` as root, else `~/.local/state/solarbridge`"
    elif field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return "(computed)"
    else:
        return "**required**"
    if isinstance(value, BaseModel):
        return "(table)"
    try:
        return "`" + json.dumps(value, default=str) + "`"
    except TypeError:
        return f"`{value}`"


def _constraints(field: Any) -> str:
    parts = []
    for m in field.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "min length"),
                          ("max_length", "max length")):
            v = getattr(m, attr, None)
            if v is not None:
                parts.append(f"{sym} {v}")
    return ", ".join(parts)


def model_table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    lines = ["| key | type | default | allowed / notes |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        note = "; ".join(x for x in (_constraints(field), field.description or "") if x)
        ann = _type_name(field.annotation).replace(" | ", " \\| ")
        key = field.alias or name  # the TOML key (e.g. influx `schema`, held as `schema_` in Python)
        lines.append(f"| `{key}` | {ann} | {_default(field)} | {note} |")
    return lines


def render() -> str:
    out = ["# Config reference", "",
           "Generated from the code by `python -m solarbridge.configref` (a test checks it is current).",
           "Every `[[sources]]` and `[[sinks]]` table takes `type` and an optional unique `name`; unknown keys",
           "are an error. Secrets (type `secret`) may be a literal, `{ env = \"NAME\" }` or `{ file = \"/path\" }`.",
           "", "## [daemon]", "", *model_table(DaemonConfig), "", "## [api]", "", *model_table(ApiConfig), "",
           "## [inventory]", "", "A CSV or TOML file of device rows expanded into sources ([docs/fleet.md](fleet.md)).",
           "", *model_table(InventoryConfig), "",
           "## [counters]", "",
           "Counter hygiene (docs/sites-energy.md). Any `[[sources]]` table may take `counters = false` or",
           "`counters = { ... }` with these keys to override them for that source.", "",
           *model_table(CounterOptions), "",
           "## [[sites]]", "",
           "Role entries (`grid`, `pv`, `battery`, `load`) are a device id, a table, or a list of either.", "",
           *model_table(SiteConfig), "",
           "### site roles", "",
           "`grid`:", "", *model_table(GridRole), "", "`pv`:", "", *model_table(PvRole), "",
           "`battery`:", "", *model_table(BatteryRole), "", "`load`:", "", *model_table(LoadRole), ""]
    for kind, table in (("sources", registry.SOURCES), ("sinks", registry.SINKS)):
        for name in sorted(table):
            cls = registry.load(table[name])
            out += [f"## [[{kind}]] type = \"{name}\"", ""]
            first = (cls.__doc__ or "").strip().split("\n\n")[0]
            doc = " ".join(line.strip() for line in first.splitlines())
            if doc:
                out += [doc, ""]
            out += model_table(cls.Config, skip=("type",)) + [""]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
