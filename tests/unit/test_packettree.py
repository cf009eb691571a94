"""Packet details: tshark's PDML as a tree of layers and fields with their bytes (real tshark)."""
from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from mirrorlab.controller import packettree
from mirrorlab.controller.packettree import DissectorFailed, dissect_frame, pdml_layers

MAC1, MAC2 = "02:00:0a:01:01:0b", "02:00:0a:01:01:0c"
PING = bytes(Ether(src=MAC1, dst=MAC2) / IP(src="10.1.1.11", dst="10.1.1.12")
             / ICMP(type=8, id=0x1234, seq=1) / Raw(b"abcdefgh"))


def find(nodes: list[dict], field: str) -> dict:
    """The first node of the tree named `field` (depth first)."""
    for node in nodes:
        if node["field"] == field:
            return node
        try:
            return find(node["children"], field)
        except KeyError:
            pass
    raise KeyError(field)


def test_icmp_echo_request_layers_fields_and_bytes():
    """Layers outermost first; each field's label is Wireshark's line and its offset and length
    point at the bytes it was decoded from; hidden fields are left out."""
    layers = dissect_frame(PING, 1000.5)
    assert [layer["field"] for layer in layers] == ["frame", "eth", "ip", "icmp"]
    icmp = layers[3]
    assert icmp["label"] == "Internet Control Message Protocol"
    assert (icmp["offset"], icmp["length"]) == (34, 16)
    kind = find(layers, "icmp.type")
    assert kind["label"] == "Type: 8 (Echo (ping) request)"
    assert PING[kind["offset"]:kind["offset"] + kind["length"]] == b"\x08"
    sequence = find(layers, "icmp.seq")
    assert sequence["label"] == "Sequence Number (BE): 1 (0x0001)"
    assert PING[sequence["offset"]:sequence["offset"] + sequence["length"]] == b"\x00\x01"
    source = find(layers, "ip.src")
    assert source["label"] == "Source Address: 10.1.1.11"
    assert PING[source["offset"]:source["offset"] + source["length"]] == bytes([10, 1, 1, 11])
    data = find(layers, "data")
    assert (data["label"], data["offset"], data["length"]) == ("Data (8 bytes)", 42, 8)
    with pytest.raises(KeyError):
        find(layers, "ip.src_host")  # hidden in Wireshark's tree
    assert find(layers, "eth.dst")["label"].startswith(f"Destination: {MAC2}")


def test_vxlan_and_the_juniper_header_decode():
    """VXLAN's inner frame and Contrail's Juniper header (UDP 8099) are decoded as layers."""
    vxlan = bytes(Ether() / IP() / UDP(sport=1, dport=4789) / VXLAN(vni=42) / Ether(src=MAC1, dst=MAC2)
                  / IP(src="10.1.1.11", dst="10.1.1.12") / ICMP())
    layers = [layer["field"] for layer in dissect_frame(vxlan, 0)]
    assert layers[:6] == ["frame", "eth", "ip", "udp", "vxlan", "eth"] and "icmp" in layers
    juniper = bytes(Ether() / IP() / UDP(sport=1, dport=8099) / Raw(b"MGC\x00\x00\x00\x00\x00") / PING)
    labels = [layer["label"] for layer in dissect_frame(juniper, 0)]
    assert labels[4] == "Juniper Virtual Network Information"


def test_pdml_that_is_not_pdml_is_a_clear_error():
    """Output that is not PDML, or without a packet, is refused with a reason."""
    with pytest.raises(DissectorFailed, match="not valid PDML"):
        pdml_layers("<pdml><packet>")
    with pytest.raises(DissectorFailed, match="decoded no packet"):
        pdml_layers("<pdml></pdml>")


def test_missing_or_failing_tshark_is_a_503_naming_the_reason(monkeypatch):
    """Without tshark the details say to install it; a tshark that fails is quoted."""
    monkeypatch.setattr(packettree, "TSHARK", "/nonexistent/tshark")
    with pytest.raises(DissectorFailed, match="need tshark, which is not installed") as missing:
        dissect_frame(PING, 0)
    assert missing.value.status == 503
    monkeypatch.setattr(packettree, "TSHARK", "false")
    with pytest.raises(DissectorFailed, match="tshark exited with status 1"):
        dissect_frame(PING, 0)
