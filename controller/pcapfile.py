"""Reading the analyzers' pcap files while they grow."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from lab.pcap import GLOBAL_HEADER, READ_CHUNK, RECORD_HEADER, complete_records

# The index keeps the offset of one record in CHECKPOINT_EVERY: its memory grows by one integer
# per that many packets (not one per packet), and reading packet N reads at most that many
# records past the checkpoint before it.
CHECKPOINT_EVERY = 1024


@dataclass(frozen=True)
class Record:
    """One captured frame: its arrival time (seconds) and bytes."""

    time: float
    data: bytes


@dataclass
class _FileIndex:
    checkpoints: list[int] = field(default_factory=list)  # offset of record 0, N, 2N...
    packets: int = 0  # complete records so far
    end: int = GLOBAL_HEADER  # where the next record will start
    total_bytes: int = 0


class PcapIndex:
    """A sparse index of the records of growing pcap files. Each call first indexes only the
    records appended since the last one (a record still being written is left for later), so
    counting is cheap and reading packet N seeks to the checkpoint before it."""

    def __init__(self):
        self.files: dict[Path, _FileIndex] = {}
        self.lock = threading.Lock()

    def _refresh(self, path: Path) -> _FileIndex | None:
        index = self.files.setdefault(path, _FileIndex())
        try:
            with open(path, "rb") as pcap:
                for offset, caplen, length in complete_records(pcap, index.end):
                    if index.packets % CHECKPOINT_EVERY == 0:
                        index.checkpoints.append(offset)
                    index.packets += 1
                    index.end = offset + RECORD_HEADER.size + caplen
                    index.total_bytes += length
        except FileNotFoundError:
            return None
        return index

    def count(self, path: Path) -> tuple[int, int]:
        """(packets, bytes) recorded in `path` so far; (0, 0) if it does not exist yet."""
        with self.lock:
            index = self._refresh(path)
            return (index.packets, index.total_bytes) if index else (0, 0)

    def complete_size(self, path: Path) -> int:
        """How many bytes of `path` are its global header and complete records (0 if it holds
        no record yet): what a download can serve as a valid pcap."""
        with self.lock:
            index = self._refresh(path)
            return index.end if index and index.packets else 0

    def records(self, path: Path, after: int, limit: int) -> tuple[list[Record], int]:
        """The records after the first `after`, at most `limit`, and how many there are in all."""
        with self.lock:
            index = self._refresh(path)
            if index is None:
                return [], 0
            wanted = range(after, min(after + limit, index.packets))
            records = []
            if wanted:
                with open(path, "rb") as pcap:
                    pcap.seek(index.checkpoints[after // CHECKPOINT_EVERY])
                    for number in range(after // CHECKPOINT_EVERY * CHECKPOINT_EVERY, wanted.stop):
                        seconds, micros, caplen, _length = RECORD_HEADER.unpack(pcap.read(RECORD_HEADER.size))
                        if number < after:
                            pcap.seek(caplen, 1)
                        else:
                            records.append(Record(seconds + micros / 1e6, pcap.read(caplen)))
            return records, index.packets


def read_prefix(path: Path, size: int) -> Iterator[bytes]:
    """The first `size` bytes of `path`, in chunks, for a streamed download."""
    with open(path, "rb") as pcap:
        left = size
        while left > 0:
            chunk = pcap.read(min(READ_CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
