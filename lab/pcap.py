"""The files the recorder writes and the controller reads.

A capture's pcap file: one global header, then records of a 16-byte header and the frame. Its
directions file: one byte per record of the pcap file, in the same order, saying whether the
monitored VM sent the frame (ingress) or had it delivered (egress); classic pcap has no place
for that. Downloads join the two into pcapng, whose enhanced packet blocks carry the direction
as Wireshark shows it ("Direction: Outbound" for what the VM sent, "Inbound" for what it was
delivered: the monitored VM's interface is the capturing interface).
"""
from __future__ import annotations

import struct
from typing import BinaryIO, Iterator

GLOBAL_HEADER = 24
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # Ethernet linktype
RECORD_HEADER = struct.Struct("<IIII")  # seconds, microseconds, captured length, original length
READ_CHUNK = 1 << 20

INGRESS = "ingress"
EGRESS = "egress"
DIRECTION_BYTES = {INGRESS: b"i", EGRESS: b"e"}
UNKNOWN_DIRECTION = b"?"  # a record whose direction was lost (its recorder was killed)
DIRECTION_OF_BYTE = {code[0]: direction for direction, code in DIRECTION_BYTES.items()}
# pcapng enhanced packet block flags, bits 0-1: 1 = inbound, 2 = outbound.
EPB_DIRECTION_FLAGS = {EGRESS: 1, INGRESS: 2}


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


def complete_end(pcap: BinaryIO) -> tuple[int, int]:
    """Where the last complete record of the open file `pcap` ends (GLOBAL_HEADER if it has
    none; 0 if even the global header is incomplete), and how many complete records it holds."""
    pcap.seek(0, 2)
    if pcap.tell() < GLOBAL_HEADER:
        return 0, 0
    end, count = GLOBAL_HEADER, 0
    for offset, caplen, _length in complete_records(pcap, GLOBAL_HEADER):
        end = offset + RECORD_HEADER.size + caplen
        count += 1
    return end, count


def _block(block_type: int, body: bytes) -> bytes:
    """One pcapng block: type, total length, `body` padded to 32 bits, total length again."""
    body += bytes(-len(body) % 4)
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


# Section header block (byte-order magic, version 1.0, section length unknown) and one Ethernet
# interface description block (snaplen 65535, microsecond timestamps by default).
PCAPNG_HEADER = (_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
                 + _block(0x00000001, struct.pack("<HHI", 1, 0, 65535)))


def pcapng_packet(seconds: int, micros: int, frame: bytes, direction: str | None) -> bytes:
    """One pcapng enhanced packet block of `frame` on interface 0, with its direction in the
    epb_flags option (left out when the direction is unknown)."""
    timestamp = seconds * 1_000_000 + micros
    body = struct.pack("<IIIII", 0, timestamp >> 32, timestamp & 0xFFFFFFFF, len(frame), len(frame))
    body += frame + bytes(-len(frame) % 4)
    if direction in EPB_DIRECTION_FLAGS:
        body += struct.pack("<HHI", 2, 4, EPB_DIRECTION_FLAGS[direction]) + bytes(4)  # + opt_endofopt
    return _block(0x00000006, body)
