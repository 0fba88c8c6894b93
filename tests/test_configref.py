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
