"""The pcap file format as the recorder writes it and the controller reads it: one global header,
then records of a 16-byte header and the frame."""
from __future__ import annotations

import struct
from typing import BinaryIO, Iterator

GLOBAL_HEADER = 24
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # Ethernet linktype
RECORD_HEADER = struct.Struct("<IIII")  # seconds, microseconds, captured length, original length
READ_CHUNK = 1 << 20


def record_bytes(when: float, frame: bytes) -> bytes:
    """One pcap record of `frame`, received at time `when`."""
    seconds = int(when)
    return RECORD_HEADER.pack(seconds, int((when - seconds) * 1e6), len(frame), len(frame)) + frame


def complete_records(pcap: BinaryIO, offset: int) -> Iterator[tuple[int, int, int]]:
    """(offset, captured length, original length) of each complete record of the open file `pcap` from `offset`
    on, reading it in large chunks; a record whose bytes are not all there yet ends the walk."""
    pcap.seek(offset)
    buffer = b""
    start = offset  # file offset of buffer[0]
    position = 0  # of the next record, in buffer
    while True:
        chunk = pcap.read(READ_CHUNK)
        if not chunk:
            return
        buffer = buffer[position:] + chunk
        start += position
        position = 0
        while len(buffer) - position >= RECORD_HEADER.size:
            _seconds, _micros, caplen, length = RECORD_HEADER.unpack_from(buffer, position)
            end = position + RECORD_HEADER.size + caplen
            if end > len(buffer):
                break
            yield start + position, caplen, length
            position = end


def complete_end(pcap: BinaryIO) -> int:
    """Where the last complete record of the open file `pcap` ends (GLOBAL_HEADER if it has
    none; 0 if even the global header is incomplete)."""
    pcap.seek(0, 2)
    if pcap.tell() < GLOBAL_HEADER:
        return 0
    end = GLOBAL_HEADER
    for offset, caplen, _length in complete_records(pcap, GLOBAL_HEADER):
        end = offset + RECORD_HEADER.size + caplen
    return end
