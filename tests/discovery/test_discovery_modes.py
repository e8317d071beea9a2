"""The discovery configuration: the three modes, ``explain()``, and refusals of bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from foundation_p2p.discovery.config import (
    DEFAULT_MULTICAST_GROUP,
    DEFAULT_MULTICAST_PORT,
    MDNS_SERVICE,
    DiscoveryConfig,
    DnsConfig,
    HostFacts,
    MdnsConfig,
    MulticastConfig,
    StaticConfig,
    resolve_discovery,
)
from foundation_p2p.errors import ConfigError

# -- mortal: discovery = "auto" ------------------------------------------------------------


def test_auto_under_kubernetes_polls_the_headless_service_srv_records() -> None:
    facts = HostFacts({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "POD_NAMESPACE": "shop"})
    explained = resolve_discovery("auto", facts=facts)
    assert explained.mode == "mortal"
    assert explained.config == DiscoveryConfig(
        (DnsConfig(name="_gossip._udp.foundation-p2p.shop.svc.cluster.local", record="SRV"),)
    )
    text = explained.text()
    assert "KUBERNETES_SERVICE_HOST is set (10.96.0.1)" in text
    assert "namespace from POD_NAMESPACE" in text
    assert "name = '_gossip._udp.foundation-p2p.shop.svc.cluster.local'" in text
    assert "(mortal mode)" in text


def test_auto_under_kubernetes_without_namespace_uses_default_and_says_so() -> None:
    explained = resolve_discovery(
        "auto", {"service": "kv"}, HostFacts({"KUBERNETES_SERVICE_HOST": "10.96.0.1"})
    )
    (dns,) = explained.config.strategies
    assert isinstance(dns, DnsConfig)
    assert dns.name == "_gossip._udp.kv.default.svc.cluster.local"
    assert any("namespace 'default'" in r for r in explained.reasons)


def test_auto_with_consul_asks_the_agent_dns_interface() -> None:
    explained = resolve_discovery("auto", facts=HostFacts({"CONSUL_HTTP_ADDR": "10.0.0.5:8500"}))
    assert explained.config == DiscoveryConfig(
        (
            DnsConfig(
                name="foundation-p2p.service.consul", record="SRV", resolver=("10.0.0.5", 8600)
            ),
        )
    )
    assert "CONSUL_HTTP_ADDR is set (10.0.0.5:8500)" in explained.reasons[0]
    assert "10.0.0.5:8600" in explained.text()


@pytest.mark.parametrize(
    ("addr", "host"),
    [
        ("http://127.0.0.1:8500", "127.0.0.1"),
        ("localhost:8500", "127.0.0.1"),
        ("[::1]:8500", "::1"),
    ],
)
def test_consul_address_forms(addr: str, host: str) -> None:
    (dns,) = resolve_discovery(
        "auto", facts=HostFacts({"CONSUL_HTTP_ADDR": addr})
    ).config.strategies
    assert isinstance(dns, DnsConfig) and dns.resolver == (host, 8600)


def test_consul_named_by_hostname_is_refused_with_the_way_out() -> None:
    with pytest.raises(ConfigError, match=r"CONSUL_HTTP_ADDR 'consul\.internal:8500'.*resolver"):
        resolve_discovery("auto", facts=HostFacts({"CONSUL_HTTP_ADDR": "consul.internal:8500"}))


def test_kubernetes_wins_over_consul() -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "CONSUL_HTTP_ADDR": "127.0.0.1:8500"}
    (dns,) = resolve_discovery("auto", facts=HostFacts(env)).config.strategies
    assert isinstance(dns, DnsConfig) and dns.resolver is None


def test_auto_on_a_development_machine_uses_mdns() -> None:
    explained = resolve_discovery("auto", {"cluster": "dev"}, HostFacts({}, interactive=True))
    assert explained.config == DiscoveryConfig((MdnsConfig(cluster="dev"),))
    assert "development machine" in explained.text()
    assert f"service = {MDNS_SERVICE!r}" in explained.text()


def test_auto_in_ci_or_without_a_terminal_falls_back_to_multicast() -> None:
    for facts in (HostFacts({"CI": "true"}, interactive=True), HostFacts({}, interactive=False)):
        explained = resolve_discovery("auto", facts=facts)
        assert explained.config == DiscoveryConfig((MulticastConfig(),))
        assert f"{DEFAULT_MULTICAST_GROUP}:{DEFAULT_MULTICAST_PORT}" in explained.reasons[-1]
        assert "not a development machine" in explained.reasons[0]


def test_auto_refuses_an_option_it_does_not_take() -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['seeds'\] for auto"):
        resolve_discovery("auto", {"seeds": ["a:1"]})


# -- apprentice: discovery = "<strategy>" -------------------------------------------------


def test_apprentice_dns_with_a_port_means_a_records_and_defaults_are_listed() -> None:
    explained = resolve_discovery("dns", {"name": "peers.test", "port": 7946})
    assert explained.mode == "apprentice"
    (dns,) = explained.config.strategies
    assert dns == DnsConfig(name="peers.test", record="A", port=7946)
    text = explained.text()
    for line in ("timeout_s = 2.0", "interval_s = 5.0", "jitter = 0.2", "resolver = None"):
        assert line in text
    assert "options given: name='peers.test', port=7946" in text


def test_apprentice_static_seeds_from_text_or_list() -> None:
    a = resolve_discovery("static", {"seeds": "10.0.0.1:7946,10.0.0.2:7946"}).config
    b = resolve_discovery("static", {"seeds": ["10.0.0.1:7946", "10.0.0.2:7946"]}).config
    assert (
        a == b == DiscoveryConfig((StaticConfig(seeds=(("10.0.0.1", 7946), ("10.0.0.2", 7946))),))
    )


def test_apprentice_dns_resolver_text() -> None:
    (dns,) = resolve_discovery(
        "dns", {"name": "_g._udp.x.test", "resolver": "127.0.0.1:5353"}
    ).config.strategies
    assert isinstance(dns, DnsConfig) and dns.resolver == ("127.0.0.1", 5353)


@pytest.mark.parametrize(
    ("choice", "options", "message"),
    [
        ("dnss", {}, "unknown strategy 'dnss'; expected auto, none, static, dns, mdns, multicast"),
        ("dns", {"name": "x.test", "ttl": 3}, r"unknown option\(s\) \['ttl'\] for dns"),
        ("dns", {}, "option 'name' is required for dns"),
        ("dns", {"name": "x.test", "record": "MX"}, "'MX' is not one of A, AAAA, SRV"),
        ("dns", {"name": "x.test", "record": "A"}, "port: required with record = 'A'"),
        ("dns", {"name": "x.test", "port": 1, "record": "SRV"}, "SRV records carry the port"),
        ("dns", {"name": "x.test", "resolver": "dns.google:53"}, "'dns.google' is not an IP"),
        ("dns", {"name": "x.test", "interval_s": 0}, "interval_s: 0.0 is not a number of seconds"),
        ("static", {}, "option 'seeds' is required for static"),
        ("static", {"seeds": []}, "seeds: must list at least one HOST:PORT"),
        ("static", {"seeds": ["nohost"]}, "seeds"),
        ("mdns", {"cluster": "a b"}, "cluster: 'a b' is not a label"),
        ("multicast", {"group": "10.0.0.1"}, "10.0.0.1 is not a multicast group"),
        ("multicast", {"port": 70000}, "port 70000 is not an integer 1..65535"),
        ("multicast", {"interface": "eth0"}, "interface: 'eth0' is not an IPv4 address"),
        (3, {}, "3 is not a text or a table"),
        ("none", {"x": 1}, "make no sense"),
    ],
)
def test_bad_strategy_names_and_options_are_refused_naming_the_problem(
    choice: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_discovery(choice, options)


def test_none_means_no_strategy() -> None:
    explained = resolve_discovery("none")
    assert explained.config.strategies == ()
    assert "no strategy" in explained.text()


# -- wizard: an explicit table ----------------------------------------------------------


def full_table() -> dict[str, Any]:
    return {
        "strategies": [
            {"strategy": "static", "seeds": ["10.0.0.1:7946"], "interval_s": 30},
            {
                "strategy": "dns",
                "name": "_gossip._udp.kv.test",
                "record": "SRV",
                "port": None,
                "resolver": "10.0.0.2:53",
                "timeout_s": 1,
                "interval_s": 10,
                "jitter": 0.1,
            },
        ]
    }


def test_wizard_table_is_used_as_given() -> None:
    explained = resolve_discovery(full_table())
    assert explained.mode == "wizard"
    assert explained.config == DiscoveryConfig(
        (
            StaticConfig(seeds=(("10.0.0.1", 7946),), interval_s=30.0),
            DnsConfig(
                name="_gossip._udp.kv.test",
                resolver=("10.0.0.2", 53),
                timeout_s=1.0,
                interval_s=10.0,
                jitter=0.1,
            ),
        )
    )
    assert "used as given: static, dns" in explained.reasons[0]


def test_wizard_table_missing_a_field_is_refused() -> None:
    table = full_table()
    del table["strategies"][1]["jitter"]
    with pytest.raises(
        ConfigError, match=r"strategies\[1\]: an explicit dns .*missing \['jitter'\]"
    ):
        resolve_discovery(table)


def test_wizard_table_bad_strategy_and_unknown_keys() -> None:
    with pytest.raises(ConfigError, match=r"strategies\[0\]\.strategy: 'gossip' is not one of"):
        resolve_discovery({"strategies": [{"strategy": "gossip"}]})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['mode'\]"):
        resolve_discovery({"strategies": [], "mode": "x"})
    with pytest.raises(ConfigError, match="must be a list"):
        resolve_discovery({"strategies": "dns"})


@pytest.mark.parametrize(
    ("choice", "options", "facts"),
    [
        ("auto", {}, HostFacts({"KUBERNETES_SERVICE_HOST": "x"})),
        ("auto", {}, HostFacts({"CONSUL_HTTP_ADDR": "127.0.0.1:8500"})),
        ("auto", {}, HostFacts({}, interactive=True)),
        ("auto", {}, HostFacts({})),
        ("dns", {"name": "a.test", "port": 1}, HostFacts()),
        ("static", {"seeds": "[::1]:7946"}, HostFacts()),
    ],
)
def test_explain_json_round_trips_through_the_wizard_mode(
    choice: str, options: dict[str, Any], facts: HostFacts
) -> None:
    explained = resolve_discovery(choice, options, facts)
    as_json = json.loads(json.dumps(explained.to_mapping()))
    assert as_json["mode"] == explained.mode and as_json["reasons"] == list(explained.reasons)
    table = {"strategies": as_json["strategies"]}
    assert resolve_discovery(table).config == explained.config
