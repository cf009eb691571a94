"""Packet details for the capture screen: one frame's decoded layers as a tree, by tshark.

Wireshark's dissectors know every protocol the lab emits (Ethernet, 802.1Q, MPLS, ARP, IPv4,
IPv6, ICMP, ICMPv6, TCP, UDP, VXLAN, Contrail's Juniper header over UDP 8099), so the frame is
handed to `tshark -T pdml`, and its PDML, the tree Wireshark's packet details pane shows with
each item's byte offset and length, is turned into plain JSON (`pdml_layers`, pure).
"""
from __future__ import annotations

import struct
import subprocess
import xml.etree.ElementTree as ElementTree

from mirrorlab.controller.errors import MirrorlabError
from mirrorlab.recorder import PCAP_HEADER

TSHARK = "tshark"
# Contrail's analyzers receive the Juniper header over UDP 8099; VXLAN's port is named so the
# decoding does not depend on the machine's Wireshark preferences.
DECODE_AS = ("-d", "udp.port==8099,juniper", "-d", "udp.port==4789,vxlan")
TSHARK_TIMEOUT_SECONDS = 20
# PDML wraps fields that belong to no protocol (trailing "Data") in this pseudo protocol.
FIELD_WRAPPER = "fake-field-wrapper"
# tshark's warning when run as root, which is not a failure.
ROOT_WARNING = "Running as user"


class DissectorFailed(MirrorlabError):
    """tshark is missing, failed, or said something that is not PDML (503)."""

    status = 503


def _number(element: ElementTree.Element, attribute: str) -> int | None:
    value = element.get(attribute)
    return int(value) if value is not None and value.isdigit() else None


def _node(element: ElementTree.Element) -> dict | None:
    """One PDML proto or field as {label, field, offset, length, children}; hidden ones: None."""
    if element.get("hide") == "yes":
        return None
    children = [node for node in (_node(child) for child in element) if node]
    offset, length = _number(element, "pos"), _number(element, "size")
    if offset is None or length is None:
        # A field without a position of its own (tshark's "data") spans its children's bytes.
        spans = [(c["offset"], c["offset"] + c["length"]) for c in children if c["length"]]
        offset, end = (min(s for s, _ in spans), max(e for _, e in spans)) if spans else (0, 0)
        length = end - offset
    name = element.get("name", "")
    label = element.get("showname") or element.get("show") or name
    if name == "data" and not element.get("showname"):
        label = f"Data ({length} bytes)"
    if not label and not children:
        return None
    return {"label": label, "field": name, "offset": offset, "length": length, "children": children}


def pdml_layers(pdml: str) -> list[dict]:
    """The layers of the first packet of tshark's PDML output, outermost first: each a node
    {label, field, offset, length, children}, where `label` is the line Wireshark shows,
    `field` the display filter field name (eth.src, icmp.type; "" for text items), and
    `offset`/`length` the bytes of the frame it was decoded from (length 0: none)."""
    try:
        root = ElementTree.fromstring(pdml)
    except ElementTree.ParseError as err:
        raise DissectorFailed(f"tshark's output is not valid PDML: {err}") from None
    packet = root.find("packet")
    if packet is None:
        raise DissectorFailed("tshark decoded no packet")
    layers = []
    for proto in packet.findall("proto"):
        name = proto.get("name")
        if name == "geninfo":
            continue
        if name == FIELD_WRAPPER:
            layers.extend(node for node in (_node(field) for field in proto) if node)
            continue
        node = _node(proto)
        if node:
            layers.append(node)
    return layers


def pcap_of(frame: bytes, time: float) -> bytes:
    """A pcap file holding the one Ethernet frame `frame`, captured at `time` (seconds)."""
    seconds = int(time)
    return PCAP_HEADER + struct.pack("<IIII", seconds, int(round((time - seconds) * 1e6)) % 1_000_000,
                                     len(frame), len(frame)) + frame


def dissect_frame(frame: bytes, time: float) -> list[dict]:
    """The decoded layers of one Ethernet frame (see `pdml_layers`), by tshark. Raises
    DissectorFailed, naming the reason, when tshark is missing or fails."""
    command = [TSHARK, "-r", "-", "-T", "pdml", *DECODE_AS]
    try:
        result = subprocess.run(command, input=pcap_of(frame, time), capture_output=True,
                                timeout=TSHARK_TIMEOUT_SECONDS)
    except FileNotFoundError:
        raise DissectorFailed("packet details need tshark, which is not installed "
                              "(apt-get install tshark)") from None
    except subprocess.TimeoutExpired:
        raise DissectorFailed(f"tshark did not decode the packet within "
                              f"{TSHARK_TIMEOUT_SECONDS} s") from None
    if result.returncode != 0:
        complaint = [line for line in result.stderr.decode(errors="replace").splitlines()
                     if line.strip() and not line.startswith(ROOT_WARNING)]
        raise DissectorFailed(f"tshark exited with status {result.returncode}: "
                              f"{complaint[-1] if complaint else 'no message'}")
    return pdml_layers(result.stdout.decode(errors="replace"))
