"""A small, pure packet dissector: the Source, Destination, Protocol and Info columns Wireshark
shows for a captured Ethernet frame, for the live view of a capture.

It knows Ethernet, 802.1Q, ARP, IPv4, IPv6 (with its common extension headers), ICMP, ICMPv6
(echo and neighbour discovery among others), TCP and UDP. Anything else is named by its
EtherType or IP protocol number. Truncated headers never raise: the summary says what is missing.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = (0x8100, 0x88A8)
ETHERTYPE_IPV6 = 0x86DD
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"

IP_PROTOCOL_NAMES = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 51: "AH",
                     58: "ICMPv6", 89: "OSPF", 112: "VRRP", 132: "SCTP"}
# IPv6 extension headers skipped on the way to the upper-layer protocol (fragment: 44).
IPV6_HOP_BY_HOP, IPV6_ROUTING, IPV6_FRAGMENT, IPV6_DESTINATION_OPTIONS = 0, 43, 44, 60

ICMP_UNREACHABLE_CODES = {
    0: "Network unreachable", 1: "Host unreachable", 2: "Protocol unreachable",
    3: "Port unreachable", 4: "Fragmentation needed", 5: "Source route failed",
    9: "Network administratively prohibited", 10: "Host administratively prohibited",
    13: "Communication administratively filtered",
}
ICMPV6_UNREACHABLE_CODES = {
    0: "no route to destination", 1: "Communication with destination administratively prohibited",
    3: "Address unreachable", 4: "Port unreachable",
}
ICMPV6_NAMES = {133: "Router Solicitation", 134: "Router Advertisement", 137: "Redirect",
                130: "Multicast Listener Query", 131: "Multicast Listener Report",
                132: "Multicast Listener Done", 143: "Multicast Listener Report Message v2"}
# Wireshark's order of TCP flags in the Info column.
TCP_FLAGS = ((0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"),
             (0x20, "URG"), (0x40, "ECE"), (0x80, "CWR"))
NDP_SOURCE_LINK_LAYER, NDP_TARGET_LINK_LAYER = 1, 2


@dataclass(frozen=True)
class PacketSummary:
    """What Wireshark's packet list shows of one frame (without number, time and length)."""

    source: str
    destination: str
    protocol: str
    summary: str


def mac_text(raw: bytes) -> str:
    """A MAC address as colon-separated hex, or "Broadcast" as Wireshark names ff:ff:...:ff."""
    text = ":".join(f"{b:02x}" for b in raw)
    return "Broadcast" if text == BROADCAST_MAC else text


def summarize(frame: bytes) -> PacketSummary:
    """The Source, Destination, Protocol and Info columns of an Ethernet frame."""
    if len(frame) < 14:
        return PacketSummary("", "", "Ethernet", f"Truncated Ethernet frame ({len(frame)} bytes)")
    source, destination = mac_text(frame[6:12]), mac_text(frame[:6])
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    payload = frame[14:]
    vlans = []
    while ethertype in ETHERTYPE_VLAN:
        if len(payload) < 4:
            return PacketSummary(source, destination, "802.1Q", "Truncated 802.1Q tag")
        tci, ethertype = struct.unpack_from("!HH", payload)
        vlans.append(tci & 0x0FFF)
        payload = payload[4:]
    if ethertype == ETHERTYPE_ARP:
        result = _arp(source, destination, payload)
    elif ethertype == ETHERTYPE_IPV4:
        result = _ipv4(source, destination, payload)
    elif ethertype == ETHERTYPE_IPV6:
        result = _ipv6(source, destination, payload)
    else:
        result = PacketSummary(source, destination, "Ethernet", f"Ethernet 0x{ethertype:04x}")
    if vlans:
        tags = ", ".join(str(vlan) for vlan in vlans)
        result = PacketSummary(result.source, result.destination, result.protocol,
                               f"{result.summary} (VLAN {tags})")
    return result


def _arp(source: str, destination: str, packet: bytes) -> PacketSummary:
    if len(packet) < 28:
        return PacketSummary(source, destination, "ARP", "Truncated ARP packet")
    hardware, protocol, hardware_size, protocol_size, operation = struct.unpack_from("!HHBBH", packet)
    if (hardware, protocol, hardware_size, protocol_size) != (1, ETHERTYPE_IPV4, 6, 4):
        return PacketSummary(source, destination, "ARP", f"ARP for hardware type {hardware}, "
                                                         f"protocol 0x{protocol:04x}")
    sender_mac = mac_text(packet[8:14])
    sender_ip = ipaddress.IPv4Address(packet[14:18])
    target_ip = ipaddress.IPv4Address(packet[24:28])
    if operation == 1 and sender_ip == target_ip:
        summary = f"Gratuitous ARP for {sender_ip} (Request)"
    elif operation == 1:
        summary = f"Who has {target_ip}? Tell {sender_ip}"
    elif operation == 2:
        summary = f"{sender_ip} is at {sender_mac}"
    else:
        summary = f"ARP opcode {operation}"
    return PacketSummary(source, destination, "ARP", summary)


def _ipv4(source: str, destination: str, packet: bytes) -> PacketSummary:
    if len(packet) < 20 or packet[0] >> 4 != 4 or (packet[0] & 0x0F) < 5:
        return PacketSummary(source, destination, "IPv4", "Malformed IPv4 header")
    header_length = (packet[0] & 0x0F) * 4
    total_length, identification, fragment = struct.unpack_from("!HHH", packet, 2)
    protocol = packet[9]
    src, dst = str(ipaddress.IPv4Address(packet[12:16])), str(ipaddress.IPv4Address(packet[16:20]))
    offset = (fragment & 0x1FFF) * 8
    if offset:
        name = IP_PROTOCOL_NAMES.get(protocol, "unknown")
        return PacketSummary(src, dst, "IPv4", f"Fragmented IP protocol (proto={name} {protocol}, "
                                               f"off={offset}, ID={identification:04x})")
    end = min(len(packet), total_length) if total_length >= header_length else len(packet)
    return _transport(src, dst, protocol, packet[header_length:end])


def _ipv6(source: str, destination: str, packet: bytes) -> PacketSummary:
    if len(packet) < 40 or packet[0] >> 4 != 6:
        return PacketSummary(source, destination, "IPv6", "Malformed IPv6 header")
    payload_length, next_header = struct.unpack_from("!HB", packet, 4)
    src, dst = str(ipaddress.IPv6Address(packet[8:24])), str(ipaddress.IPv6Address(packet[24:40]))
    payload = packet[40:40 + payload_length]
    while next_header in (IPV6_HOP_BY_HOP, IPV6_ROUTING, IPV6_DESTINATION_OPTIONS, IPV6_FRAGMENT):
        if len(payload) < 8:
            return PacketSummary(src, dst, "IPv6", "Truncated IPv6 extension header")
        if next_header == IPV6_FRAGMENT:
            offset = struct.unpack_from("!H", payload, 2)[0] & 0xFFF8
            if offset:
                return PacketSummary(src, dst, "IPv6", f"IPv6 fragment (off={offset}, "
                                                       f"nxt={payload[0]})")
            next_header, payload = payload[0], payload[8:]
        else:
            next_header, payload = payload[0], payload[(payload[1] + 1) * 8:]
    return _transport(src, dst, next_header, payload)


def _transport(src: str, dst: str, protocol: int, payload: bytes) -> PacketSummary:
    if protocol == 1:
        return PacketSummary(src, dst, "ICMP", _icmp(payload))
    if protocol == 58:
        return PacketSummary(src, dst, "ICMPv6", _icmpv6(payload))
    if protocol == 6:
        return PacketSummary(src, dst, "TCP", _tcp(payload))
    if protocol == 17:
        return PacketSummary(src, dst, "UDP", _udp(payload))
    name = IP_PROTOCOL_NAMES.get(protocol)
    return PacketSummary(src, dst, name or "IP", name or f"IP protocol {protocol}")


def _echo(kind: str, payload: bytes) -> str:
    identifier, sequence = struct.unpack_from("!HH", payload, 4)
    return f"Echo (ping) {kind} id=0x{identifier:04x}, seq={sequence}"


def _icmp(payload: bytes) -> str:
    if len(payload) < 8:
        return "Truncated ICMP message"
    kind, code = payload[0], payload[1]
    if kind in (8, 0):
        return _echo("request" if kind == 8 else "reply", payload)
    if kind == 3:
        return f"Destination unreachable ({ICMP_UNREACHABLE_CODES.get(code, f'code {code}')})"
    if kind == 11:
        reason = "Time to live exceeded in transit" if code == 0 else "Fragment reassembly time exceeded"
        return f"Time-to-live exceeded ({reason})"
    if kind == 5:
        return "Redirect"
    return f"ICMP type {kind}, code {code}"


def _ndp_link_layer(options: bytes, wanted: int) -> str | None:
    while len(options) >= 8:
        kind, units = options[0], options[1]
        if units == 0:
            return None
        if kind == wanted:
            return mac_text(options[2:8])
        options = options[units * 8:]
    return None


def _icmpv6(payload: bytes) -> str:
    if len(payload) < 4:
        return "Truncated ICMPv6 message"
    kind, code = payload[0], payload[1]
    if kind in (128, 129) and len(payload) >= 8:
        return _echo("request" if kind == 128 else "reply", payload)
    if kind in (135, 136) and len(payload) >= 24:
        target = ipaddress.IPv6Address(payload[8:24])
        if kind == 135:
            sender = _ndp_link_layer(payload[24:], NDP_SOURCE_LINK_LAYER)
            return f"Neighbor Solicitation for {target}" + (f" from {sender}" if sender else "")
        flags = [name for bit, name in ((0x80, "rtr"), (0x40, "sol"), (0x20, "ovr"))
                 if payload[4] & bit]
        owner = _ndp_link_layer(payload[24:], NDP_TARGET_LINK_LAYER)
        return (f"Neighbor Advertisement {target}" + (f" ({', '.join(flags)})" if flags else "")
                + (f" is at {owner}" if owner else ""))
    if kind == 1:
        return f"Destination Unreachable ({ICMPV6_UNREACHABLE_CODES.get(code, f'code {code}')})"
    if kind == 2:
        return "Packet Too Big"
    if kind == 3:
        return "Time Exceeded (hop limit exceeded in transit)" if code == 0 else "Time Exceeded"
    if kind in ICMPV6_NAMES:
        return ICMPV6_NAMES[kind]
    return f"ICMPv6 type {kind}, code {code}"


def _tcp(segment: bytes) -> str:
    if len(segment) < 20:
        return "Truncated TCP header"
    source_port, destination_port, sequence, acknowledgement, offset, flags, window = \
        struct.unpack_from("!HHIIBBH", segment)
    header_length = (offset >> 4) * 4
    names = [name for bit, name in TCP_FLAGS if flags & bit]
    parts = [f"{source_port} \u2192 {destination_port}"]
    if names:
        parts.append(f"[{', '.join(names)}]")
    parts.append(f"Seq={sequence}")
    if flags & 0x10:
        parts.append(f"Ack={acknowledgement}")
    parts.append(f"Win={window}")
    parts.append(f"Len={max(0, len(segment) - header_length)}")
    return " ".join(parts)


def _udp(datagram: bytes) -> str:
    if len(datagram) < 8:
        return "Truncated UDP header"
    source_port, destination_port, length = struct.unpack_from("!HHH", datagram)
    return f"{source_port} \u2192 {destination_port} Len={max(0, length - 8)}"
