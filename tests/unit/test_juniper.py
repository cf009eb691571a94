"""Contrail's Juniper-header wire format as the mirror encapsulator builds it, with tshark as the
oracle: outer IPv4/UDP (valid checksum, port 8099 or the capture's), the source or destination
VN, the inner frame byte for byte; the source port's range and what it carries; the
encapsulator's loop on a real socket pair."""
from __future__ import annotations

import socket
import subprocess

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether

from mirrorlab.encapsulator import Counters, Encapsulators, drain
from mirrorlab.juniper import Encapsulation, Encapsulator, parse_copy, source_port
from mirrorlab.pcap import PCAP_HEADER, record_bytes
from mirrorlab.controller.pcapfile import PcapIndex
from mirrorlab.recorder import CaptureFiles, capture_file, set_encapsulation

INNER = bytes(Ether(src="02:00:0a:01:01:0b", dst="02:00:0a:01:01:0c")
              / IP(src="10.1.1.11", dst="10.1.1.12") / ICMP() / (b"x" * 100))
TO_ANALYZER = Encapsulation(eth_src="00:00:5e:00:01:00", eth_dst="02:00:0a:fa:02:03",
                            ip_src="192.168.100.1", ip_dst="10.250.2.3", udp_port=8099,
                            mirror_index=5, vn="default-domain:admin:blue")


def tshark_fields(tmp_path, frames: list[bytes], port: int, *fields: str) -> list[list[str]]:
    """tshark's values of `fields` for each frame, decoding UDP `port` as Juniper's header."""
    path = tmp_path / "copies.pcap"
    path.write_bytes(PCAP_HEADER + b"".join(record_bytes(1.0 + n, f) for n, f in enumerate(frames)))
    command = ["tshark", "-r", str(path), "-o", "ip.check_checksum:TRUE", "-d",
               f"udp.port=={port},juniper", "-T", "fields", "-E", "separator=|"]
    for name in fields:
        command += ["-e", name]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in output.splitlines()]


def test_tshark_decodes_source_vn_destination_vn_and_the_inner_frame(tmp_path):
    """A copy of what the VM sent carries juniper.vn.src, one of what it received
    juniper.vn.dst; outer addresses and ports as configured, a good IPv4 checksum, and the
    inner frame decoded after the header."""
    encapsulator = Encapsulator(TO_ANALYZER)
    frames = [encapsulator.build(INNER, "ingress"), encapsulator.build(INNER, "egress")]
    rows = tshark_fields(tmp_path, frames, 8099, "ip.src", "ip.dst", "ip.checksum.status",
                         "udp.dstport", "juniper.vn.src", "juniper.vn.dst", "icmp.type")
    vn = "default-domain:admin:blue"
    assert rows == [["192.168.100.1,10.1.1.11", "10.250.2.3,10.1.1.12", "1,1", "8099", vn, "", "8"],
                    ["192.168.100.1,10.1.1.11", "10.250.2.3,10.1.1.12", "1,1", "8099", "", vn, "8"]]
    assert all(parse_copy(f).original == INNER for f in frames)
    assert [parse_copy(f).direction for f in frames] == ["ingress", "egress"]


def test_an_ipv6_inner_frame_stays_ipv6(tmp_path):
    """The copy carries an IPv6 frame unchanged, EtherType included (a known fault of some
    Juniper-header implementations rewrites it to IPv4's): tshark decodes ICMPv6 inside."""
    inner = bytes(Ether(src="02:00:0a:01:01:0b", dst="00:00:5e:00:01:00")
                  / IPv6(src="fd00:1:1::b", dst="fd00:2:2::e") / ICMPv6EchoRequest())
    copy = Encapsulator(TO_ANALYZER).build(inner, "ingress")
    assert parse_copy(copy).original == inner
    assert tshark_fields(tmp_path, [copy], 8099, "eth.type", "ipv6.dst", "icmpv6.type") == [
        ["0x0800,0x86dd", "fd00:2:2::e", "128"]]


def test_a_custom_udp_port_decodes_the_same_way(tmp_path):
    """With udp_port 9000 the copies go to port 9000, and `-d udp.port==9000,juniper` decodes."""
    copy = Encapsulator(Encapsulation(**{**TO_ANALYZER.to_dict(), "udp_port": 9000})).build(
        INNER, "ingress")
    assert tshark_fields(tmp_path, [copy], 9000, "udp.dstport", "juniper.vn.src") == [
        ["9000", "default-domain:admin:blue"]]


def test_a_static_copy_is_vxlan_with_its_vni(tmp_path):
    """A static destination's copy: UDP 4789 with the VXLAN header of its VNI, the inner frame
    decoded by `-d udp.port==4789,vxlan`."""
    to_vtep = Encapsulation(eth_src="02:fa:00:00:00:01", eth_dst="02:fb:00:00:00:01",
                            ip_src="192.168.100.1", ip_dst="192.168.100.254", udp_port=4789,
                            mirror_index=3, vn="default-domain:admin:blue", juniper_header=False, vni=5000)
    copy = Encapsulator(to_vtep).build(INNER, "egress")
    assert tshark_fields(tmp_path, [copy], 8099, "ip.src", "ip.dst", "ip.checksum.status",
                         "udp.dstport", "vxlan.vni", "icmp.type") == [
        ["192.168.100.1,10.1.1.11", "192.168.100.254,10.1.1.12", "1,1", "4789", "5000", "8"]]
    assert copy[-len(INNER):] == INNER


def test_the_source_port_keeps_one_flow_and_carries_the_mirror_index():
    """49152..65535; one flow always gets one port; the top bits are the mirror index, so two
    captures of one vRouter never share a port; different flows spread over the low bits."""
    flows = [bytes(Ether() / IP(src="10.1.1.11", dst="10.1.1.12") / TCP(sport=port, dport=80))
             for port in range(1000, 1100)]
    for index in (0, 7, 254):
        ports = [source_port(index, flow) for flow in flows]
        assert all(49152 <= p <= 65535 and (p - 49152) >> 6 == index for p in ports)
        assert ports == [source_port(index, flow) for flow in flows]
        assert len(set(ports)) > 32


def test_the_encapsulator_loop_wraps_copies_from_the_vrouter(tmp_path):
    """On a socket pair standing for a vRouter's link: an MPLS copy of a known capture comes
    back as its Juniper-header copy (traffic class 1: destination VN); one of a header-less
    capture comes back as it went and is recorded in that capture's pcap, with its direction;
    a header-less policy copy ("record": false) comes back as it went, recorded nowhere; an
    unknown label and a frame that is no copy are counted and dropped."""
    label, headerless_label, policy_label = 0x80001, 0x80002, 0xC0001
    for each, header in ((label, True), (headerless_label, False)):
        set_encapsulation(tmp_path, each, {"label": each, "analyzer_interface": "an1-eth0",
                                           **TO_ANALYZER.to_dict(), "juniper_header": header})
    set_encapsulation(tmp_path, policy_label, {"label": policy_label, "analyzer_interface": None,
                                               "record": False, **TO_ANALYZER.to_dict(),
                                               "juniper_header": False})
    vrouter, encapsulator_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    encapsulator_end.setblocking(False)
    outer = bytes.fromhex("02fa0000000102fa00000001") + b"\x88\x47"

    def mpls_copy(copy_label: int, traffic_class: int) -> bytes:
        return outer + (copy_label << 12 | traffic_class << 9 | 0x100 | 64).to_bytes(4, "big") + INNER

    for copy_label, traffic_class in ((label, 1), (label + 9, 0), (headerless_label, 0),
                                      (policy_label, 1)):
        vrouter.send(mpls_copy(copy_label, traffic_class))
    vrouter.send(INNER)
    counters, headerless = Counters(), CaptureFiles(tmp_path)
    drain(encapsulator_end, Encapsulators(tmp_path), counters, headerless)
    headerless.flush()
    assert vrouter.recv(65535) == Encapsulator(TO_ANALYZER).build(INNER, "egress")
    assert vrouter.recv(65535) == mpls_copy(headerless_label, 0)
    assert vrouter.recv(65535) == mpls_copy(policy_label, 1)
    vrouter.setblocking(False)
    with pytest.raises(BlockingIOError):
        vrouter.recv(65535)
    assert {k: counters.values[k] for k in ("copies", "sent", "unknown_label", "not_a_copy")} == {
        "copies": 3, "sent": 3, "unknown_label": 1, "not_a_copy": 1}
    records, total = PcapIndex().records(capture_file(tmp_path, headerless_label), 0, 10)
    assert (total, records[0].data, records[0].direction) == (1, INNER, "ingress")
    assert not capture_file(tmp_path, label).exists()
    assert not capture_file(tmp_path, policy_label).exists()
