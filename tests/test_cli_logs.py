"""Event lines and log setup of the command line (``foundation_p2p.logs``)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from foundation_p2p.events import Event, PeerAcked, PeerUnanswered, Started
from foundation_p2p.logs import configure_logging, format_event, log_event


@dataclass(frozen=True)
class Odd(Event):
    text: str
    flag: bool
    peers: tuple[tuple[str, int], ...]


def test_peer_acked_line_has_hex_id_host_port_and_milliseconds() -> None:
    ev = PeerAcked(bytes(range(16)), ("127.0.0.1", 7946), 0.0012345)
    assert format_event(ev) == (
        "event PeerAcked node_id=000102030405060708090a0b0c0d0e0f "
        "address=127.0.0.1:7946 rtt_ms=1.234"
    )


def test_ipv6_addresses_are_bracketed_and_other_fields_plain() -> None:
    assert format_event(PeerUnanswered(("::1", 9), 42)) == (
        "event PeerUnanswered address=[::1]:9 seq=42"
    )
    assert format_event(Started(b"\xff" * 16, 7, True)) == (
        f"event Started node_id={'ff' * 16} boot_epoch=7 new_identity=true"
    )


def test_texts_with_spaces_or_quotes_are_quoted_and_lists_joined() -> None:
    line = format_event(Odd('say "hi" now', False, (("10.0.0.1", 1), ("::1", 2))))
    assert line == (
        'event Odd text="say \\"hi\\" now" flag=false peers=10.0.0.1:1,[::1]:2'
    )


@pytest.fixture
def restore_logging() -> Iterator[None]:
    loggers = [logging.getLogger("foundation_p2p"), logging.getLogger("foundation_p2p.events")]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, handlers, level, propagate in saved:
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate


def test_event_lines_are_bare_and_logs_are_stamped(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("WARNING", stream)
    logging.getLogger("foundation_p2p.runtime").info("hidden at WARNING")
    logging.getLogger("foundation_p2p.runtime").warning("shown")
    log_event(PeerUnanswered(("127.0.0.1", 1), 3))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("Z WARNING foundation_p2p.runtime: shown")
    assert lines[1] == "event PeerUnanswered address=127.0.0.1:1 seq=3"


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="TRACE"):
        configure_logging("TRACE")
