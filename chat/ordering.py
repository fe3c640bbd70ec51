"""Pushes leave each connection in seq order per group, each message once.

Concurrent senders' commits may publish out of order (seq 8's push before seq 7's). A connection holds a
push that comes early until the earlier ones arrive, or until its gap filler reads them from the database."""
import time


class PushSequencer:
    """One connection's delivery state: the last seq sent per group followed, and the pushes held.

    Plain and synchronous: the consumer asks it what to send, and sends that, in order."""

    def __init__(self):
        self.delivered: dict[str, int] = {}  # group -> last seq sent
        self.held: dict[str, dict[int, tuple[str, float]]] = {}  # group -> seq -> (frame text, held since)

    def follow(self, group_id: str, last_seq: int) -> None:
        """Deliver the group's pushes after `last_seq` (what came before is the client's to sync)."""
        self.delivered[group_id] = last_seq

    def forget(self, group_id: str) -> None:
        """Stop delivering the group's pushes (the user left it)."""
        self.delivered.pop(group_id, None)
        self.held.pop(group_id, None)

    def follows(self, group_id: str) -> bool:
        return group_id in self.delivered

    def last(self, group_id: str) -> int:
        """The last seq sent of the group."""
        return self.delivered.get(group_id, 0)

    def has_gap(self, group_id: str) -> bool:
        """Some push of the group is held, waiting for an earlier one."""
        return bool(self.held.get(group_id))

    def held_since(self, group_id: str) -> float | None:
        """Since when (time.monotonic) the longest-held push of the group has waited for an earlier one: how old
        the group's gap is. A gap closed by the push it waited for does not count, even if newer ones are held."""
        held = self.held.get(group_id)
        return min(at for _, at in held.values()) if held else None

    def offer(self, group_id: str, seq: int, text: str, now: float | None = None) -> list[str]:
        """A push came: the texts to send now, in order (none for a repeat or an early one, which is held)."""
        last = self.delivered.get(group_id)
        if last is None or seq <= last:
            return []
        if seq > last + 1:
            self.held.setdefault(group_id, {})[seq] = (text, time.monotonic() if now is None else now)
            return []
        self.delivered[group_id] = seq
        return [text, *self._release(group_id)] if group_id in self.held else [text]

    def fill(self, group_id: str, stored: list[tuple[int, str]]) -> list[str]:
        """Messages read from the database after last(): the ones that follow on, then the held ones they free."""
        if group_id not in self.delivered:
            return []
        out = []
        for seq, text in stored:
            if seq == self.delivered[group_id] + 1:
                self.delivered[group_id] = seq
                out += [text, *self._release(group_id)]  # and the held ones that follow on
        return out + self._release(group_id)

    def drop_held(self, group_id: str) -> None:
        """Give up waiting (the database had nothing more): the client syncs if it missed anything."""
        self.held.pop(group_id, None)

    def _release(self, group_id: str) -> list[str]:
        held = self.held.get(group_id, {})
        out = []
        while (seq := self.delivered[group_id] + 1) in held:
            out.append(held.pop(seq)[0])
            self.delivered[group_id] = seq
        for seq in [s for s in held if s <= self.delivered[group_id]]:
            del held[seq]
        if not held:
            self.held.pop(group_id, None)
        return out
