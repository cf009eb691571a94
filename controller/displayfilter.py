"""The capture screen's display filter: a small tcpdump-like language over captured frames. Pure.

    filter    := or
    or        := and {("or" | "||") and}
    and       := unary {["and" | "&&"] unary}        terms side by side mean "and"
    unary     := ("not" | "!") unary | "(" filter ")" | primitive
    primitive := PROTOCOL | [src | dst] host ADDRESS | [src | dst] port NUMBER

PROTOCOL is one of `PROTOCOLS`; ADDRESS an IPv4, IPv6 or MAC address; NUMBER a TCP or UDP port.
`host` matches an address anywhere in the frame (Ethernet, ARP, IP, and inside MPLS or VXLAN),
`src host`/`dst host` only where it is the source/destination. Examples: `icmp and host
10.1.1.12`, `tcp port 80`, `arp or icmpv6`, `not (udp and dst port 53)`.

`parse_filter` refuses a bad filter with a message naming the bad word and its position
(counted from 1); `packet_facts` extracts what a filter looks at from a frame.
"""
from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

from mirrorlab.controller.errors import InvalidRequest

PROTOCOLS = ("eth", "vlan", "mpls", "arp", "ip", "ip6", "icmp", "icmpv6", "tcp", "udp",
             "vxlan", "juniper")
ETHERTYPE_IPV4, ETHERTYPE_ARP, ETHERTYPE_IPV6 = 0x0800, 0x0806, 0x86DD
ETHERTYPE_VLANS = (0x8100, 0x88A8)
ETHERTYPE_MPLS = (0x8847, 0x8848)
VXLAN_PORT, JUNIPER_PORT = 4789, 8099
IPV6_EXTENSIONS = (0, 43, 60)  # hop-by-hop, routing, destination options (fragment: 44)
IPV6_FRAGMENT = 44
# Encapsulations decoded one inside another at most this deep (a crafted frame cannot loop).
MAX_NESTING = 4


class FilterError(InvalidRequest):
    """A display filter that does not parse (400, field "filter")."""

    def __init__(self, message: str):
        super().__init__(f"bad filter: {message}", "filter")


# --- what a filter looks at ----------------------------------------------------------------------

@dataclass(frozen=True)
class PacketFacts:
    """What a display filter can test of one frame: its protocols, and its addresses and ports
    as sources and destinations (of every layer, outer and inner)."""

    protocols: frozenset[str]
    source_addresses: frozenset[str]
    destination_addresses: frozenset[str]
    source_ports: frozenset[int]
    destination_ports: frozenset[int]


class _Facts:
    """PacketFacts being gathered."""

    def __init__(self):
        self.protocols, self.sources, self.destinations = set(), set(), set()
        self.source_ports, self.destination_ports = set(), set()

    def addresses(self, source, destination) -> None:
        self.sources.add(str(source))
        self.destinations.add(str(destination))

    def frozen(self) -> PacketFacts:
        return PacketFacts(frozenset(self.protocols), frozenset(self.sources),
                           frozenset(self.destinations), frozenset(self.source_ports),
                           frozenset(self.destination_ports))


def _mac(raw: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in raw)


def _ethernet(frame: bytes, facts: _Facts, depth: int) -> None:
    if len(frame) < 14 or depth > MAX_NESTING:
        return
    facts.protocols.add("eth")
    facts.addresses(_mac(frame[6:12]), _mac(frame[0:6]))
    ethertype, payload = struct.unpack_from("!H", frame, 12)[0], frame[14:]
    while ethertype in ETHERTYPE_VLANS and len(payload) >= 4:
        facts.protocols.add("vlan")
        ethertype, payload = struct.unpack_from("!H", payload, 2)[0], payload[4:]
    _ethertype(ethertype, payload, facts, depth)


def _ethertype(ethertype: int, payload: bytes, facts: _Facts, depth: int) -> None:
    if ethertype == ETHERTYPE_IPV4:
        _ipv4(payload, facts, depth)
    elif ethertype == ETHERTYPE_IPV6:
        _ipv6(payload, facts, depth)
    elif ethertype == ETHERTYPE_ARP:
        _arp(payload, facts)
    elif ethertype in ETHERTYPE_MPLS:
        _mpls(payload, facts, depth)


def _mpls(payload: bytes, facts: _Facts, depth: int) -> None:
    facts.protocols.add("mpls")
    while len(payload) >= 4:
        bottom = payload[2] & 0x01
        payload = payload[4:]
        if bottom:
            break
    if not payload:
        return
    # What follows the label stack is told by its first nibble: an IP header (4, 6), otherwise
    # an Ethernet frame without control word, as the lab's fabric carries it.
    version = payload[0] >> 4
    if version == 4:
        _ipv4(payload, facts, depth + 1)
    elif version == 6:
        _ipv6(payload, facts, depth + 1)
    else:
        _ethernet(payload, facts, depth + 1)


def _arp(packet: bytes, facts: _Facts) -> None:
    facts.protocols.add("arp")
    if len(packet) >= 28 and packet[4:6] == b"\x06\x04":
        facts.addresses(_mac(packet[8:14]), _mac(packet[18:24]))
        facts.addresses(ipaddress.IPv4Address(packet[14:18]), ipaddress.IPv4Address(packet[24:28]))


def _ipv4(packet: bytes, facts: _Facts, depth: int) -> None:
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return
    facts.protocols.add("ip")
    facts.addresses(ipaddress.IPv4Address(packet[12:16]), ipaddress.IPv4Address(packet[16:20]))
    if struct.unpack_from("!H", packet, 6)[0] & 0x1FFF:
        return  # a later fragment: no transport header
    _transport(packet[9], packet[(packet[0] & 0x0F) * 4:], facts, depth)


def _ipv6(packet: bytes, facts: _Facts, depth: int) -> None:
    if len(packet) < 40 or packet[0] >> 4 != 6:
        return
    facts.protocols.add("ip6")
    facts.addresses(ipaddress.IPv6Address(packet[8:24]), ipaddress.IPv6Address(packet[24:40]))
    next_header, payload = packet[6], packet[40:]
    while next_header in (*IPV6_EXTENSIONS, IPV6_FRAGMENT) and len(payload) >= 8:
        if next_header == IPV6_FRAGMENT:
            if struct.unpack_from("!H", payload, 2)[0] & 0xFFF8:
                return
            next_header, payload = payload[0], payload[8:]
        else:
            next_header, payload = payload[0], payload[(payload[1] + 1) * 8:]
    _transport(next_header, payload, facts, depth)


def _transport(protocol: int, payload: bytes, facts: _Facts, depth: int) -> None:
    if protocol == 1:
        facts.protocols.add("icmp")
    elif protocol == 58:
        facts.protocols.add("icmpv6")
    elif protocol in (6, 17) and len(payload) >= 4:
        facts.protocols.add("tcp" if protocol == 6 else "udp")
        source, destination = struct.unpack_from("!HH", payload)
        facts.source_ports.add(source)
        facts.destination_ports.add(destination)
        if protocol == 17 and len(payload) >= 8:
            if VXLAN_PORT in (source, destination) and len(payload) >= 16:
                facts.protocols.add("vxlan")
                _ethernet(payload[16:], facts, depth + 1)
            elif JUNIPER_PORT in (source, destination):
                facts.protocols.add("juniper")


def packet_facts(frame: bytes) -> PacketFacts:
    """What a display filter tests of the Ethernet frame `frame`; truncated headers end the
    walk without an error (the frame then matches on what was read)."""
    facts = _Facts()
    _ethernet(frame, facts, 0)
    return facts.frozen()


# --- the filter -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Protocol:
    """The frame has this protocol in some layer."""

    name: str

    def matches(self, facts: PacketFacts) -> bool:
        """Whether `facts` satisfy this term."""
        return self.name in facts.protocols


@dataclass(frozen=True)
class Host:
    """The frame has this address; `side` "src" or "dst" limits it to sources or destinations."""

    address: str
    side: str | None = None

    def matches(self, facts: PacketFacts) -> bool:
        """Whether `facts` satisfy this term."""
        return ((self.side != "dst" and self.address in facts.source_addresses)
                or (self.side != "src" and self.address in facts.destination_addresses))


@dataclass(frozen=True)
class Port:
    """The frame has this TCP or UDP port; `side` as for Host."""

    number: int
    side: str | None = None

    def matches(self, facts: PacketFacts) -> bool:
        """Whether `facts` satisfy this term."""
        return ((self.side != "dst" and self.number in facts.source_ports)
                or (self.side != "src" and self.number in facts.destination_ports))


@dataclass(frozen=True)
class Not:
    """The term does not hold."""

    term: "Filter"

    def matches(self, facts: PacketFacts) -> bool:
        """Whether `facts` satisfy this term."""
        return not self.term.matches(facts)


@dataclass(frozen=True)
class And:
    """Both terms hold."""

    left: "Filter"
    right: "Filter"

    def matches(self, facts: PacketFacts) -> bool:
        """Whether `facts` satisfy this term."""
        return self.left.matches(facts) and self.right.matches(facts)


@dataclass(frozen=True)
class Or:
    """Either term holds."""

    left: "Filter"
    right: "Filter"

    def matches(self, facts: PacketFacts) -> bool:
        """Whether `facts` satisfy this term."""
        return self.left.matches(facts) or self.right.matches(facts)


Filter = Protocol | Host | Port | Not | And | Or

TOKEN = re.compile(r"\s*(?:(?P<symbol>\(|\)|&&|\|\||!)|(?P<word>[^\s()!&|]+)|(?P<bad>\S))")
MAC_ADDRESS = re.compile(r"^[0-9a-f]{2}([:-])(?:[0-9a-f]{2}\1){4}[0-9a-f]{2}$")
AND_WORDS, OR_WORDS, NOT_WORDS = ("and", "&&"), ("or", "||"), ("not", "!")
KEYWORDS = (*AND_WORDS, *OR_WORDS, *NOT_WORDS, "host", "port", "src", "dst")


@dataclass(frozen=True)
class _Token:
    text: str
    position: int  # counted from 1, as people count characters


def _tokens(text: str) -> list[_Token]:
    tokens = []
    for found in TOKEN.finditer(text):
        if found.group("bad"):
            raise FilterError(f"unexpected '{found.group('bad')}' at character {found.start('bad') + 1} "
                              f"(write 'and', 'or', 'not', or && || !)")
        kind = "symbol" if found.group("symbol") else "word"
        tokens.append(_Token(found.group(kind), found.start(kind) + 1))
    return tokens


def _address(token: _Token) -> str:
    text = token.text.lower()
    if MAC_ADDRESS.match(text):
        return text.replace("-", ":")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise FilterError(f"'{token.text}' at character {token.position} is not an IPv4, IPv6 "
                          f"or MAC address") from None


def _port(token: _Token) -> int:
    if not token.text.isdigit() or int(token.text) > 65535:
        raise FilterError(f"'{token.text}' at character {token.position} is not a port "
                          f"(a number from 0 to 65535)")
    return int(token.text)


class _Parser:
    """Recursive descent over the tokens, one method per rule of the grammar above."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.next = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.next] if self.next < len(self.tokens) else None

    def take(self) -> _Token | None:
        token = self.peek()
        self.next += 1
        return token

    def expected(self, what: str, after: _Token) -> FilterError:
        found = self.peek()
        where = (f"found '{found.text}' at character {found.position}" if found
                 else "found the end of the filter")
        return FilterError(f"expected {what} after '{after.text}' at character {after.position}, {where}")

    def parse(self) -> Filter:
        term = self.disjunction()
        extra = self.peek()
        if extra is not None:
            if extra.text == ")":
                raise FilterError(f"')' at character {extra.position} closes no '('")
            raise FilterError(f"unexpected '{extra.text}' at character {extra.position}")
        return term

    def disjunction(self) -> Filter:
        term = self.conjunction()
        while self.peek() and self.peek().text.lower() in OR_WORDS:
            operator = self.take()
            if self.peek() is None or self.peek().text == ")":
                raise self.expected("a term", operator)
            term = Or(term, self.conjunction())
        return term

    def conjunction(self) -> Filter:
        term = self.unary()
        while self.peek() and self.peek().text != ")" and self.peek().text.lower() not in OR_WORDS:
            if self.peek().text.lower() in AND_WORDS:
                operator = self.take()
                if self.peek() is None or self.peek().text == ")":
                    raise self.expected("a term", operator)
            term = And(term, self.unary())
        return term

    def unary(self) -> Filter:
        token = self.take()
        if token is None:
            raise FilterError("the filter ends where a term was expected")
        word = token.text.lower()
        if word in NOT_WORDS:
            if self.peek() is None:
                raise self.expected("a term", token)
            return Not(self.unary())
        if word == "(":
            if self.peek() is None or self.peek().text == ")":
                raise self.expected("a term", token)
            term = self.disjunction()
            closing = self.take()
            if closing is None or closing.text != ")":
                raise FilterError(f"the '(' at character {token.position} is not closed")
            return term
        if word in ("src", "dst"):
            qualified = self.take()
            if qualified is None or qualified.text.lower() not in ("host", "port"):
                self.next -= 1
                raise self.expected("'host' or 'port'", token)
            return self.value(qualified, word)
        if word in ("host", "port"):
            return self.value(token, None)
        if word in PROTOCOLS:
            return Protocol(word)
        if word == ")":
            raise FilterError(f"')' at character {token.position} closes no '('")
        if word in KEYWORDS:
            raise FilterError(f"'{token.text}' at character {token.position} needs a term before it")
        raise FilterError(f"unknown word '{token.text}' at character {token.position} (protocols: "
                          f"{', '.join(PROTOCOLS)}; or host ADDRESS, port NUMBER, src, dst, "
                          f"and, or, not, parentheses)")

    def value(self, keyword: _Token, side: str | None) -> Filter:
        token = self.peek()
        if token is None or token.text in ("(", ")", "!", "&&", "||") or token.text.lower() in KEYWORDS:
            raise self.expected("an address" if keyword.text.lower() == "host" else "a port number",
                                keyword)
        self.take()
        if keyword.text.lower() == "host":
            return Host(_address(token), side)
        return Port(_port(token), side)


def parse_filter(text: str) -> Filter | None:
    """The filter `text` means, or None for a blank one (everything matches). Raises
    FilterError naming the bad word and its position."""
    if not text.strip():
        return None
    return _Parser(text).parse()


def filter_matches(display_filter: Filter | None, frame: bytes) -> bool:
    """Whether the Ethernet frame `frame` passes `display_filter` (None passes everything)."""
    return display_filter is None or display_filter.matches(packet_facts(frame))
