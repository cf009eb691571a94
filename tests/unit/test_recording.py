"""The analyzer side: the recorder's pcap files, their limits, a restarted recorder, and the
controller's index of them."""
from __future__ import annotations

import os
import struct
import time
import tracemalloc

from scapy.utils import rdpcap

from mirrorlab.controller import pcapfile
from mirrorlab.controller.pcapfile import CHECKPOINT_EVERY, PcapIndex, read_prefix
from mirrorlab.pcap import GLOBAL_HEADER, PCAP_HEADER, RECORD_HEADER, record_bytes
from mirrorlab.juniper import Copy, parse_copy
from mirrorlab.recorder import (
    RACY_NS, Recorder, capture_file, directions_file, raw_capture_file, set_limits, stop_report,
    with_vlan_tag,
)
from mirrorlab.recorder import set_encapsulation
from tests.unit.helpers import ANALYZER_INTERFACE, copy_of

ORIGINAL = bytes.fromhex("02000a01010c02000a01010b0800") + b"\x45" + bytes(40)



def test_parse_copy_returns_source_index_direction_and_original_frame(tmp_path):
    """A copy gives the mirroring vRouter's address, the capture's mirror index, its UDP port,
    its direction (from the TLV type), its VN and the untouched frame; anything else is not a
    copy."""
    copy = copy_of(tmp_path, ORIGINAL, 0x80001)
    assert parse_copy(copy) == Copy("192.168.100.1", 0x80001 % 255, 8099, "ingress", "default-domain:default:blue", ORIGINAL)
    assert parse_copy(copy_of(tmp_path, ORIGINAL, 0x80001, traffic_class=1)).direction == "egress"
    assert parse_copy(copy_of(tmp_path, b"x", 0x80001)).original == b"x"
    assert parse_copy(ORIGINAL) is None
    assert parse_copy(copy[:-len(ORIGINAL)]) is None  # the headers alone, no frame
    low_source_port = copy[:34] + (1234).to_bytes(2, "big") + copy[36:]
    assert parse_copy(low_source_port) is None
    no_end = copy[:42] + bytes((3, 200)) + copy[44:]  # a TLV running past the end
    assert parse_copy(no_end) is None
    fragment = copy[:20] + b"\x20\x00" + copy[22:]
    assert parse_copy(fragment) is None


def test_recorder_keeps_the_raw_capture_of_everything_received(tmp_path):
    """The raw capture holds every frame the interface received, copies with their headers
    and all, and frames that are no copy."""
    recorder = Recorder(tmp_path, ANALYZER_INTERFACE)
    copy = copy_of(tmp_path, ORIGINAL, 0x80001)
    recorder.write(copy, 1.0)
    recorder.write(ORIGINAL, 2.0)
    recorder.flush()
    assert [bytes(f) for f in rdpcap(str(raw_capture_file(tmp_path, ANALYZER_INTERFACE)))] == [
        copy, ORIGINAL]


def test_copies_for_another_analyzer_or_port_are_not_recorded(tmp_path):
    """A copy whose (source, mirror index) belongs to another analyzer's capture, or that
    arrives on another UDP port, belongs to no capture of this one."""
    recorder = Recorder(tmp_path, "an2-eth0")
    recorder.write(copy_of(tmp_path, ORIGINAL, 0x80001), 1.0)
    other_port = copy_of(tmp_path, ORIGINAL, 0x80002)
    mine = Recorder(tmp_path, ANALYZER_INTERFACE)
    mine.write(other_port[:36] + (9000).to_bytes(2, "big") + other_port[38:], 1.0)
    recorder.flush()
    mine.flush()
    assert not capture_file(tmp_path, 0x80001).exists()
    assert not capture_file(tmp_path, 0x80002).exists()


def test_a_mirror_index_used_again_belongs_to_the_newest_capture(tmp_path):
    """Two captures of one vRouter with the same mirror index (the first one stopped): copies
    go to the newer one."""
    recorder = Recorder(tmp_path, ANALYZER_INTERFACE)
    recorder.write(copy_of(tmp_path, ORIGINAL, 0x80001), 1.0)
    newer = 0x80001 + 255  # the same index, label % 255
    copy = copy_of(tmp_path, ORIGINAL, newer)
    recorder.flush()  # the recorder looks for new captures at least this often
    recorder.write(copy, 2.0)
    recorder.flush()
    assert PcapIndex().count(capture_file(tmp_path, 0x80001)) == (1, len(ORIGINAL))
    assert PcapIndex().count(capture_file(tmp_path, newer)) == (1, len(ORIGINAL))


def test_the_captures_directory_is_listed_again_only_once_it_changed(tmp_path, monkeypatch):
    """Looking for new captures lists the directory only when it changed since the last
    listing (it keeps every capture's files: tens of thousands after a churn); a capture
    started since is found, also within the file system's timestamp resolution."""
    listings = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: listings.append(path) or scandir(path))
    recorder = Recorder(tmp_path, ANALYZER_INTERFACE)
    first = copy_of(tmp_path, ORIGINAL, 0x80001)
    long_ago = time.time_ns() - 10 * RACY_NS
    os.utime(tmp_path, ns=(long_ago, long_ago))
    recorder.flush()
    recorder.flush()
    recorder.write(first, 1.0)
    assert len(listings) == 1
    second = copy_of(tmp_path, ORIGINAL, 0x80002)  # a new capture: the directory changes
    recorder.write(second, 2.0)
    assert len(listings) == 2
    recorder.flush()  # lists it as it is now, with the recorder's own new files
    listed = os.stat(tmp_path).st_mtime_ns
    third = copy_of(tmp_path, ORIGINAL, 0x80003)
    os.utime(tmp_path, ns=(listed, listed))  # changed within the tick of the last listing
    recorder.flush()
    recorder.write(third, 3.0)
    recorder.flush()
    assert [PcapIndex().count(capture_file(tmp_path, label))[0]
            for label in (0x80001, 0x80002, 0x80003)] == [1, 1, 1]


def test_recorder_writes_one_pcap_per_label_and_index_reads_it(tmp_path):
    """Each label gets its own file of original frames; the index counts and pages them."""
    recorder = Recorder(tmp_path, ANALYZER_INTERFACE)
    for n in range(5):
        recorder.write(copy_of(tmp_path, ORIGINAL + bytes([n]), 0x80001), 1000.0 + n)
    recorder.write(copy_of(tmp_path, ORIGINAL, 0x80002), 2000.5)
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
    recorder = Recorder(tmp_path, ANALYZER_INTERFACE)
    recorder.write(copy_of(tmp_path, ORIGINAL, 0x80003), 1.0)
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
    assert index.count(path) == (1, len(ORIGINAL))  # its direction is not written yet either
    with open(directions_file(tmp_path, 0x80003), "ab") as directions:
        directions.write(b"e")
    assert index.count(path) == (2, 2 * len(ORIGINAL))
    assert [r.direction for r in index.records(path, 0, 2)[0]] == ["ingress", "egress"]


def test_recorder_stops_a_capture_at_its_limit_and_says_why(tmp_path):
    """The file never grows past the capture's limit; the recorder reports why it stopped,
    and other captures go on."""
    set_limits(tmp_path, 0x80004, limit_bytes=1024, min_free_bytes=0)
    recorder = Recorder(tmp_path, ANALYZER_INTERFACE)
    for n in range(40):
        recorder.write(copy_of(tmp_path, ORIGINAL, 0x80004), float(n))
        recorder.write(copy_of(tmp_path, ORIGINAL, 0x80005), float(n))
    recorder.flush()
    limited = capture_file(tmp_path, 0x80004)
    record = RECORD_HEADER.size + len(ORIGINAL)
    assert limited.stat().st_size == GLOBAL_HEADER + (1024 - GLOBAL_HEADER) // record * record
    assert stop_report(tmp_path, 0x80004) == {"reason": "limit reached (1024 bytes)",
                                               "bytes": limited.stat().st_size}
    assert PcapIndex().count(capture_file(tmp_path, 0x80005))[0] == 40
    assert stop_report(tmp_path, 0x80005) is None


def test_recorder_stops_below_the_disk_floor(tmp_path):
    """A capture whose disk has less free space than its floor records nothing more."""
    set_limits(tmp_path, 0x80006, limit_bytes=1 << 30, min_free_bytes=1 << 62)
    recorder = Recorder(tmp_path, ANALYZER_INTERFACE)
    recorder.write(copy_of(tmp_path, ORIGINAL, 0x80006), 1.0)
    recorder.write(copy_of(tmp_path, ORIGINAL, 0x80006), 2.0)
    recorder.flush()
    assert stop_report(tmp_path, 0x80006)["reason"].startswith("disk floor: ")
    assert "less than the floor of" in stop_report(tmp_path, 0x80006)["reason"]
    assert PcapIndex().count(capture_file(tmp_path, 0x80006)) == (0, 0)


def test_restarted_recorder_appends_after_cutting_a_half_written_record(tmp_path):
    """A recorder killed mid-record leaves a partial record; the next one cuts it off and
    appends, so the file stays a valid pcap holding every complete frame once."""
    first = Recorder(tmp_path, ANALYZER_INTERFACE)
    for n in range(3):
        first.write(copy_of(tmp_path, ORIGINAL + bytes([n]), 0x80007), 10.0 + n)
    first.flush()
    path = capture_file(tmp_path, 0x80007)
    with open(path, "ab") as pcap:  # what a kill -9 in the middle of a write leaves
        pcap.write(record_bytes(13.0, ORIGINAL + b"\xff")[:25])
    second = Recorder(tmp_path, ANALYZER_INTERFACE)
    for n in range(3, 5):
        second.write(copy_of(tmp_path, ORIGINAL + bytes([n]), 0x80007), 10.0 + n)
    second.flush()
    records, total = PcapIndex().records(path, 0, 10)
    assert total == 5 and [r.data[-1] for r in records] == [0, 1, 2, 3, 4]
    assert path.stat().st_size == GLOBAL_HEADER + 5 * (RECORD_HEADER.size + len(ORIGINAL) + 1)


def test_restarted_recorder_writes_the_header_of_a_file_it_was_killed_before_filling(tmp_path):
    """A file left empty (killed before its first flush) gets its header on the restart."""
    capture_file(tmp_path, 0x80008).touch()
    recorder = Recorder(tmp_path, ANALYZER_INTERFACE)
    recorder.write(copy_of(tmp_path, ORIGINAL, 0x80008), 1.0)
    recorder.flush()
    assert capture_file(tmp_path, 0x80008).read_bytes().startswith(PCAP_HEADER)
    assert PcapIndex().count(capture_file(tmp_path, 0x80008)) == (1, len(ORIGINAL))


def test_a_stopped_capture_stays_stopped_after_a_restart(tmp_path):
    """A restarted recorder does not resume a capture it stopped at its limit."""
    set_limits(tmp_path, 0x80009, limit_bytes=1024, min_free_bytes=0)
    first = Recorder(tmp_path, ANALYZER_INTERFACE)
    for n in range(40):
        first.write(copy_of(tmp_path, ORIGINAL, 0x80009), float(n))
    first.flush()
    size = capture_file(tmp_path, 0x80009).stat().st_size
    second = Recorder(tmp_path, ANALYZER_INTERFACE)
    second.write(copy_of(tmp_path, ORIGINAL, 0x80009), 99.0)
    second.flush()
    assert capture_file(tmp_path, 0x80009).stat().st_size == size


def _synthetic_pcap(path, count: int) -> None:
    with open(path, "wb") as pcap:
        pcap.write(PCAP_HEADER)
        pcap.write(b"".join(record_bytes(float(n), ORIGINAL + n.to_bytes(4, "big"))
                            for n in range(count)))


def test_index_pages_across_checkpoints(tmp_path):
    """Packets are read right wherever they sit between the sparse index's checkpoints."""
    path = tmp_path / "big.pcap"
    count = 3 * CHECKPOINT_EVERY + 7
    _synthetic_pcap(path, count)
    index = PcapIndex()
    assert index.count(path) == (count, count * (len(ORIGINAL) + 4))
    for after in (0, CHECKPOINT_EVERY - 2, CHECKPOINT_EVERY, 2 * CHECKPOINT_EVERY + 1, count - 3):
        records, total = index.records(path, after, 5)
        assert total == count
        assert [int.from_bytes(r.data[-4:], "big") for r in records] == list(range(after, min(after + 5, count)))
        assert records[0].time == float(after)
    assert index.records(path, count, 5) == ([], count)


def test_index_memory_does_not_grow_with_every_packet(tmp_path):
    """Indexing 200,000 packets keeps a few kilobytes, not an offset per packet."""
    path = tmp_path / "big.pcap"
    _synthetic_pcap(path, 200_000)
    index = PcapIndex()
    tracemalloc.start()
    index.count(path)
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    # Only what the index's own module keeps: other tests' background threads allocate too.
    kept = sum(stat.size for stat in snapshot.filter_traces(
        [tracemalloc.Filter(True, pcapfile.__file__)]).statistics("filename"))
    assert index.count(path)[0] == 200_000
    assert kept < 64 * 1024


def test_download_size_leaves_out_a_half_written_record(tmp_path):
    """A download serves the header and the complete records only: a valid pcap."""
    path = tmp_path / "growing.pcap"
    _synthetic_pcap(path, 3)
    complete = path.stat().st_size
    with open(path, "ab") as pcap:
        pcap.write(record_bytes(9.0, ORIGINAL)[:20])
    index = PcapIndex()
    assert index.complete_size(path) == complete
    assert b"".join(read_prefix(path, complete)) == path.read_bytes()[:complete]
    assert index.complete_size(tmp_path / "none.pcap") == 0


def test_pcap_files_are_little_endian_microsecond_pcap(tmp_path):
    """The file starts with the classic little-endian pcap header (magic a1b2c3d4 with
    microsecond timestamps, version 2.4, snaplen 65535, Ethernet), and scapy reads back each
    frame with its arrival time to the microsecond."""
    recorder = Recorder(tmp_path, ANALYZER_INTERFACE)
    recorder.write(copy_of(tmp_path, ORIGINAL, 0x80001), 1000.25)
    recorder.write(copy_of(tmp_path, ORIGINAL + b"\x01", 0x80001), 1700000000.123456)
    recorder.flush()
    path = capture_file(tmp_path, 0x80001)
    assert path.read_bytes()[:24] == bytes.fromhex(
        "d4c3b2a1" "0200" "0400" "00000000" "00000000" "ffff0000" "01000000")
    first, second = rdpcap(str(path))
    assert (first.time, bytes(first)) == (1000.25, ORIGINAL)
    assert (round(float(second.time), 6), bytes(second)) == (1700000000.123456, ORIGINAL + b"\x01")
    records, _ = PcapIndex().records(path, 0, 2)
    assert [r.time for r in records] == [1000.25, 1700000000.123456]


def test_a_nic_assisted_copy_is_recorded_by_its_vlan(tmp_path):
    """On a fabric analyzer: an overlay frame tagged with a NIC-assisted capture's VLAN is
    that capture's (its original frame, what the VM sent); another VLAN is not."""
    set_encapsulation(tmp_path, 0x80005, {"label": 0x80005, "analyzer_interface": "probe1-eth0",
                                          "nic_vlan": 100})
    recorder = Recorder(tmp_path, "probe1-eth0")
    outer = bytes.fromhex("02fa0000000202fa00000001")
    for vlan in (100, 200):
        recorder.write(outer + b"\x81\x00" + vlan.to_bytes(2, "big") + b"\x88\x47"
                       + (100 << 12 | 0x100 | 64).to_bytes(4, "big") + ORIGINAL, 1.0)
    recorder.flush()
    records, total = PcapIndex().records(capture_file(tmp_path, 0x80005), 0, 10)
    assert (total, records[0].data, records[0].direction) == (1, ORIGINAL, "ingress")


def test_the_api_serves_an_analyzers_raw_capture(client, service):
    """GET /api/analyzers/{name}/pcap: the raw capture's complete records (a pcap header alone
    before the first); 404 naming an unknown analyzer."""
    assert client.get("/api/analyzers/interface-packet-capture/pcap").content == PCAP_HEADER
    recorder = Recorder(service.captures_dir, ANALYZER_INTERFACE)
    recorder.write(ORIGINAL, 5.0)
    recorder.flush()
    response = client.get("/api/analyzers/interface-packet-capture/pcap")
    assert response.content == PCAP_HEADER + record_bytes(5.0, ORIGINAL)
    missing = client.get("/api/analyzers/nope/pcap")
    assert (missing.status_code, missing.json()["field"]) == (404, "name")


def test_the_vlan_tag_the_kernel_took_off_is_put_back():
    """The kernel hands an AF_PACKET socket a tagged frame without its tag, the tag in the
    auxiliary data: the recorder puts it back after the MAC addresses, as tcpdump does."""
    aux = struct.pack("IIIHHHH", 0x51, 60, 60, 0, 0, 100, 0x8100)
    tagged = with_vlan_tag(ORIGINAL, [(263, 8, aux)])
    assert tagged == ORIGINAL[:12] + bytes.fromhex("81000064") + ORIGINAL[12:]
    untagged_aux = struct.pack("IIIHHHH", 0x1, 60, 60, 0, 0, 0, 0)
    assert with_vlan_tag(ORIGINAL, [(263, 8, untagged_aux)]) == ORIGINAL
    assert with_vlan_tag(ORIGINAL, []) == ORIGINAL
