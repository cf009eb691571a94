"""Small builders shared by the unit tests: frames as mirrorlab.testing.flowsim dicts, topology texts."""
from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from mirrorlab.juniper import EGRESS, INGRESS, Encapsulation, Encapsulator
from mirrorlab.recorder import encapsulation_file, set_encapsulation
from mirrorlab.topology import Interface, Topology

BROADCAST = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"
IPV4, ARP, IPV6, MPLS = 0x0800, 0x0806, 0x86DD, 0x8847


def iface(topology: Topology, vm: str) -> Interface:
    """The first interface of VM `vm`."""
    return topology.vm(vm).interfaces[0]


def ip_frame(src: Interface, dst: Interface, payload: str = "hello", eth_dst: str | None = None) -> dict:
    """An IPv4 frame from `src` to `dst` (its Ethernet destination overridable)."""
    return {"eth_src": src.mac, "eth_dst": eth_dst or dst.mac, "eth_type": IPV4,
            "ip_src": str(src.ip), "ip_dst": str(dst.ip), "payload": payload}


def arp_request(src: Interface, target_ip) -> dict:
    """A broadcast ARP request from `src` asking for `target_ip`."""
    return {"eth_src": src.mac, "eth_dst": BROADCAST, "eth_type": ARP, "arp_op": 1,
            "arp_sha": src.mac, "arp_spa": str(src.ip), "arp_tha": ZERO_MAC,
            "arp_tpa": str(target_ip)}


def arp_reply_for(asker: Interface, owner: Interface) -> dict:
    """The ARP reply the vRouter should give `asker` about `owner`'s address."""
    return {"eth_src": owner.mac, "eth_dst": asker.mac, "eth_type": ARP, "arp_op": 2,
            "arp_sha": owner.mac, "arp_spa": str(owner.ip), "arp_tha": asker.mac,
            "arp_tpa": str(asker.ip)}


def multicast_frame(src: Interface, eth_dst: str = "33:33:ff:01:01:0c", payload: str = "ns") -> dict:
    """An IPv6 multicast frame (a neighbour solicitation by default) from `src`."""
    return {"eth_src": src.mac, "eth_dst": eth_dst, "eth_type": IPV6, "payload": payload}


def neighbour_solicitation(asking, target: str) -> dict:
    """A multicast neighbour solicitation from `asking` for `target`, with its source
    link-layer address option."""
    last = ipaddress.ip_address(target).packed[-3:]
    return {"eth_src": asking.mac, "eth_dst": "33:33:ff:" + ":".join(f"{b:02x}" for b in last),
            "eth_type": IPV6, "ipv6_src": str(asking.ip6),
            "ipv6_dst": str(ipaddress.ip_address("ff02::1:ff00:0") + int.from_bytes(last, "big")),
            "ip_proto": 58, "ip_ttl": 255, "icmpv6_type": 135, "icmpv6_code": 0,
            "ipv6_nd_target": target, "nd_options_type": 1, "nd_option_mac": asking.mac}


def broadcast_frame(src: Interface, payload: str = "bcast") -> dict:
    """An IPv4 broadcast frame from `src`."""
    return {"eth_src": src.mac, "eth_dst": BROADCAST, "eth_type": IPV4, "payload": payload}


def one_compute_text(vm_count: int, name: str = "many") -> str:
    """A topology with one compute node, one /22 network and `vm_count` VMs."""
    lines = [f"name: {name}", "computes: [compute1]", "networks:",
             "  - {name: blue, subnet: 10.1.0.0/22}", "vms:"]
    lines += [f"  - {{name: vm{n}, compute: compute1, network: blue}}" for n in range(1, vm_count + 1)]
    return "\n".join(lines) + "\n"


def by_port(deliveries) -> dict[str, list[dict]]:
    """Delivered packets grouped by vRouter port name, in delivery order."""
    grouped: dict[str, list[dict]] = {}
    for delivery in deliveries:
        grouped.setdefault(delivery.port_name, []).append(delivery.packet)
    return grouped


def overlay(frame: dict, label: int, source, target) -> dict:
    """`frame` as it crosses the fabric from compute node `source` to `target` under `label`."""
    return {"packet_type": "ethernet", "eth_src": source.fabric_mac, "eth_dst": target.fabric_mac,
            "eth_type": MPLS, "mpls_label": label, "inner": frame}


def received(deliveries) -> list[tuple[str, dict]]:
    """(port name, packet) of each delivery, ordered by port name (stable for equal names)."""
    return sorted(((d.port_name, d.packet) for d in deliveries), key=lambda item: item[0])


def mac_int(mac: str) -> int:
    """A MAC address as an integer."""
    return int(mac.replace(":", ""), 16)


def _as_value_mask(value):
    if isinstance(value, tuple):
        want, mask = value
        return (mac_int(want), mac_int(mask)) if isinstance(want, str) else (want, mask)
    if isinstance(value, str) and value.count(":") == 5:
        return mac_int(value), (1 << 48) - 1
    return value, None


def may_overlap(first, second) -> bool:
    """Whether some packet could match both flows' matches (fields absent from one are
    wildcards; prerequisites are ignored, which only makes this more cautious)."""
    theirs = dict(second.match)
    for field, value in first.match:
        if field not in theirs:
            continue
        (a, amask), (b, bmask) = _as_value_mask(value), _as_value_mask(theirs[field])
        if amask is None or bmask is None:
            if a != b:
                return False
        elif (a ^ b) & amask & bmask:
            return False
    return True


# The analyzer interface the recorder tests record on (the default analyzer of the unit tests'
# service is an1 too).
ANALYZER_INTERFACE = "an1-eth0"


def copy_of(directory: Path, frame: bytes, label: int, traffic_class: int = 0) -> bytes:
    """A mirrored copy of `frame` as it reaches the analyzer: the encapsulator's bytes for the
    capture carrying `label` (its direction: traffic class 0 sent by the VM, 1 delivered to it).
    Uses the controller's encapsulation file in `directory`, writing one (to ANALYZER_INTERFACE,
    mirror index label % 255) if there is none."""
    path = encapsulation_file(directory, label)
    if not path.exists():
        encapsulation = Encapsulation(eth_src="00:00:5e:00:01:00", eth_dst="02:00:0a:fa:02:03",
                                      ip_src="192.168.100.1", ip_dst="10.250.2.3", udp_port=8099,
                                      mirror_index=label % 255, vn="default-domain:default:blue")
        set_encapsulation(directory, label, {"label": label, "analyzer_interface": ANALYZER_INTERFACE,
                                             **encapsulation.to_dict()})
    encapsulation = Encapsulation.from_dict(json.loads(path.read_text()))
    return Encapsulator(encapsulation).build(frame, EGRESS if traffic_class else INGRESS)
