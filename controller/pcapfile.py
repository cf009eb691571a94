"""Reading the analyzers' pcap files while they grow."""
from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

GLOBAL_HEADER = 24
RECORD_HEADER = struct.Struct("<IIII")


@dataclass(frozen=True)
class Record:
    """One captured frame: its arrival time (seconds) and bytes."""

    time: float
    data: bytes


@dataclass
class _FileIndex:
    offsets: list[int] = field(default_factory=list)  # where each complete record starts
    end: int = GLOBAL_HEADER  # where the next record will start
    total_bytes: int = 0


class PcapIndex:
    """An index of the records of growing pcap files. Each call first indexes only the records
    appended since the last one (a record still being written is left for later), so counting
    is cheap and reading packet N seeks straight to it."""

    def __init__(self):
        self.files: dict[Path, _FileIndex] = {}
        self.lock = threading.Lock()

    def _refresh(self, path: Path) -> _FileIndex | None:
        index = self.files.setdefault(path, _FileIndex())
        try:
            with open(path, "rb") as pcap:
                pcap.seek(index.end)
                while True:
                    header = pcap.read(RECORD_HEADER.size)
                    if len(header) < RECORD_HEADER.size:
                        break
                    _seconds, _micros, caplen, length = RECORD_HEADER.unpack(header)
                    if len(pcap.read(caplen)) < caplen:
                        break
                    index.offsets.append(index.end)
                    index.end += RECORD_HEADER.size + caplen
                    index.total_bytes += length
        except FileNotFoundError:
            return None
        return index

    def count(self, path: Path) -> tuple[int, int]:
        """(packets, bytes) recorded in `path` so far; (0, 0) if it does not exist yet."""
        with self.lock:
            index = self._refresh(path)
            return (len(index.offsets), index.total_bytes) if index else (0, 0)

    def records(self, path: Path, after: int, limit: int) -> tuple[list[Record], int]:
        """The records after the first `after`, at most `limit`, and how many there are in all."""
        with self.lock:
            index = self._refresh(path)
            if index is None:
                return [], 0
            wanted = index.offsets[after:after + limit]
            records = []
            if wanted:
                with open(path, "rb") as pcap:
                    pcap.seek(wanted[0])
                    for _ in wanted:
                        seconds, micros, caplen, _length = RECORD_HEADER.unpack(pcap.read(RECORD_HEADER.size))
                        records.append(Record(seconds + micros / 1e6, pcap.read(caplen)))
            return records, len(index.offsets)
