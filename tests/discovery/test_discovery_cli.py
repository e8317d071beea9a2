"""``discover`` (discover_main) and the ``discovery`` key of the node TOML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from discovery_helpers import Dnsmasq

from foundation_p2p.config import NodeConfig
from foundation_p2p.discovery.cli import discover_main
from foundation_p2p.errors import ConfigError


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = discover_main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_explain_json_under_kubernetes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("POD_NAMESPACE", "shop")
    rc, out, _ = run(capsys, "--explain", "--json", "--listen", "0", "--service", "kv")
    assert rc == 0
    explained = json.loads(out)["explain"]
    assert explained["mode"] == "mortal"
    assert explained["strategies"][0]["name"] == "_gossip._udp.kv.shop.svc.cluster.local"


def test_discover_prints_the_peers_a_dns_server_names(
    capsys: pytest.CaptureFixture[str], dnsmasq: Dnsmasq
) -> None:
    dnsmasq.serve(
        {"a.kv.test": "127.0.0.1", "b.kv.test": "127.0.0.2"},
        [("_gossip._udp.kv.test", "a.kv.test", 7001), ("_gossip._udp.kv.test", "b.kv.test", 7002)],
    )
    rc, out, _ = run(
        capsys,
        "--discovery", "dns",
        "--dns-name", "_gossip._udp.kv.test",
        "--dns-resolver", f"127.0.0.1:{dnsmasq.port}",
        "--listen", "0.5",
        "--explain",
    )  # fmt: skip
    assert rc == 0, out
    assert "discovery: dns (apprentice mode)" in out
    assert "  dns 127.0.0.1:7001\n  dns 127.0.0.2:7002\n" in out


def test_discover_reports_nxdomain_and_exits_1(
    capsys: pytest.CaptureFixture[str], dnsmasq: Dnsmasq
) -> None:
    dnsmasq.serve({"a.kv.test": "127.0.0.1"}, [])
    rc, out, _ = run(
        capsys,
        "--discovery", "dns",
        "--dns-name", "_gossip._udp.kv.test",
        "--dns-resolver", f"127.0.0.1:{dnsmasq.port}",
        "--listen", "0.5",
        "--json",
    )  # fmt: skip
    assert rc == 1
    result = json.loads(out)
    assert result["peers"] == {}
    assert "NXDOMAIN" in result["errors"]["dns"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--discovery", "gossip"], "unknown strategy 'gossip'"),
        (["--discovery", "multicast", "--dns-name", "x"], "--dns-name: applies to dns"),
        (["--discovery", "dns"], "option 'name' is required for dns"),
        (["--discovery", "multicast", "--listen", "1"], "--cluster-key-file"),
    ],
)
def test_bad_choices_exit_2_naming_the_problem(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert message in err


def test_toml_discovery_key_name_or_table(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('discovery = "mdns"\n')
    assert NodeConfig.from_toml(str(path)).extra["discovery"] == {"use": "mdns"}
    path.write_text('[discovery]\nuse = "dns"\nname = "peers.test"\nport = 7946\n')
    config = NodeConfig.from_toml(str(path))
    assert config.extra["discovery"] == {"use": "dns", "name": "peers.test", "port": 7946}
    assert NodeConfig.from_mapping(config.to_mapping()) == config
    path.write_text('discovery = "dsn"\n')
    with pytest.raises(ConfigError, match=r"node\.toml: discovery: .*unknown strategy 'dsn'"):
        NodeConfig.from_toml(str(path))
    path.write_text('[discovery]\nname = "x"\n')
    with pytest.raises(ConfigError, match="a table needs use"):
        NodeConfig.from_toml(str(path))


def test_discover_reads_the_toml_and_flags_add_options(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[discovery]\nuse = "dns"\nname = "peers.test"\nport = 7946\n')
    rc, out, _ = run(
        capsys, "--config", str(path), "--interval", "30", "--explain", "--json", "--listen", "0"
    )
    assert rc == 0
    (dns,) = json.loads(out)["explain"]["strategies"]
    assert (dns["name"], dns["record"], dns["port"], dns["interval_s"]) == (
        "peers.test",
        "A",
        7946,
        30.0,
    )


def test_the_node_run_and_discover_commands_take_the_discovery_options() -> None:
    # wired into foundation-p2p: `discover` exists, `node run` takes --discovery, and the
    # static strategy's peers are --join (never --seed, which names a random seed)
    from foundation_p2p.cli import build_config, build_parser

    parser = build_parser()
    args = parser.parse_args(
        ["node", "run", "--bind", "127.0.0.1:0", "--join", "127.0.0.1:7001",
         "--cluster-key-file", "unused.keyring", "--discovery", "static"]
    )
    config = build_config(args)
    assert config.extra["discovery"]["use"] == "static"
    assert list(config.extra["discovery"]["seeds"]) == ["127.0.0.1:7001"]
    args = parser.parse_args(["discover", "--discovery", "static", "--join", "127.0.0.1:9"])
    assert args.join == ["127.0.0.1:9"]
    with pytest.raises(SystemExit):
        parser.parse_args(["discover", "--seed", "127.0.0.1:9"])
