"""The worker's coalesced changelog buffer: pure, no Faust or Kafka (streams/app.py sends what it takes).

The window engine reports every state change as `persist(partition, key, value_or_None)`. Here only the
newest value of each key waits until the next write, which is taken whole in one step, in the order the
crash invariants of streams/windows.py need (I2, I4):
  1. window updates (b"w|…" with a value),
  2. partition states (b"p|…"): after the window updates they cover, so a changelog prefix holding a
     partition's applied offset holds every window change below it,
  3. tombstones of closed windows: after the partition state whose watermark closed them, so a prefix
     that lost a window also holds the watermark that makes its replayed readings late.
"""

from __future__ import annotations

Entry = tuple[int, bytes, bytes | None]  # (changelog partition, key, value or None for a tombstone)


class ChangelogBuffer:
    def __init__(self) -> None:
        self.windows: dict[tuple[int, bytes], bytes] = {}
        self.partitions: dict[tuple[int, bytes], bytes | None] = {}
        self.tombstones: dict[tuple[int, bytes], None] = {}

    def persist(self, partition: int, key: bytes, value: bytes | None) -> None:
        k = (partition, key)
        if key.startswith(b"p|"):
            self.partitions[k] = value
        elif value is None:
            # a closed window. Its pending update still goes out first: should the write stop after the
            # partition state but before this tombstone, the window restored must be the one published,
            # not an older state that its (now replay-guarded) readings would never complete.
            self.tombstones[k] = None
        else:
            self.tombstones.pop(k, None)
            self.windows[k] = value

    def take(self) -> list[Entry]:
        """Everything waiting, in write order; the buffer is empty afterwards."""
        out: list[Entry] = [(p, k, v) for (p, k), v in self.windows.items()]
        out += [(p, k, v) for (p, k), v in self.partitions.items()]
        out += [(p, k, None) for (p, k) in self.tombstones]
        self.windows, self.partitions, self.tombstones = {}, {}, {}
        return out

    def __len__(self) -> int:
        return len(self.windows) + len(self.partitions) + len(self.tombstones)
