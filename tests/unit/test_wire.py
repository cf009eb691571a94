"""What the analyzer receives (controller/wire.py): the wrapper, the copy path, the tshark
commands and the direction line that the capture screen and the Topology page render."""
from __future__ import annotations

import shlex

import pytest

from mirrorlab.controller.mirroring import analyzers, plan_analyzer, plan_capture
from mirrorlab.controller.wire import analyzer_view, copy_path, pcap_download_name


def with_analyzer(topology, name, compute):
    """`topology` plus analyzer instance `name` on `compute`."""
    return topology.with_vm(plan_analyzer(topology, name, None, compute))


def capture_of(topology, port, analyzer, direction="both", capture_id=7):
    """A planned capture of vRouter port `port` to `analyzer`."""
    compute = topology.interface_by_port_name(port).compute
    return plan_capture(topology, [], capture_id, compute, port, direction, analyzer, 10.0)


def test_remote_analyzer_copies_cross_both_vrouters_and_the_fabric(default_topo):
    topology = with_analyzer(default_topo, "far", "compute3")
    capture = capture_of(topology, "tap-vm2-0", "far")
    analyzer_vm = analyzers(topology)["far"].name
    assert copy_path(capture, topology) == [
        {"kind": "vm", "name": "vm2", "compute": "compute2"},
        {"kind": "vrouter", "name": "compute2"},
        {"kind": "fabric", "name": topology.fabric_bridge},
        {"kind": "vrouter", "name": "compute3"},
        {"kind": "analyzer", "name": analyzer_vm, "analyzer": "far", "compute": "compute3"},
    ]


def test_local_analyzer_copies_stay_on_the_vrouter(default_topo):
    topology = with_analyzer(default_topo, "near", "compute1")
    capture = capture_of(topology, "tap-vm1-0", "near")
    assert [hop["kind"] for hop in copy_path(capture, topology)] == ["vm", "vrouter", "analyzer"]
    assert copy_path(capture, topology)[1] == {"kind": "vrouter", "name": "compute1"}


def test_the_wrapper_is_the_capture_label_and_the_commands_decode_it(default_topo):
    topology = with_analyzer(default_topo, "far", "compute3")
    capture = capture_of(topology, "tap-vm2-0", "far", capture_id=7)
    analyzer_vm = analyzers(topology)["far"]
    view = analyzer_view(capture, topology)
    assert view["wrapper"] == "mpls" and view["label"] == 0x80007 == capture.label
    assert view["tag"] == "MPLS label 524295 (0x80007 = 0x80000 + capture 7)"
    assert view["tag_short"] == "MPLS 0x80007"
    words = shlex.split(view["tshark_analyzer"])
    assert words[:5] == ["mirrorlab", "exec", analyzer_vm.name, "--", "tshark"]
    assert words[words.index("-i") + 1] == analyzer_vm.interfaces[0].name
    assert words[words.index("-f") + 1] == "mpls 524295"
    assert words[words.index("-d") + 1] == "mpls.label==524295,pwethnocw"
    assert "mpls.exp" in words  # the traffic class: the copy's direction on the wire
    pcap = shlex.split(view["tshark_pcap"])
    assert pcap[:3] == ["tshark", "-r", pcap_download_name(capture)] == ["tshark", "-r", "capture-7-tap-vm2-0.pcapng"]
    assert "frame.packet_flags_direction" in pcap
    assert "vm2's frame" in view["summary"] and "label 524295" in view["summary"]
    assert view["path"] == copy_path(capture, topology)
    assert view["pcap_file"] == "capture-7-tap-vm2-0.pcapng"
    assert view["path_text"] == (f"vm2 \u2192 vRouter compute2 \u2192 fabric {topology.fabric_bridge} \u2192 "
                                 f"vRouter compute3 \u2192 {analyzer_vm.name} (analyzer far)")


@pytest.mark.parametrize("direction, copied", [("both", "both"), ("ingress", "ingress only"),
                                               ("egress", "egress only")])
def test_one_line_says_how_ingress_and_egress_differ_and_which_are_copied(default_topo, direction, copied):
    topology = with_analyzer(default_topo, "near", "compute1")
    line = analyzer_view(capture_of(topology, "tap-vm1-0", "near", direction), topology)["directions"]
    assert line == ("Ingress = what vm1 sends (MPLS traffic class 0; pcapng Outbound); egress = what is "
                    f"delivered to vm1 (traffic class 1; pcapng Inbound). This capture copies {copied}.")
    assert "\n" not in line


def test_a_deleted_analyzer_leaves_the_path_at_the_vrouter_and_no_analyzer_command(default_topo):
    topology = with_analyzer(default_topo, "gone", "compute3")
    capture = capture_of(topology, "tap-vm1-0", "gone")
    without = topology.without_vm(analyzers(topology)["gone"].name)
    view = analyzer_view(capture, without)
    assert view["tshark_analyzer"] is None
    assert [hop["kind"] for hop in view["path"]] == ["vm", "vrouter"]
    assert view["tag_short"] == f"MPLS 0x{capture.label:x}"
