"""What an analyzer receives from a capture, in words a trainee can act on. Pure: no I/O.

`analyzer_view` is the one place that describes a capture's wire format to people: the wrapper
its copies travel in (today Ethernet-in-MPLS with label 0x80000 + capture id), the path they
take through the vRouters and the fabric, the tshark commands that decode them (from the pcap
download and on the analyzer VM's interface) and how ingress and egress copies differ. The API
puts it on every capture (`analyzer_view`), and the web UI only renders it: the capture screen's
"What the analyzer receives" panel and the copy path on the Topology page. Another wrapper (the
Juniper header over UDP, VXLAN...) extends this function, not the UI.
"""
from __future__ import annotations

from mirrorlab.controller.mirroring import CAPTURE_LABEL_BASE, Capture, Direction, analyzers
from mirrorlab.recorder import EGRESS_TC, INGRESS_TC
from mirrorlab.topology import Topology


def pcap_download_name(capture: Capture, file_format: str = "pcapng") -> str:
    """The file name a capture's pcap download is saved under ("pcapng" or "pcap")."""
    return f"capture-{capture.id}-{capture.interface}.{file_format}"


def copy_path(capture: Capture, topology: Topology) -> list[dict]:
    """The hops a capture's copies take: the monitored VM, its vRouter, the fabric when the
    analyzer is on another compute node, the analyzer's vRouter, the analyzer VM. Each hop is
    {"kind": vm|vrouter|fabric|analyzer, "name": ...}; the path ends at the monitored VM's
    vRouter when its analyzer no longer exists (a stopped capture of a deleted analyzer)."""
    hops = []
    try:
        vm = topology.interface_by_port_name(capture.interface).vm
        hops.append({"kind": "vm", "name": vm, "compute": capture.compute})
    except KeyError:  # the monitored interface is gone (an analyzer VM deleted since)
        pass
    hops.append({"kind": "vrouter", "name": capture.compute})
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
    return {"vm": hop["name"], "vrouter": f"vRouter {hop['name']}", "fabric": f"fabric {hop['name']}",
            "analyzer": f"{hop['name']} (analyzer {hop.get('analyzer')})"}[hop["kind"]]


def _directions_line(capture: Capture, vm: str) -> str:
    """One line on how ingress and egress copies are told apart, and which this capture makes."""
    copied = {Direction.BOTH: "This capture copies both.",
              Direction.INGRESS: "This capture copies ingress only.",
              Direction.EGRESS: "This capture copies egress only."}[capture.direction]
    return (f"Ingress = what {vm} sends (MPLS traffic class {INGRESS_TC}; pcapng Outbound); "
            f"egress = what is delivered to {vm} (traffic class {EGRESS_TC}; pcapng Inbound). {copied}")


def analyzer_view(capture: Capture, topology: Topology) -> dict:
    """What the analyzer of `capture` receives, for the capture screen and the Topology page:

    - `wrapper`: the wrapper's id ("mpls"), `wrapper_name` and `tag` (what marks this capture's
      copies: here the MPLS label), `tag_short` (the Topology page's label on the copy path);
    - `summary`: one sentence on what a copy looks like and what the pcap download holds;
    - `pcap_file`: the name the pcapng download is saved under, and `tshark_pcap` a tshark
      command reading it, with each packet's direction;
    - `tshark_analyzer`: a tshark command run inside the analyzer VM on its interface, decoding
      the wrapper (None when the analyzer no longer exists);
    - `directions`: one line on ingress and egress;
    - `path`: the hops of the copies (`copy_path`), and `path_text` the same in words."""
    label = capture.label
    path = copy_path(capture, topology)
    try:
        vm = topology.interface_by_port_name(capture.interface).vm
    except KeyError:
        vm = capture.interface
    analyzer = analyzers(topology).get(capture.analyzer)
    on_analyzer = None
    if analyzer is not None:
        on_analyzer = (f"mirrorlab exec {analyzer.name} -- tshark -i {analyzer.interfaces[0].name} "
                       f"-f 'mpls {label}' -d mpls.label=={label},pwethnocw "
                       f"-T fields -e mpls.exp -e _ws.col.Source -e _ws.col.Destination -e _ws.col.Info")
    return {
        "wrapper": "mpls",
        "wrapper_name": "Ethernet-in-MPLS",
        "tag": f"MPLS label {label} (0x{label:x} = 0x{CAPTURE_LABEL_BASE:x} + capture {capture.id})",
        "tag_short": f"MPLS 0x{label:x}",
        "label": label,
        "summary": (f"Each copy is {vm}'s frame, unchanged, behind an outer Ethernet header and one "
                    f"MPLS header with label {label}, which names this capture. The analyzer's "
                    f"recorder removes that wrapper: the pcap download holds the original frames, "
                    f"each with its direction."),
        "pcap_file": pcap_download_name(capture),
        "tshark_pcap": (f"tshark -r {pcap_download_name(capture)} -T fields -e frame.number "
                        f"-e frame.packet_flags_direction -e _ws.col.Source -e _ws.col.Destination "
                        f"-e _ws.col.Info"),
        "tshark_analyzer": on_analyzer,
        "directions": _directions_line(capture, vm),
        "path": path,
        "path_text": " \u2192 ".join(_hop_text(hop) for hop in path),
    }
