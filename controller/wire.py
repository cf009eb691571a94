"""What an analyzer receives from a capture, in words a trainee can act on. Pure: no I/O.

`analyzer_view` is the one place that describes a capture's wire format to people, for each of
Contrail's destinations (`mirror_to`, controller/mirrorto.py): the wrapper its copies arrive in
(the Juniper header over UDP, the original frames with no header, VXLAN to a VTEP on the fabric,
or the overlay frames a NIC-assisted mirror hands a fabric analyzer), the path they take
through the vRouters and the fabric, the tshark commands that decode them (from the pcap
download and on the receiving host's interface) and how ingress and egress copies differ. The
API puts it on every capture (`analyzer_view`), and the web UI only renders it: the capture
screen's "What the analyzer receives" panel and the copy path on the Topology page; the CLI's
`capture show` prints it.
"""
from __future__ import annotations

from mirrorlab.controller.mirroring import Capture, Direction, analyzers
from mirrorlab.juniper import FLOW_HASH_BITS, SOURCE_PORT_BASE
from mirrorlab.topology import Topology

VXLAN_PORT = 4789
# The columns every analyzer-side command ends with: the inner frame's addresses and summary.
INNER_COLUMNS = "-e _ws.col.Source -e _ws.col.Destination -e _ws.col.Info"


def pcap_download_name(capture: Capture, file_format: str = "pcapng") -> str:
    """The file name a capture's pcap download is saved under ("pcapng" or "pcap")."""
    return f"capture-{capture.id}-{capture.interface}.{file_format}"


def destination_mode(capture: Capture) -> str:
    """Which of Contrail's wire formats the capture's copies take: "juniper" (dynamic with the
    Juniper header, the default), "original" (dynamic without it), "vxlan" (static) or
    "nic-vlan" (NIC-assisted)."""
    mirror_to = capture.mirror_to
    if mirror_to.nic_assisted_mirroring:
        return "nic-vlan"
    if mirror_to.nh_mode == "static":
        return "vxlan"
    return "juniper" if mirror_to.juniper_header else "original"


def destination_text(capture: Capture) -> str:
    """The capture's destination in a few words: address and UDP port, VNI and VTEP, VLAN."""
    mirror_to = capture.mirror_to
    mode = destination_mode(capture)
    if mode == "nic-vlan":
        return (f"NIC-assisted VLAN {mirror_to.nic_assisted_mirroring_vlan} to {capture.analyzer} "
                f"{mirror_to.analyzer_ip_address}")
    if mode == "vxlan":
        static = mirror_to.static_nh_header
        return f"static VXLAN {static.vni} to {static.vtep_dst_ip_address}"
    if mode == "juniper":
        return f"{mirror_to.analyzer_ip_address} udp {mirror_to.udp_port}, Juniper header"
    return f"{mirror_to.analyzer_ip_address}, original frames, no header"


def copy_path(capture: Capture, topology: Topology) -> list[dict]:
    """The hops a capture's copies take, each {"kind": vm|vrouter|fabric|analyzer|fabric_analyzer,
    "name": ...}: the monitored VM, its vRouter, then for an analyzer VM the fabric and the
    analyzer's vRouter when it is on another compute node and the analyzer VM; for a fabric
    analyzer (static VXLAN, NIC-assisted) the fabric and the fabric analyzer, a host on the
    fabric itself (with its "ip"). The path ends at the monitored VM's vRouter when its analyzer
    no longer exists (a stopped capture of a deleted analyzer)."""
    hops = []
    try:
        vm = topology.interface_by_port_name(capture.interface).vm
        hops.append({"kind": "vm", "name": vm, "compute": capture.compute})
    except KeyError:  # the monitored interface is gone (an analyzer VM deleted since)
        pass
    hops.append({"kind": "vrouter", "name": capture.compute})
    if topology.has("fabric_analyzer", capture.analyzer):
        probe = topology.fabric_analyzer(capture.analyzer)
        return hops + [{"kind": "fabric", "name": topology.fabric_bridge},
                       {"kind": "fabric_analyzer", "name": probe.name, "ip": str(probe.ip)}]
    analyzer = analyzers(topology).get(capture.analyzer)
    if analyzer is None:
        return hops
    if analyzer.compute != capture.compute:
        hops += [{"kind": "fabric", "name": topology.fabric_bridge},
                 {"kind": "vrouter", "name": analyzer.compute}]
    hops.append({"kind": "analyzer", "name": analyzer.name, "analyzer": capture.analyzer,
                 "compute": analyzer.compute})
    return hops


def _hop_text(hop: dict) -> str:
    """One hop of a copy path in words."""
    return {"vm": lambda: hop["name"], "vrouter": lambda: f"vRouter {hop['name']}",
            "fabric": lambda: f"fabric {hop['name']}",
            "analyzer": lambda: f"{hop['name']} (analyzer {hop.get('analyzer')})",
            "fabric_analyzer": lambda: f"{hop['name']} {hop['ip']} (fabric analyzer)"}[hop["kind"]]()


def _source_ports(capture: Capture) -> str:
    """The UDP source ports the capture's copies leave from (its mirror index's 64)."""
    first = SOURCE_PORT_BASE | capture.mirror_index << FLOW_HASH_BITS
    return f"{first}-{first + (1 << FLOW_HASH_BITS) - 1}"


def _copied(capture: Capture) -> str:
    return {Direction.BOTH: "This capture copies both.",
            Direction.INGRESS: "This capture copies ingress only.",
            Direction.EGRESS: "This capture copies egress only."}[capture.direction]


def _receiver(capture: Capture, topology: Topology) -> tuple[str, str, str, str] | None:
    """The host that receives the copies: its name (for `mirrorlab exec`), its interface, its
    MAC and what it is in words; None when the analyzer no longer exists."""
    if topology.has("fabric_analyzer", capture.analyzer):
        probe = topology.fabric_analyzer(capture.analyzer)
        return probe.name, probe.interface, probe.mac, f"the fabric analyzer {probe.name}"
    analyzer = analyzers(topology).get(capture.analyzer)
    if analyzer is None:
        return None
    return (analyzer.name, analyzer.interfaces[0].name, analyzer.interfaces[0].mac,
            f"the analyzer VM {analyzer.name}")


def _by_mac(vm: str, mac: str) -> str:
    """How frames without a direction mark are told apart: by the monitored VM's MAC."""
    return (f"Nothing on the wire marks the direction: a frame from {vm}'s MAC {mac} is one it "
            f"sent (ingress), one to {mac} was delivered to it (egress); the pcap download has "
            f"each packet's direction (Outbound, Inbound).")


def _wire(capture: Capture, topology: Topology, vm: str, network: str, mac: str,
          receiver: tuple[str, str, str, str] | None) -> dict:
    """The mode's own part of `analyzer_view`: wrapper, tag, summary, the capture filter and
    the decoding options of the analyzer-side tshark command, and the direction line."""
    mirror_to = capture.mirror_to
    source = str(topology.fabric_ip(topology.compute(capture.compute)))
    mode = destination_mode(capture)
    if mode == "juniper":
        port = mirror_to.udp_port
        vn = ":".join(topology.network_fq_name(network))
        return {
            "wrapper_name": f"Juniper header over UDP {port}",
            "tag": (f"mirror index {capture.mirror_index} (UDP source ports "
                    f"{_source_ports(capture)} from {source}, vRouter {capture.compute})"),
            "tag_short": f"Juniper UDP {port}",
            "summary": (f"Each copy is an IPv4/UDP packet from {source} (the fabric address of "
                        f"{capture.compute}, whose vRouter mirrored) to "
                        f"{mirror_to.analyzer_ip_address} port {port}: Contrail's Juniper header "
                        f"(the monitored network's fq-name), then {vm}'s frame byte for byte. The "
                        f"pcap download holds the original frames, each with its direction."),
            "filter": (f"udp dst port {port} and src host {source} and "
                       f"udp src portrange {_source_ports(capture)}"),
            "decode": f"-d udp.port=={port},juniper -T fields -e juniper.vn.src -e juniper.vn.dst",
            "directions": (f"Ingress = what {vm} sends (juniper.vn.src = {vn}; pcapng "
                           f"Outbound); egress = what is delivered to {vm} (juniper.vn.dst = "
                           f"{vn}; pcapng Inbound). {_copied(capture)}"),
        }
    if mode == "original":
        return {
            "wrapper_name": "original frames (no header)",
            "tag": f"to {mirror_to.analyzer_ip_address}, as on a SPAN port; nothing names the capture",
            "tag_short": "no header",
            "summary": (f"Each copy is {vm}'s frame itself, byte for byte, with its own MAC "
                        f"addresses (the analyzer's stack ignores it; a sniffer sees it). The pcap "
                        f"download holds the same frames, each with its direction."),
            # What the analyzer's own stack sends and receives is not a copy.
            "filter": f"not ether host {receiver[2]}" if receiver else "",
            "decode": "-T fields -e eth.src -e eth.dst",
            "directions": f"{_by_mac(vm, mac)} {_copied(capture)}",
        }
    if mode == "vxlan":
        vni = mirror_to.static_nh_header.vni
        vtep = mirror_to.static_nh_header.vtep_dst_ip_address
        return {
            "wrapper_name": f"VXLAN VNI {vni}",
            "tag": f"to {capture.analyzer} {vtep} (UDP {VXLAN_PORT} from {source}, vRouter {capture.compute})",
            "tag_short": f"VXLAN {vni}",
            "summary": (f"Each copy is {vm}'s frame in VXLAN with VNI {vni}, sent over the fabric "
                        f"from {source} (the fabric address of {capture.compute}) to the VTEP "
                        f"{vtep}, UDP port {VXLAN_PORT}. The pcap download holds the original "
                        f"frames, each with its direction."),
            "filter": (f"udp dst port {VXLAN_PORT} and src host {source} and "
                       f"udp src portrange {_source_ports(capture)}"),
            "decode": f"-d udp.port=={VXLAN_PORT},vxlan -T fields -e vxlan.vni",
            "directions": f"{_by_mac(vm, mac)} {_copied(capture)}",
        }
    vlan = mirror_to.nic_assisted_mirroring_vlan
    label = topology.network(network).label if topology.has("network", network) else "?"
    return {
        "wrapper_name": f"VLAN {vlan} tag, NIC-assisted",
        "tag": f"mirrored by the fabric to {capture.analyzer} {mirror_to.analyzer_ip_address}",
        "tag_short": f"NIC VLAN {vlan}",
        "summary": (f"The vRouter makes no copy: it tags what {vm} sends over the fabric with VLAN "
                    f"{vlan}, and the fabric mirrors the tagged frames to {capture.analyzer}. Each "
                    f"is the overlay frame itself: Ethernet between two compute nodes' fabric "
                    f"MACs, VLAN {vlan}, MPLS label {label} ({network}), then {vm}'s frame. The "
                    f"pcap download holds the original frames."),
        "filter": f"vlan {vlan}",
        "decode": f"-d mpls.label=={label},pwethnocw -T fields -e vlan.id -e mpls.label",
        "directions": (f"Ingress only, and only to other compute nodes: what {vm} sends to VMs of "
                       f"other compute nodes (pcapng Outbound). What is delivered to {vm}, and "
                       f"traffic between VMs of {capture.compute}, never reaches the NIC and is "
                       f"not mirrored, whatever the capture's direction ({capture.direction.value})."),
    }


def analyzer_view(capture: Capture, topology: Topology) -> dict:
    """What the analyzer of `capture` receives, for the capture screen, the Topology page and
    the CLI:

    - `wrapper`: the wire format's id (`destination_mode`: juniper, original, vxlan, nic-vlan),
      `wrapper_name` and `tag` (what marks this capture's copies: its mirror index and source
      ports, VNI and VTEP, VLAN...), `tag_short` (the Topology page's label on the copy path);
    - `destination`: where the copies go, in a few words (`destination_text`);
    - `summary`: one sentence on what a copy looks like and what the pcap download holds;
    - `pcap_file`: the name the pcapng download is saved under, and `tshark_pcap` a tshark
      command reading it, with each packet's direction;
    - `tshark_analyzer`: a tshark command run on the receiving host's interface (inside the
      analyzer VM, or on the fabric analyzer, through `mirrorlab exec`), decoding what arrives
      and printing one line per copy, and `receiver` that host in words (both None when the
      analyzer no longer exists);
    - `directions`: one line on ingress and egress;
    - `path`: the hops of the copies (`copy_path`), and `path_text` the same in words."""
    path = copy_path(capture, topology)
    try:
        monitored = topology.interface_by_port_name(capture.interface)
        vm, network, mac = monitored.vm, monitored.network, monitored.mac
    except KeyError:
        vm, network, mac = capture.interface, capture.mirror_to.routing_instance, "?"
    receiver = _receiver(capture, topology)
    wire = _wire(capture, topology, vm, network, mac, receiver)
    on_analyzer = None
    if receiver is not None:
        on_analyzer = (f"mirrorlab exec {receiver[0]} -- tshark -l -i {receiver[1]} "
                       f"-f '{wire['filter']}' {wire['decode']} {INNER_COLUMNS}")
    return {
        "wrapper": destination_mode(capture),
        "wrapper_name": wire["wrapper_name"],
        "tag": wire["tag"],
        "tag_short": wire["tag_short"],
        "destination": destination_text(capture),
        "summary": wire["summary"],
        "pcap_file": pcap_download_name(capture),
        "tshark_pcap": (f"tshark -r {pcap_download_name(capture)} -T fields -e frame.number "
                        f"-e frame.packet_flags_direction {INNER_COLUMNS}"),
        "tshark_analyzer": on_analyzer,
        "receiver": receiver[3] if receiver else None,
        "directions": wire["directions"],
        "path": path,
        "path_text": " \u2192 ".join(_hop_text(hop) for hop in path),
    }
