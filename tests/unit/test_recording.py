"""The analyzer side: the recorder's pcap files and the controller's index of them."""
from __future__ import annotations

import struct

from scapy.utils import rdpcap

from controller.pcapfile import PcapIndex
from lab.recorder import PCAP_HEADER, Recorder, capture_file, parse_copy

ORIGINAL = bytes.fromhex("02000a01010c02000a01010b0800") + b"\x45" + bytes(40)


def copy_of(frame: bytes, label: int) -> bytes:
    """A mirrored copy as it reaches the analyzer: Ethernet, one MPLS label, the frame."""
    outer = bytes.fromhex("02000afa020300005e000100") + b"\x88\x47"
    return outer + struct.pack("!I", label << 12 | 0x100 | 64) + frame


def test_parse_copy_returns_label_and_original_frame():
    """A copy gives its label and the untouched frame; anything else is not a copy."""
    assert parse_copy(copy_of(ORIGINAL, 0x80001)) == (0x80001, ORIGINAL)
    assert parse_copy(ORIGINAL) is None
    not_bottom = copy_of(ORIGINAL, 7)[:16] + b"\x00\x40" + ORIGINAL
    assert parse_copy(not_bottom) is None
    odd_ttl_not_bottom = copy_of(ORIGINAL, 7)[:16] + b"\x00\x41" + ORIGINAL
    assert parse_copy(odd_ttl_not_bottom) is None
    assert parse_copy(copy_of(b"", 0x80001)) is None  # the wrapper alone, no frame
    assert parse_copy(copy_of(b"x", 0x80001)) == (0x80001, b"x")
    ipv4_with_bit_8_set = ORIGINAL[:14] + b"\x45\x00\x01\x00" + ORIGINAL[18:]
    assert parse_copy(ipv4_with_bit_8_set) is None  # not MPLS, whatever follows


def test_recorder_writes_one_pcap_per_label_and_index_reads_it(tmp_path):
    """Each label gets its own file of original frames; the index counts and pages them."""
    recorder = Recorder(tmp_path)
    for n in range(5):
        recorder.write(copy_of(ORIGINAL + bytes([n]), 0x80001), 1000.0 + n)
    recorder.write(copy_of(ORIGINAL, 0x80002), 2000.5)
    recorder.write(ORIGINAL, 3000.0)  # not a copy: ignored
    recorder.flush()
    first, second = capture_file(tmp_path, 0x80001), capture_file(tmp_path, 0x80002)
    assert first.read_bytes().startswith(PCAP_HEADER)
    index = PcapIndex()
    assert index.count(first) == (5, 5 * (len(ORIGINAL) + 1))
    assert index.count(second) == (1, len(ORIGINAL))
    records, total = index.records(first, after=3, limit=10)
    assert total == 5 and [r.data for r in records] == [ORIGINAL + b"\x03", ORIGINAL + b"\x04"]
    assert records[0].time == 1003.0
    assert index.count(tmp_path / "label-1.pcap") == (0, 0)
    assert index.records(tmp_path / "label-1.pcap", 0, 10) == ([], 0)


def test_index_leaves_a_half_written_record_for_later(tmp_path):
    """A record whose bytes are not all on disk yet is not counted until they are."""
    recorder = Recorder(tmp_path)
    recorder.write(copy_of(ORIGINAL, 0x80003), 1.0)
    recorder.flush()
    path = capture_file(tmp_path, 0x80003)
    index = PcapIndex()
    assert index.count(path) == (1, len(ORIGINAL))
    record = struct.pack("<IIII", 2, 0, len(ORIGINAL), len(ORIGINAL)) + ORIGINAL
    with open(path, "ab") as pcap:
        pcap.write(record[:30])
    assert index.count(path) == (1, len(ORIGINAL))
    with open(path, "ab") as pcap:
        pcap.write(record[30:])
    assert index.count(path) == (2, 2 * len(ORIGINAL))


def test_pcap_files_are_little_endian_microsecond_pcap(tmp_path):
    """The file starts with the classic little-endian pcap header (magic a1b2c3d4 with
    microsecond timestamps, version 2.4, snaplen 65535, Ethernet), and scapy reads back each
    frame with its arrival time to the microsecond."""
    recorder = Recorder(tmp_path)
    recorder.write(copy_of(ORIGINAL, 0x80001), 1000.25)
    recorder.write(copy_of(ORIGINAL + b"\x01", 0x80001), 1700000000.123456)
    recorder.flush()
    path = capture_file(tmp_path, 0x80001)
    assert path.read_bytes()[:24] == bytes.fromhex(
        "d4c3b2a1" "0200" "0400" "00000000" "00000000" "ffff0000" "01000000")
    first, second = rdpcap(str(path))
    assert (first.time, bytes(first)) == (1000.25, ORIGINAL)
    assert (round(float(second.time), 6), bytes(second)) == (1700000000.123456, ORIGINAL + b"\x01")
    records, _ = PcapIndex().records(path, 0, 2)
    assert [r.time for r in records] == [1000.25, 1700000000.123456]
