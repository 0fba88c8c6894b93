"""docs/config-reference.md is generated from the plugins' config models and must be current."""

from pathlib import Path

from solarbridge.configref import render

DOC = Path(__file__).parents[2] / "docs" / "config-reference.md"


def test_config_reference_is_current():
    assert DOC.read_text() == render(), "regenerate: python -m solarbridge.configref > docs/config-reference.md"


def test_every_plugin_is_documented():
    from solarbridge import registry

    text = DOC.read_text()
    for name in [*registry.SOURCES, *registry.SINKS]:
        assert f'type = "{name}"' in text
