"""Reading the analyzers' pcap files (and their directions files) while they grow."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

from mirrorlab.pcap import (
    DIRECTION_OF_BYTE, GLOBAL_HEADER, PCAPNG_HEADER, READ_CHUNK, RECORD_HEADER, complete_records,
    pcapng_packet,
)

# The index keeps the offset of one record in CHECKPOINT_EVERY: its memory grows by one integer
# per that many packets (not one per packet), and reading packet N reads at most that many
# records past the checkpoint before it.
CHECKPOINT_EVERY = 1024


@dataclass(frozen=True)
class Record:
    """One captured frame: its arrival time (seconds), bytes, and direction ("ingress": the
    monitored VM sent it, "egress": it was delivered to the VM, None: unknown)."""

    time: float
    data: bytes
    direction: str | None = None


@dataclass
class _FileIndex:
    checkpoints: list[int] = field(default_factory=list)  # offset of record 0, N, 2N...
    packets: int = 0  # complete records so far
    end: int = GLOBAL_HEADER  # where the next record will start
    total_bytes: int = 0


def directions_path(path: Path) -> Path:
    """The directions file beside the pcap file `path` (lab/recorder.py directions_file)."""
    return path.with_suffix(".directions")


def _directions_known(path: Path) -> int | None:
    """How many records of the pcap file `path` have their direction written; None if it has
    no directions file (then every direction is unknown)."""
    try:
        return directions_path(path).stat().st_size
    except FileNotFoundError:
        return None


def read_directions(path: Path, first: int, count: int) -> list[str | None]:
    """The directions of records first..first+count-1 of the pcap file `path`."""
    try:
        with open(directions_path(path), "rb") as directions:
            directions.seek(first)
            codes = directions.read(count)
    except FileNotFoundError:
        codes = b""
    return [DIRECTION_OF_BYTE.get(code) for code in codes] + [None] * (count - len(codes))


class PcapIndex:
    """A sparse index of the records of growing pcap files. Each call first indexes only the
    records appended since the last one (a record still being written, or whose direction is
    not written yet, is left for later), so counting is cheap and reading packet N seeks to the
    checkpoint before it."""

    def __init__(self):
        self.files: dict[Path, _FileIndex] = {}
        self.lock = threading.Lock()

    def _refresh(self, path: Path) -> _FileIndex | None:
        index = self.files.setdefault(path, _FileIndex())
        known = _directions_known(path)
        try:
            with open(path, "rb") as pcap:
                for offset, caplen, length in complete_records(pcap, index.end):
                    if known is not None and index.packets >= known:
                        break
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
                directions = read_directions(path, after, len(records))
                records = [replace(record, direction=direction)
                           for record, direction in zip(records, directions)]
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


def pcapng_prefix(path: Path, size: int) -> Iterator[bytes]:
    """The first `size` bytes of the pcap file `path` (its header and complete records) as
    pcapng, each packet with its direction, in chunks, for a streamed download."""
    yield PCAPNG_HEADER
    with open(path, "rb") as pcap:
        pcap.seek(GLOBAL_HEADER)
        number, chunk = 0, []
        while pcap.tell() < size:
            seconds, micros, caplen, _length = RECORD_HEADER.unpack(pcap.read(RECORD_HEADER.size))
            if number % CHECKPOINT_EVERY == 0:
                directions = read_directions(path, number, CHECKPOINT_EVERY)
            chunk.append(pcapng_packet(seconds, micros, pcap.read(caplen),
                                       directions[number % CHECKPOINT_EVERY]))
            number += 1
            if len(chunk) == CHECKPOINT_EVERY:
                yield b"".join(chunk)
                chunk = []
        if chunk:
            yield b"".join(chunk)
