"""Replay protection: a sliding window of packet numbers per sender and boot epoch."""

from __future__ import annotations

from collections import OrderedDict

from foundation_p2p.errors import ConfigError, ReplayError, StaleEpochError


class ReplayWindow:
    """Accepts each packet number at most once within a window of the highest seen.

    A bitmap of the last ``size`` numbers below the highest one (RFC 4303 section 3.4.3
    and RFC 9000's advice): a number above the highest slides the window; one inside it is
    accepted once; one below it is refused.
    """

    __slots__ = ("bitmap", "highest", "size")

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.highest = -1
        self.bitmap = 0  # bit i set: number highest - i was seen

    def check(self, pn: int) -> None:
        """Raise :class:`ReplayError` if ``pn`` was seen or is too old; change nothing."""
        if pn > self.highest:
            return
        offset = self.highest - pn
        if offset >= self.size:
            raise ReplayError(f"packet number {pn} is older than the replay window")
        if self.bitmap >> offset & 1:
            raise ReplayError(f"packet number {pn} was already received")

    def accept(self, pn: int) -> None:
        """Record ``pn`` as received (call only after :meth:`check` and authentication)."""
        if pn > self.highest:
            shift = pn - self.highest
            self.bitmap = ((self.bitmap << shift) | 1) & ((1 << self.size) - 1)
            self.highest = pn
        else:
            self.bitmap |= 1 << (self.highest - pn)


class ReplayGuard:
    """Replay windows for many senders, bounded in count.

    Each sender has one window for its newest boot epoch. A packet from a newer epoch
    (after :meth:`accept`) replaces the window; one from an older epoch is refused with
    :class:`StaleEpochError`. At most ``max_senders`` senders are tracked; beyond that
    the least recently heard sender is forgotten (counted in ``evicted``). A forgotten
    sender's old packets could then be replayed once, which is why the bound is large
    and the eviction counted; membership later pins the windows of live members.
    """

    __slots__ = ("_senders", "evicted", "max_senders", "window_size")

    def __init__(self, max_senders: int = 4096, window_size: int = 256) -> None:
        if max_senders <= 0 or window_size <= 0:
            raise ConfigError("ReplayGuard: max_senders and window_size must be positive")
        self.max_senders = max_senders
        self.window_size = window_size
        self.evicted = 0
        self._senders: OrderedDict[bytes, tuple[int, ReplayWindow]] = OrderedDict()

    def check(self, sender: bytes, epoch: int, pn: int) -> None:
        """Raise if (sender, epoch, pn) must be refused; changes nothing."""
        entry = self._senders.get(sender)
        if entry is None:
            return
        known_epoch, window = entry
        if epoch < known_epoch:
            raise StaleEpochError(f"boot epoch {epoch} is older than {known_epoch}")
        if epoch == known_epoch:
            window.check(pn)

    def accept(self, sender: bytes, epoch: int, pn: int) -> None:
        """Record an authenticated packet; a newer epoch retires the old window."""
        entry = self._senders.get(sender)
        if entry is None or epoch > entry[0]:
            window = ReplayWindow(self.window_size)
            self._senders[sender] = (epoch, window)
            if entry is None and len(self._senders) > self.max_senders:
                self._senders.popitem(last=False)
                self.evicted += 1
        else:
            window = entry[1]
        self._senders.move_to_end(sender)
        window.accept(pn)

    def epoch_of(self, sender: bytes) -> int | None:
        """The newest boot epoch accepted from ``sender``, if it is tracked."""
        entry = self._senders.get(sender)
        return None if entry is None else entry[0]

    def __len__(self) -> int:
        return len(self._senders)
