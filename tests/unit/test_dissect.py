"""The live view's dissector: frames built with scapy, the columns Wireshark would show."""
from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import (
    ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6MLReport2, ICMPv6ND_NA,
    ICMPv6ND_NS, ICMPv6ND_RS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6,
    IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from mirrorlab.controller.dissect import PacketSummary, summarize

MAC1, MAC2 = "02:00:0a:01:01:0b", "02:00:0a:01:01:0c"
IP1, IP2 = "10.1.1.11", "10.1.1.12"
IP6_1, IP6_2 = "fd00:1:1::b", "fd00:1:1::c"


def columns(packet) -> PacketSummary:
    """The dissector's columns for a scapy packet."""
    return summarize(bytes(packet))


def test_icmp_echo_request_and_reply():
    """Echo request and reply: addresses, id in hex, sequence number."""
    request = Ether(src=MAC1, dst=MAC2) / IP(src=IP1, dst=IP2) / ICMP(type=8, id=0x1234, seq=1)
    reply = Ether(src=MAC2, dst=MAC1) / IP(src=IP2, dst=IP1) / ICMP(type=0, id=0x1234, seq=1)
    assert columns(request) == PacketSummary(IP1, IP2, "ICMP", "Echo (ping) request id=0x1234, seq=1")
    assert columns(reply) == PacketSummary(IP2, IP1, "ICMP", "Echo (ping) reply id=0x1234, seq=1")


def test_icmp_errors_and_other_types():
    """ICMP errors are named by type and code; other types by number."""
    unreachable = (Ether(src=MAC1, dst=MAC2) / IP(src=IP2, dst=IP1) / ICMP(type=3, code=3)
                   / IPerror(src=IP1, dst=IP2) / UDPerror(sport=1, dport=2))
    expired = Ether(src=MAC1, dst=MAC2) / IP(src=IP2, dst=IP1) / ICMP(type=11, code=0)
    other = Ether(src=MAC1, dst=MAC2) / IP(src=IP2, dst=IP1) / ICMP(type=13, code=0)
    assert columns(unreachable).summary == "Destination unreachable (Port unreachable)"
    assert columns(expired).summary == "Time-to-live exceeded (Time to live exceeded in transit)"
    assert columns(other).summary == "ICMP type 13, code 0"


def test_arp_request_reply_and_gratuitous():
    """ARP shows MACs (broadcast by name) and Wireshark's sentences."""
    request = Ether(src=MAC1, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=MAC1, psrc=IP1, pdst=IP2)
    reply = Ether(src=MAC2, dst=MAC1) / ARP(op=2, hwsrc=MAC2, psrc=IP2, hwdst=MAC1, pdst=IP1)
    gratuitous = Ether(src=MAC1, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=MAC1, psrc=IP1, pdst=IP1)
    assert columns(request) == PacketSummary(MAC1, "Broadcast", "ARP", f"Who has {IP2}? Tell {IP1}")
    assert columns(reply) == PacketSummary(MAC2, MAC1, "ARP", f"{IP2} is at {MAC2}")
    assert columns(gratuitous).summary == f"Gratuitous ARP for {IP1} (Request)"


def test_tcp_flags_ports_and_payload_length():
    """TCP: ports, flags, sequence, ack only with ACK, window, payload length."""
    syn = Ether(src=MAC1, dst=MAC2) / IP(src=IP1, dst=IP2) / TCP(sport=43512, dport=5201, flags="S", seq=1000,
                                               window=64240)
    syn_ack = Ether(src=MAC1, dst=MAC2) / IP(src=IP2, dst=IP1) / TCP(sport=5201, dport=43512, flags="SA", seq=7,
                                                   ack=1001, window=65160)
    data = Ether(src=MAC1, dst=MAC2) / IP(src=IP1, dst=IP2) / TCP(sport=43512, dport=5201, flags="PA", seq=1001,
                                                ack=8, window=502) / Raw(b"x" * 37)
    assert columns(syn) == PacketSummary(IP1, IP2, "TCP", "43512 \u2192 5201 [SYN] Seq=1000 Win=64240 Len=0")
    assert columns(syn_ack).summary == "5201 \u2192 43512 [SYN, ACK] Seq=7 Ack=1001 Win=65160 Len=0"
    assert columns(data).summary == "43512 \u2192 5201 [PSH, ACK] Seq=1001 Ack=8 Win=502 Len=37"


def test_tcp_length_ignores_ethernet_padding():
    """A SYN padded to the 60-byte minimum carries no payload: IPv4's total length says so."""
    syn = Ether(src=MAC1, dst=MAC2) / IP(src=IP1, dst=IP2) / TCP(sport=43512, dport=5201, flags="S",
                                                                  seq=1000, window=64240)
    frame = bytes(syn) + b"\x00" * (60 - len(syn))
    assert len(frame) == 60
    assert summarize(frame).summary == "43512 \u2192 5201 [SYN] Seq=1000 Win=64240 Len=0"


def test_tcp_all_flags_in_wireshark_order():
    """Every flag, in the order Wireshark lists them."""
    segment = Ether(src=MAC1, dst=MAC2) / IP(src=IP1, dst=IP2) / TCP(sport=1, dport=2, flags="FSRPAUEC", seq=0, ack=0,
                                                   window=0)
    assert columns(segment).summary == \
        "1 \u2192 2 [FIN, SYN, RST, PSH, ACK, URG, ECE, CWR] Seq=0 Ack=0 Win=0 Len=0"


def test_udp_ports_and_length_ignore_ethernet_padding():
    """UDP length comes from its header, not from the padded frame."""
    datagram = Ether(src=MAC1, dst=MAC2) / IP(src=IP1, dst=IP2) / UDP(sport=40000, dport=7000) / Raw(b"hello-udp\n")
    frame = bytes(datagram) + b"\x00" * 8  # padded to the 60-byte minimum, as on the wire
    assert summarize(frame) == PacketSummary(IP1, IP2, "UDP", "40000 \u2192 7000 Len=10")


def test_ipv6_echo_and_neighbour_discovery():
    """ICMPv6 echo, neighbour solicitation and advertisement with link-layer options."""
    request = Ether(src=MAC1, dst=MAC2) / IPv6(src=IP6_1, dst=IP6_2) / ICMPv6EchoRequest(id=0x2a, seq=3)
    reply = Ether(src=MAC1, dst=MAC2) / IPv6(src=IP6_2, dst=IP6_1) / ICMPv6EchoReply(id=0x2a, seq=3)
    solicitation = (Ether(src=MAC1, dst=MAC2) / IPv6(src=IP6_1, dst="ff02::1:ff00:c") / ICMPv6ND_NS(tgt=IP6_2)
                    / ICMPv6NDOptSrcLLAddr(lladdr=MAC1))
    advertisement = (Ether(src=MAC1, dst=MAC2) / IPv6(src=IP6_2, dst=IP6_1) / ICMPv6ND_NA(tgt=IP6_2, R=0, S=1, O=1)
                     / ICMPv6NDOptDstLLAddr(lladdr=MAC2))
    router = Ether(src=MAC1, dst=MAC2) / IPv6(src="fe80::1", dst="ff02::2") / ICMPv6ND_RS()
    assert columns(request) == PacketSummary(IP6_1, IP6_2, "ICMPv6", "Echo (ping) request id=0x002a, seq=3")
    assert columns(reply).summary == "Echo (ping) reply id=0x002a, seq=3"
    assert columns(solicitation) == PacketSummary(IP6_1, "ff02::1:ff00:c", "ICMPv6",
                                                  f"Neighbor Solicitation for {IP6_2} from {MAC1}")
    assert columns(advertisement).summary == f"Neighbor Advertisement {IP6_2} (sol, ovr) is at {MAC2}"
    assert columns(router).summary == "Router Solicitation"


@pytest.mark.parametrize("flags, shown", [
    ({"R": 0, "S": 1, "O": 0}, " (sol)"), ({"R": 0, "S": 0, "O": 1}, " (ovr)"),
    ({"R": 1, "S": 0, "O": 0}, " (rtr)"), ({"R": 0, "S": 0, "O": 0}, ""),
], ids=["solicited", "override", "router", "none"])
def test_neighbour_advertisement_flags_one_at_a_time(flags, shown):
    """Each of the R, S and O flags of a Neighbor Advertisement is shown under its own name."""
    advertisement = (Ether(src=MAC2, dst=MAC1) / IPv6(src=IP6_2, dst=IP6_1) / ICMPv6ND_NA(tgt=IP6_2, **flags)
                     / ICMPv6NDOptDstLLAddr(lladdr=MAC2))
    assert columns(advertisement).summary == f"Neighbor Advertisement {IP6_2}{shown} is at {MAC2}"


def test_ipv6_extension_headers_are_skipped():
    """Hop-by-hop and first fragments lead to the upper layer; later fragments are named."""
    report = (Ether(src=MAC1, dst=MAC2) / IPv6(src="fe80::b", dst="ff02::16") / IPv6ExtHdrHopByHop()
              / ICMPv6MLReport2())
    first_fragment = (Ether(src=MAC1, dst=MAC2) / IPv6(src=IP6_1, dst=IP6_2) / IPv6ExtHdrFragment(offset=0, m=1)
                      / UDP(sport=5, dport=6) / Raw(b"abc"))
    later_fragment = (Ether(src=MAC1, dst=MAC2) / IPv6(src=IP6_1, dst=IP6_2) / IPv6ExtHdrFragment(offset=10, nh=17)
                      / Raw(b"abc"))
    unreachable = Ether(src=MAC1, dst=MAC2) / IPv6(src=IP6_2, dst=IP6_1) / ICMPv6DestUnreach(code=4)
    assert columns(report) == PacketSummary("fe80::b", "ff02::16", "ICMPv6",
                                            "Multicast Listener Report Message v2")
    assert columns(first_fragment) == PacketSummary(IP6_1, IP6_2, "UDP", "5 \u2192 6 Len=3")
    assert columns(later_fragment) == PacketSummary(IP6_1, IP6_2, "IPv6", "IPv6 fragment (off=80, nxt=17)")
    assert columns(unreachable).summary == "Destination Unreachable (Port unreachable)"


def test_ipv4_fragment_and_other_protocols():
    """A non-first IPv4 fragment is named as such; other protocols by name or number."""
    fragment = Ether(src=MAC1, dst=MAC2) / IP(src=IP1, dst=IP2, id=0xbeef, frag=185, proto=1) / Raw(b"y" * 20)
    gre = Ether(src=MAC1, dst=MAC2) / IP(src=IP1, dst=IP2, proto=47) / Raw(b"\x00" * 4)
    unknown = Ether(src=MAC1, dst=MAC2) / IP(src=IP1, dst=IP2, proto=253) / Raw(b"\x00" * 4)
    assert columns(fragment) == PacketSummary(IP1, IP2, "IPv4", "Fragmented IP protocol "
                                                                "(proto=ICMP 1, off=1480, ID=beef)")
    assert columns(gre) == PacketSummary(IP1, IP2, "GRE", "GRE")
    assert columns(unknown) == PacketSummary(IP1, IP2, "IP", "IP protocol 253")


def test_vlan_tags_are_named_and_skipped():
    """802.1Q and QinQ tags are skipped and listed after the summary."""
    tagged = (Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=100) / IP(src=IP1, dst=IP2)
              / ICMP(type=8, id=1, seq=2))
    double = Ether(src=MAC1, dst=MAC2, type=0x88A8) / Dot1Q(vlan=10) / Dot1Q(vlan=20) / ARP(
        op=1, hwsrc=MAC1, psrc=IP1, pdst=IP2)
    assert columns(tagged) == PacketSummary(IP1, IP2, "ICMP",
                                            "Echo (ping) request id=0x0001, seq=2 (VLAN 100)")
    assert columns(double).summary == f"Who has {IP2}? Tell {IP1} (VLAN 10, 20)"


def test_unknown_ethertype_is_named_by_number():
    """An EtherType the dissector does not know is shown as a number."""
    lldp = Ether(src=MAC1, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x00" * 46)
    assert columns(lldp) == PacketSummary(MAC1, "01:80:c2:00:00:0e", "Ethernet", "Ethernet 0x88cc")


@pytest.mark.parametrize("frame, protocol, summary", [
    (b"\x00" * 10, "Ethernet", "Truncated Ethernet frame (10 bytes)"),
    (bytes(Ether(type=0x0800)) + b"\x45\x00", "IPv4", "Malformed IPv4 header"),
    (bytes(Ether(src=MAC1, dst=MAC2) / IP(src=IP1, dst=IP2, proto=6)) + b"\x00" * 6, "TCP", "Truncated TCP header"),
    (bytes(Ether(type=0x0806)) + b"\x00\x01", "ARP", "Truncated ARP packet"),
    (bytes(Ether(type=0x86DD)) + b"\x60" + b"\x00" * 10, "IPv6", "Malformed IPv6 header"),
    (bytes(Ether(type=0x8100)) + b"\x00", "802.1Q", "Truncated 802.1Q tag"),
])
def test_truncated_frames_are_named_not_raised(frame, protocol, summary):
    """Short headers give a summary saying so, never an exception."""
    result = summarize(frame)
    assert (result.protocol, result.summary) == (protocol, summary)
