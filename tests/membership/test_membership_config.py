"""``MembershipConfig``: profiles, overrides from the node config, and errors that name
the field."""

from __future__ import annotations

import pytest

from foundation_p2p.config import NodeConfig
from foundation_p2p.errors import ConfigError
from foundation_p2p.membership.config import PROFILES, MembershipConfig


def test_profiles_start_from_memberlists_defaults_and_every_key_overrides() -> None:
    lan = MembershipConfig.from_mapping({})
    assert (lan.probe_interval_s, lan.probe_timeout_s, lan.indirect_checks) == (1.0, 0.5, 3)
    assert (lan.suspicion_mult, lan.retransmit_mult, lan.gossip_nodes) == (4, 4, 3)
    wan = MembershipConfig.from_mapping({"profile": "wan"})
    assert (wan.probe_interval_s, wan.probe_timeout_s, wan.suspicion_mult) == (5.0, 3.0, 6)
    local = MembershipConfig.from_mapping({"profile": "local", "gossip_nodes": 5})
    assert local.probe_timeout_s == 0.2 and local.gossip_nodes == 5
    assert set(PROFILES) == {"lan", "wan", "local"}


def test_the_membership_table_of_a_node_config_is_read() -> None:
    config = NodeConfig.from_mapping(
        {"name": "a", "membership": {"profile": "wan", "lifeguard": False, "observer": True}}
    )
    m = MembershipConfig.from_node_config(config)
    assert m.profile == "wan" and not m.lifeguard and m.observer
    assert MembershipConfig.from_node_config(NodeConfig()) == MembershipConfig.from_mapping({})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"profile": "moon"}, "profile"),
        ({"probe_intervall_s": 1.0}, "probe_intervall_s: unknown key"),
        ({"gossip_nodes": 0}, "gossip_nodes"),
        ({"probe_timeout_s": 2.0}, "probe_timeout_s"),
        ({"lifeguard": "yes"}, "lifeguard"),
        ({"user_payload_share": 0.95}, "user_payload_share"),
        ({"max_metadata_bytes": -1}, "max_metadata_bytes"),
        ({"join_retry_s": "fast"}, "join_retry_s"),
    ],
)
def test_a_bad_value_is_refused_naming_the_field(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MembershipConfig.from_mapping(table)


def test_the_formulas() -> None:
    cfg = MembershipConfig()
    assert cfg.retransmit_limit(9) == 4 and cfg.retransmit_limit(10) == 8
    assert cfg.retransmit_limit(1000) == 16
    assert cfg.push_pull_interval(32) == 30.0
    assert cfg.push_pull_interval(100) == 90.0  # ceil(log2 100 - 5) + 1 = 3
    assert cfg.push_pull_interval(1000) == 180.0


def test_the_announcement_parse_cache_is_bounded_in_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from foundation_p2p.crypto.identity import Identity
    from foundation_p2p.membership import frames
    from foundation_p2p.membership.state import MemberState

    monkeypatch.setattr(frames, "_PARSED", {})
    monkeypatch.setattr(frames, "_parsed_bytes", 0)
    monkeypatch.setattr(frames, "PARSE_CACHE_BYTES", 3000)
    records = []
    for i in range(8):
        ann = frames.Announcement.sign(
            Identity(bytes([i + 1]) * 32),
            incarnation=1,
            state=MemberState.ALIVE,
            address=("127.0.0.1", 7000 + i),
            name=f"n{i}",
            metadata=bytes(900),
            observer=False,
        )
        frames.Announcement.parse(ann.record, ann.signature)
        records.append(ann.record)
        assert 0 < frames._parsed_bytes <= 3000
    assert len(frames._PARSED) < 8
    assert frames._PARSED[ann.signature].record == records[-1]


def test_the_parse_cache_never_answers_other_bytes_under_a_known_signature() -> None:
    from foundation_p2p.crypto.identity import Identity
    from foundation_p2p.membership import frames
    from foundation_p2p.membership.state import MemberState

    kw = {"state": MemberState.ALIVE, "name": "n", "metadata": b"", "observer": False}
    real = frames.Announcement.sign(
        Identity(bytes([7]) * 32), incarnation=1, address=("127.0.0.1", 7000), **kw
    )
    other = frames.Announcement.sign(
        Identity(bytes([7]) * 32), incarnation=2, address=("127.0.0.1", 7000), **kw
    )
    first = frames.Announcement.parse(real.record, real.signature)
    assert first.verify()
    replayed = frames.Announcement.parse(other.record, real.signature)  # signature replayed
    assert replayed.record == other.record and replayed.incarnation == 2
    assert not replayed.verify()
    assert frames.Announcement.parse(real.record, real.signature) is first
