"""util.ports.tcp_port: the one port check every command line, config and inventory uses."""

from __future__ import annotations

import pytest

from solarbridge.util.ports import tcp_port


@pytest.mark.parametrize(("value", "port"), [(1, 1), ("8899", 8899), (" 65535 ", 65535), (65535, 65535)])
def test_good_ports(value: object, port: int) -> None:
    assert tcp_port(value) == port


@pytest.mark.parametrize("value", [0, "0", -1, "-1", 65536, "99999", "http", "", "1.5", 1.0, True, None, "٣"])
def test_bad_ports_say_the_range_and_the_value_once(value: object) -> None:
    with pytest.raises(ValueError) as e:
        tcp_port(value)
    assert str(e.value) == f"must be a TCP port 1..65535 (got {value!r})"


def test_zero_means_any_free_port_where_allowed() -> None:
    assert tcp_port("0", allow_zero=True) == 0
    with pytest.raises(ValueError, match=r"must be a TCP port 0\.\.65535 \(got 65536\)"):
        tcp_port(65536, allow_zero=True)
