"""The capture screen's display filter: parsing, errors naming the bad word, and matching."""
from __future__ import annotations

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from mirrorlab.controller.displayfilter import (
    And, FilterError, Host, Not, Or, Port, Protocol, filter_matches, packet_facts, parse_filter,
)

MAC1, MAC2 = "02:00:0a:01:01:0b", "02:00:0a:01:01:0c"
IP1, IP2, IP3 = "10.1.1.11", "10.1.1.12", "10.1.1.13"
FABRIC1, FABRIC2 = "02:00:c0:a8:64:01", "02:00:c0:a8:64:02"

PING = bytes(Ether(src=MAC1, dst=MAC2) / IP(src=IP1, dst=IP2) / ICMP(id=1, seq=1))
HTTP = bytes(Ether(src=MAC1, dst=MAC2) / IP(src=IP1, dst=IP3) / TCP(sport=40000, dport=80))
DNS = bytes(Ether(src=MAC2, dst=MAC1) / IP(src=IP2, dst=IP1) / UDP(sport=53, dport=33000))
WHO_HAS = bytes(Ether(src=MAC1, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=IP1, pdst=IP2, hwsrc=MAC1))
PING6 = bytes(Ether(src=MAC1, dst=MAC2) / IPv6(src="fd00:1:1::b", dst="fd00:1:1::c") / ICMPv6EchoRequest())
TAGGED = bytes(Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=7) / IP(src=IP1, dst=IP2) / ICMP())
OVER_VXLAN = bytes(Ether(src=FABRIC1, dst=FABRIC2) / IP(src="192.168.100.1", dst="192.168.100.2") / UDP(sport=5000, dport=4789)
                   / VXLAN(vni=9) / Ether(src=MAC1, dst=MAC2) / IP(src=IP1, dst=IP3) / TCP(dport=22))
OVER_MPLS = bytes(Ether(src=FABRIC1, dst=FABRIC2, type=0x8847) / MPLS(label=100, s=1) / Ether(src=MAC1, dst=MAC2)
                  / IP(src=IP1, dst=IP2) / UDP(sport=1, dport=2))
JUNIPER = bytes(Ether(src=FABRIC1, dst=FABRIC2) / IP(src="10.250.2.3", dst="10.250.2.4") / UDP(sport=1234, dport=8099)
                / Raw(b"MGC\x00" + bytes(20)))
FRAMES = {"ping": PING, "http": HTTP, "dns": DNS, "arp": WHO_HAS, "ping6": PING6, "tagged": TAGGED,
          "vxlan": OVER_VXLAN, "mpls": OVER_MPLS, "juniper": JUNIPER}


def matching(text: str) -> set[str]:
    """Names of the sample frames that `text` matches."""
    display_filter = parse_filter(text)
    return {name for name, frame in FRAMES.items() if filter_matches(display_filter, frame)}


def test_parse_builds_the_expected_terms():
    """Operators bind as usual (not, and, or), terms side by side mean and, case does not matter."""
    assert parse_filter("icmp and host 10.1.1.12") == And(Protocol("icmp"), Host(IP2))
    assert parse_filter("tcp port 80") == And(Protocol("tcp"), Port(80))
    assert parse_filter("arp or not udp and src port 53") == \
        Or(Protocol("arp"), And(Not(Protocol("udp")), Port(53, "src")))
    assert parse_filter("(arp || ip6) && !dst host FD00:1:1::C") == \
        And(Or(Protocol("arp"), Protocol("ip6")), Not(Host("fd00:1:1::c", "dst")))
    assert parse_filter("ETH HOST 02-00-0A-01-01-0B") == And(Protocol("eth"), Host(MAC1))
    assert parse_filter("   ") is None


def test_protocols_match_in_every_layer():
    """Each protocol name matches the frames that carry it, inner layers included."""
    assert matching("icmp") == {"ping", "tagged"}
    assert matching("icmpv6") == matching("ip6") == {"ping6"}
    assert matching("arp") == {"arp"}
    assert matching("tcp") == {"http", "vxlan"}
    assert matching("udp") == {"dns", "vxlan", "mpls", "juniper"}
    assert matching("vlan") == {"tagged"}
    assert matching("vxlan") == {"vxlan"}
    assert matching("mpls") == {"mpls"}
    assert matching("juniper") == {"juniper"}
    assert matching("eth") == set(FRAMES)
    assert matching("ip") == set(FRAMES) - {"arp", "ping6"}


def test_hosts_and_ports_with_and_without_a_side():
    """host/port match either side; src/dst only theirs; ARP addresses and inner headers count."""
    assert matching("host 10.1.1.12") == {"ping", "dns", "arp", "tagged", "mpls"}
    assert matching("src host 10.1.1.12") == {"dns"}
    assert matching("dst host 10.1.1.12") == {"ping", "arp", "tagged", "mpls"}
    assert matching("host 10.1.1.13") == {"http", "vxlan"}
    assert matching("icmp and host 10.1.1.12") == {"ping", "tagged"}
    assert matching("tcp port 80") == {"http"}
    assert matching("port 53") == matching("src port 53") == {"dns"}
    assert matching("dst port 53") == set()
    assert matching("dst host ff:ff:ff:ff:ff:ff") == {"arp"}
    assert matching("host fd00:1:1:0::c") == {"ping6"}
    assert matching("not (udp or icmp) and host 10.1.1.11") == {"http", "arp"}


def test_truncated_frames_match_on_what_was_read():
    """A frame cut inside its IP header still counts as Ethernet; nothing raises."""
    assert packet_facts(PING[:20]).protocols == {"eth"}
    assert packet_facts(b"\x00" * 5).protocols == frozenset()
    assert not filter_matches(parse_filter("icmp"), PING[:30])


@pytest.mark.parametrize("text, message", [
    ("tcpp", "bad filter: unknown word 'tcpp' at character 1 (protocols: eth, vlan, mpls, arp, ip, "
             "ip6, icmp, icmpv6, tcp, udp, vxlan, juniper; or host ADDRESS, port NUMBER, src, dst, "
             "and, or, not, parentheses)"),
    ("icmp and host", "bad filter: expected an address after 'host' at character 10, "
                      "found the end of the filter"),
    ("host 10.1.1.300", "bad filter: '10.1.1.300' at character 6 is not an IPv4, IPv6 or MAC address"),
    ("tcp port 70000", "bad filter: '70000' at character 10 is not a port (a number from 0 to 65535)"),
    ("port and", "bad filter: expected a port number after 'port' at character 1, "
                 "found 'and' at character 6"),
    ("src tcp", "bad filter: expected 'host' or 'port' after 'src' at character 1, "
                "found 'tcp' at character 5"),
    ("(icmp or arp", "bad filter: the '(' at character 1 is not closed"),
    ("icmp)", "bad filter: ')' at character 5 closes no '('"),
    ("icmp and", "bad filter: expected a term after 'and' at character 6, found the end of the filter"),
    ("or icmp", "bad filter: 'or' at character 1 needs a term before it"),
    ("icmp & arp", "bad filter: unexpected '&' at character 6 (write 'and', 'or', 'not', or && || !)"),
    ("not", "bad filter: expected a term after 'not' at character 1, found the end of the filter"),
    ("()", "bad filter: expected a term after '(' at character 1, found ')' at character 2"),
])
def test_bad_filters_name_the_bad_word_and_its_position(text, message):
    """Each refusal says what is wrong, which word, and where; it is a 400 on field 'filter'."""
    with pytest.raises(FilterError) as refused:
        parse_filter(text)
    assert refused.value.message == message
    assert (refused.value.status, refused.value.field) == (400, "filter")
