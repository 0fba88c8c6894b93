"""docs/config-reference.md is generated from the plugins' config models and must be current."""


from solarbridge.configref import render
from support.paths import REPO

DOC = REPO / "docs" / "config-reference.md"


def test_config_reference_is_current():
    assert DOC.read_text() == render(), "regenerate: python -m solarbridge.configref > docs/config-reference.md"


def test_every_plugin_is_documented():
    from solarbridge import registry

    text = DOC.read_text()
    for name in [*registry.SOURCES, *registry.SINKS]:
        assert f'type = "{name}"' in text


def _documented_keys() -> dict[str, list[str]]:
    """Plugin type -> the keys its section of the generated reference lists."""
    keys: dict[str, list[str]] = {}
    current = None
    for line in DOC.read_text().splitlines():
        if line.startswith("## [[") and 'type = "' in line:
            current = line.split('type = "')[1].rstrip('"')
            keys[current] = []
        elif current and line.startswith("| `"):
            keys[current].append(line.split("`")[1])
    return keys


def test_every_documented_key_is_accepted_by_the_loader():
    """The names in the reference are the TOML keys (e.g. influx `schema`, not the Python attribute
    `schema_`): pydantic itself must not call any of them an unknown key."""
    from pydantic import ValidationError

    from solarbridge import registry

    documented = _documented_keys()
    assert "schema" in documented["influxdb2"] and "schema_" not in documented["influxdb2"]
    for name, keys in documented.items():
        table = registry.SOURCES if name in registry.SOURCES else registry.SINKS
        model = registry.load(table[name]).Config
        for key in keys:
            try:
                model.model_validate({"type": name, key: object()})
            except ValidationError as e:
                extra = [err for err in e.errors() if err["type"] == "extra_forbidden"]
                assert not extra, f"{name}: documented key {key!r} is refused as unknown"
