"""Each plug-in folder carries a short README and a sample config, and the sample is a valid config."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from solarbridge import registry
from solarbridge.config import build
from support.paths import SRC

PLUGINS = [("sources", name, path) for name, path in registry.SOURCES.items()] + \
          [("sinks", name, path) for name, path in registry.SINKS.items()]


def _folder(import_path: str) -> Path:
    module = import_path.partition(":")[0]
    return (SRC / Path(*module.split("."))).parent


def _env_names(node: object) -> set[str]:
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {str(node["env"])}
        return {n for v in node.values() for n in _env_names(v)}
    if isinstance(node, list):
        return {n for v in node for n in _env_names(v)}
    return set()


@pytest.mark.parametrize(("kind", "name", "path"), PLUGINS, ids=[f"{k}:{n}" for k, n, _ in PLUGINS])
def test_plugin_folder_has_readme_and_a_valid_sample(kind: str, name: str, path: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _folder(path)
    readme = folder / "README.md"
    assert readme.is_file() and readme.read_text().startswith("# "), f"{folder} needs a README.md"
    sample = folder / "sample.toml"
    raw = tomllib.loads(sample.read_text())
    assert any(t.get("type") == name for t in raw.get(kind, [])), f"{sample} has no {kind} of type {name!r}"
    for env in _env_names(raw):
        monkeypatch.setenv(env, "example-secret")
    raw.setdefault("daemon", {})["state_dir"] = str(tmp_path)
    if kind == "sinks" and not raw.get("sources"):
        raw["sources"] = [{"type": "synthetic"}]
    cfg = build(raw)
    assert [c.type for c in getattr(cfg, kind)].count(name) >= 1
