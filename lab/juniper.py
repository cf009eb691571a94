"""Contrail's mirror wire format, dynamic with the Juniper header: building it (the lab's mirror
encapsulator) and reading it (the analyzer's recorder). Pure functions on bytes, no I/O.

A copy is an IPv4/UDP packet to the analyzer's address and `udp_port` (8099 by default). Its
payload is Contrail's TLV list (1 byte type, 1 byte length, value), ended by type 255, then the
original Ethernet frame byte for byte. Interface mirroring writes one TLV: type 3 (source VN)
on a copy of what the monitored VM sent (ingress), type 4 (destination VN) on a copy of what was
delivered to it (egress). tshark decodes it with `-d udp.port==8099,juniper`
(`juniper.vn.src`, `juniper.vn.dst`, then the inner frame).

Outer addresses: the source is the vRouter that mirrored (its compute node's fabric address, as
Contrail's vRouter uses its own address), the destination the analyzer's. The UDP source port
is in 49152..65535 like Contrail's hash of the inner flow; here its top 8 bits below 0xC000 carry
the vRouter's mirror index of the capture and its low 6 bits the inner flow's hash, so the
recorder tells captures apart by (outer source address, mirror index) and one flow's copies
keep one source port.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

DEFAULT_UDP_PORT = 8099
VXLAN_PORT = 4789
TLV_SOURCE_VN = 3
TLV_DESTINATION_VN = 4
TLV_END = b"\xff\x00"
SOURCE_PORT_BASE = 0xC000  # 49152
FLOW_HASH_BITS = 6
MAX_MIRROR_INDEX = 0xFF
ETH_HEADER = 14
IPV4_HEADER = 20
UDP_HEADER = 8
OUTER_HEADERS = ETH_HEADER + IPV4_HEADER + UDP_HEADER
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
IPPROTO_TCP, IPPROTO_UDP = 6, 17
INGRESS, EGRESS = "ingress", "egress"
# Don't fragment; TTL 64.
_IP_FLAGS_FRAGMENT = 0x4000
_TTL = 64


def mirror_header(vn: str, direction: str) -> bytes:
    """The TLV list of a copy: the monitored network `vn` as source VN (type 3) on a copy of
    what the VM sent, as destination VN (type 4) on one of what was delivered to it; then the
    end TLV."""
    name = vn.encode()
    if len(name) > 255:
        raise ValueError(f"network name '{vn}' is longer than a TLV holds (255 bytes)")
    kind = TLV_SOURCE_VN if direction == INGRESS else TLV_DESTINATION_VN
    return bytes((kind, len(name))) + name + TLV_END


def flow_hash(frame: bytes) -> int:
    """A hash of the inner flow of Ethernet `frame`: its IPv4 or IPv6 addresses, protocol and
    TCP/UDP ports, or for anything else its MAC addresses and EtherType."""
    ether_type = int.from_bytes(frame[12:14], "big")
    if ether_type == ETH_P_IP and len(frame) >= 34:
        header_length = (frame[14] & 0x0F) * 4
        protocol = frame[23]
        key = frame[26:34] + bytes((protocol,))
        if protocol in (IPPROTO_TCP, IPPROTO_UDP):
            key += frame[14 + header_length:18 + header_length]
        return zlib.crc32(key)
    if ether_type == ETH_P_IPV6 and len(frame) >= 54:
        protocol = frame[20]
        key = frame[22:54] + bytes((protocol,))
        if protocol in (IPPROTO_TCP, IPPROTO_UDP):
            key += frame[54:58]
        return zlib.crc32(key)
    return zlib.crc32(frame[:14])


def source_port(mirror_index: int, frame: bytes) -> int:
    """The UDP source port of a copy of `frame` made for the capture in mirror slot
    `mirror_index` of its vRouter."""
    return SOURCE_PORT_BASE | mirror_index << FLOW_HASH_BITS | flow_hash(frame) & ((1 << FLOW_HASH_BITS) - 1)


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _ip_bytes(ip: str) -> bytes:
    return bytes(int(part) for part in ip.split("."))


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _sum16(data: bytes) -> int:
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


@dataclass(frozen=True)
class Encapsulation:
    """Where one capture's copies go: the Ethernet addresses towards the analyzer, the outer
    IPv4 source (the mirroring vRouter) and destination (the analyzer), the UDP port, the
    capture's mirror index on its vRouter, the monitored network's name, and whether the copies
    carry the Juniper header at all."""

    eth_src: str
    eth_dst: str
    ip_src: str
    ip_dst: str
    udp_port: int
    mirror_index: int
    vn: str
    # False: Contrail's dynamic mode without the header; the analyzer gets the original frame
    # itself (the encapsulator records it and hands it back unchanged).
    juniper_header: bool = True
    # Set: Contrail's static mode, the original frame in VXLAN with this VNI (to udp_port 4789).
    vni: int | None = None

    def to_dict(self) -> dict:
        """JSON-ready fields (what the controller writes for the encapsulator and recorder)."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> "Encapsulation":
        """The `Encapsulation` whose fields `data` holds (other keys are ignored); KeyError or
        TypeError for a malformed one."""
        return cls(**{name: data[name] for name in cls.__dataclass_fields__
                      if name in data or name not in ("juniper_header", "vni")})


def vxlan_header(vni: int) -> bytes:
    """The VXLAN header of network identifier `vni` (RFC 7348: flag I, the VNI)."""
    return struct.pack("!II", 0x08000000, vni << 8)


class Encapsulator:
    """Builds one capture's copies: the outer headers and the TLVs (or the VXLAN header, for a
    static destination) are made once per direction; each copy only gets its lengths, the
    IPv4 checksum and the UDP source port."""

    def __init__(self, encapsulation: Encapsulation):
        self.encapsulation = encapsulation
        ethernet = (_mac_bytes(encapsulation.eth_dst) + _mac_bytes(encapsulation.eth_src)
                    + ETH_P_IP.to_bytes(2, "big"))
        addresses = _ip_bytes(encapsulation.ip_src) + _ip_bytes(encapsulation.ip_dst)
        self._headers = {}
        for direction in (INGRESS, EGRESS):
            tlvs = (mirror_header(encapsulation.vn, direction) if encapsulation.vni is None
                    else vxlan_header(encapsulation.vni))
            # The IPv4 header without its total length and checksum; their sum is added per copy.
            constant = struct.pack("!BBHHHBBH", 0x45, 0, 0, 0, _IP_FLAGS_FRAGMENT, _TTL,
                                   IPPROTO_UDP, 0) + addresses
            self._headers[direction] = (ethernet, constant, _sum16(constant), tlvs)

    def build(self, frame: bytes, direction: str) -> bytes:
        """The copy of `frame` (made in `direction`) as it leaves for the analyzer."""
        ethernet, constant, partial, tlvs = self._headers[direction]
        udp_length = UDP_HEADER + len(tlvs) + len(frame)
        total_length = IPV4_HEADER + udp_length
        checksum = ~_fold(partial + total_length) & 0xFFFF
        ip_header = constant[:2] + total_length.to_bytes(2, "big") + constant[4:10] \
            + checksum.to_bytes(2, "big") + constant[12:]
        # UDP checksum 0: none, which IPv4 allows (and Contrail's copies are cheap to make too).
        udp_header = struct.pack("!HHHH", source_port(self.encapsulation.mirror_index, frame),
                                 self.encapsulation.udp_port, udp_length, 0)
        return b"".join((ethernet, ip_header, udp_header, tlvs, frame))


@dataclass(frozen=True)
class Copy:
    """A copy as an analyzer received it: who mirrored it (outer source address and mirror
    index), to which UDP port, in which direction, and the original frame."""

    ip_src: str
    mirror_index: int
    udp_port: int
    direction: str
    vn: str
    original: bytes


def parse_copy(frame: bytes) -> Copy | None:
    """The `Copy` that Ethernet `frame` carries, or None if it is no Juniper-header copy
    (not IPv4/UDP from a source port in 49152..65535, or no well-formed TLV list with a
    source or destination VN)."""
    if len(frame) < OUTER_HEADERS + 2 or frame[12:14] != b"\x08\x00" or frame[23] != IPPROTO_UDP:
        return None
    header_length = (frame[14] & 0x0F) * 4
    if header_length != IPV4_HEADER or int.from_bytes(frame[20:22], "big") & 0x3FFF:
        return None  # options or a fragment: never one of ours
    sport, dport = struct.unpack_from("!HH", frame, ETH_HEADER + IPV4_HEADER)
    if sport < SOURCE_PORT_BASE:
        return None
    offset, direction, vn = OUTER_HEADERS, None, None
    while offset + 2 <= len(frame):
        kind, length = frame[offset], frame[offset + 1]
        if kind == 0xFF:
            offset += 2
            break
        value = frame[offset + 2:offset + 2 + length]
        if len(value) != length:
            return None
        if kind in (TLV_SOURCE_VN, TLV_DESTINATION_VN):
            direction = INGRESS if kind == TLV_SOURCE_VN else EGRESS
            vn = value.decode(errors="replace")
        offset += 2 + length
    else:
        return None
    if direction is None or offset >= len(frame):
        return None
    ip_src = ".".join(str(b) for b in frame[26:30])
    return Copy(ip_src, (sport - SOURCE_PORT_BASE) >> FLOW_HASH_BITS, dport, direction, vn,
                frame[offset:])
