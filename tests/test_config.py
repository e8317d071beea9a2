"""NodeConfig: validation on construction, TOML loading, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundation_p2p.addresses import format_address, parse_address
from foundation_p2p.config import NodeConfig
from foundation_p2p.errors import ConfigError


def test_defaults_are_valid_and_advertised_falls_back_to_bind() -> None:
    config = NodeConfig()
    assert config.advertised == config.bind
    assert NodeConfig(advertise=("10.1.2.3", 99)).advertised == ("10.1.2.3", 99)


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"max_packet_bytes": 10}, "max_packet_bytes"),
        ({"probe_interval_s": 0}, "probe_interval_s"),
        ({"probe_timeout_s": 5.0, "probe_interval_s": 1.0}, "probe_timeout_s"),
        ({"bind": ("127.0.0.1", 70000)}, "bind"),
        ({"join": [("a", 1)]}, "join"),
        ({"app": "nocolon"}, "app"),
        ({"log_level": "LOUD"}, "log_level"),
        ({"max_events": True}, "max_events"),
    ],
)
def test_invalid_values_name_the_field(changes: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        NodeConfig(**changes)  # type: ignore[arg-type]


def test_toml_loads_the_same_keys(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        'name = "alpha"\nbind = "127.0.0.1:7000"\njoin = ["127.0.0.1:7001", "[::1]:7002"]\n'
        'probe_interval_s = 2\n[membership]\nprofile = "wan"\n'
    )
    config = NodeConfig.from_toml(str(path))
    assert config.name == "alpha"
    assert config.bind == ("127.0.0.1", 7000)
    assert config.join == (("127.0.0.1", 7001), ("::1", 7002))
    assert config.probe_interval_s == 2.0
    assert config.extra["membership"] == {"profile": "wan"}
    again = NodeConfig.from_mapping(config.to_mapping())
    assert again == config


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("bogus = 1\n", "bogus: unknown key"),
        ('bind = "nowhere"\n', "bind"),
        ('probe_interval_s = "fast"\n', "probe_interval_s: must be a number"),
        ("max_packet_bytes = 5\n", "max_packet_bytes"),
        ("name = [\n", "not valid TOML"),
    ],
)
def test_toml_errors_name_file_key_and_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        NodeConfig.from_toml(str(path))
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        NodeConfig.from_toml(str(tmp_path / "absent.toml"))


def test_overrides_apply_on_top_and_are_validated() -> None:
    base = NodeConfig(name="x", probe_interval_s=1.0)
    changed = base.with_overrides({"probe_interval_s": 3, "raft": {"election_timeout_s": 1}})
    assert changed.probe_interval_s == 3.0 and changed.name == "x"
    assert changed.extra["raft"] == {"election_timeout_s": 1}
    with pytest.raises(ConfigError, match=r"scenario\.toml: max_events"):
        base.with_overrides({"max_events": -1}, source="scenario.toml")


@pytest.mark.parametrize(
    ("text", "addr"),
    [
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("[::1]:9", ("::1", 9)),
        ("host.example:1", ("host.example", 1)),
    ],
)
def test_address_round_trip(text: str, addr: tuple[str, int]) -> None:
    assert parse_address(text) == addr
    assert format_address(addr) == text


@pytest.mark.parametrize("text", ["nohost", ":80", "h:99999", "h:x", "::1:80", "[::1]80"])
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_address(text)
