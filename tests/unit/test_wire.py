"""What the analyzer receives (controller/wire.py): the wrapper, the copy path, the tshark
commands and the direction line that the capture screen and the Topology page render."""
from __future__ import annotations

import shlex

import pytest

from mirrorlab.controller.mirroring import analyzers, plan_analyzer, plan_capture
from mirrorlab.controller.mirrorto import parse_mirror_to
from mirrorlab.controller.wire import analyzer_view, copy_path, pcap_download_name


def with_analyzer(topology, name, compute):
    """`topology` plus analyzer instance `name` on `compute`."""
    return topology.with_vm(plan_analyzer(topology, name, None, compute))


def capture_of(topology, port, analyzer, direction="both", capture_id=7, mirror_to=None):
    """A planned capture of vRouter port `port` to `analyzer` (destination `mirror_to`)."""
    compute = topology.interface_by_port_name(port).compute
    return plan_capture(topology, [], capture_id, compute, port, direction, analyzer, 10.0,
                        mirror_to=parse_mirror_to(mirror_to))


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


def analyzer_words(view):
    """The analyzer-side command, split as a shell would."""
    return shlex.split(view["tshark_analyzer"])


def option(words, name):
    """The value after option `name`."""
    return words[words.index(name) + 1]


def test_the_default_copies_carry_the_juniper_header_and_the_command_decodes_it(default_topo):
    topology = with_analyzer(default_topo, "far", "compute3")
    capture = capture_of(topology, "tap-vm2-0", "far", capture_id=7)
    analyzer_vm = analyzers(topology)["far"]
    view = analyzer_view(capture, topology)
    assert capture.mirror_index == 7
    assert view["wrapper"] == "juniper" and view["wrapper_name"] == "Juniper header over UDP 8099"
    # Mirror index 7: source ports 49152 + 64 * 7 onwards, from compute2's fabric address.
    assert view["tag"] == "mirror index 7 (UDP source ports 49600-49663 from 192.168.100.2, vRouter compute2)"
    assert view["tag_short"] == "Juniper UDP 8099"
    assert view["destination"] == f"{analyzer_vm.interfaces[0].ip} udp 8099, Juniper header"
    words = analyzer_words(view)
    assert words[:6] == ["mirrorlab", "exec", analyzer_vm.name, "--", "tshark", "-l"]
    assert option(words, "-i") == analyzer_vm.interfaces[0].name
    assert option(words, "-f") == ("udp dst port 8099 and src host 192.168.100.2 and "
                                   "udp src portrange 49600-49663")
    assert option(words, "-d") == "udp.port==8099,juniper"
    assert "juniper.vn.src" in words and "juniper.vn.dst" in words
    assert "MPLS" not in view["summary"] and "MPLS" not in view["directions"]
    pcap = shlex.split(view["tshark_pcap"])
    assert pcap[:3] == ["tshark", "-r", pcap_download_name(capture)] == ["tshark", "-r", "capture-7-tap-vm2-0.pcapng"]
    assert "frame.packet_flags_direction" in pcap
    assert "10.250.2.3 port 8099" in view["summary"] and "vm2's frame" in view["summary"]
    assert view["path"] == copy_path(capture, topology)
    assert view["pcap_file"] == "capture-7-tap-vm2-0.pcapng"
    assert view["path_text"] == (f"vm2 \u2192 vRouter compute2 \u2192 fabric {topology.fabric_bridge} \u2192 "
                                 f"vRouter compute3 \u2192 {analyzer_vm.name} (analyzer far)")


def test_another_udp_port_is_in_the_wrapper_the_filter_and_the_decode_option(default_topo):
    topology = with_analyzer(default_topo, "near", "compute1")
    capture = capture_of(topology, "tap-vm1-0", "near", mirror_to={"udp_port": 9000})
    view = analyzer_view(capture, topology)
    assert view["wrapper_name"] == "Juniper header over UDP 9000" and view["tag_short"] == "Juniper UDP 9000"
    assert view["destination"].endswith(" udp 9000, Juniper header")
    words = analyzer_words(view)
    assert option(words, "-f").startswith("udp dst port 9000 and src host 192.168.100.1 ")
    assert option(words, "-d") == "udp.port==9000,juniper"


def test_header_less_copies_are_the_original_frames_told_apart_by_the_vm_mac(default_topo):
    topology = with_analyzer(default_topo, "near", "compute1")
    capture = capture_of(topology, "tap-vm1-0", "near", mirror_to={"juniper_header": False})
    analyzer_vm = analyzers(topology)["near"]
    view = analyzer_view(capture, topology)
    assert (view["wrapper"], view["wrapper_name"], view["tag_short"]) == ("original", "original frames (no header)", "no header")
    assert view["destination"] == f"{analyzer_vm.interfaces[0].ip}, original frames, no header"
    words = analyzer_words(view)
    assert option(words, "-i") == analyzer_vm.interfaces[0].name
    assert option(words, "-f") == f"not ether host {analyzer_vm.interfaces[0].mac}"
    assert "-d" not in words and "eth.src" in words
    vm1 = default_topo.interface_by_port_name("tap-vm1-0")
    assert f"from vm1's MAC {vm1.mac} is one it sent (ingress)" in view["directions"]
    assert view["path_text"] == f"vm1 \u2192 vRouter compute1 \u2192 {analyzer_vm.name} (analyzer near)"


STATIC = {"nh_mode": "static", "static_nh_header": {"vtep_dst_ip_address": "192.168.100.254",
                                                     "vtep_dst_mac_address": "02:fb:00:00:00:01", "vni": 5000}}


def test_static_copies_are_vxlan_to_the_fabric_analyzer_and_the_command_runs_there(default_topo):
    capture = capture_of(default_topo, "tap-vm1-0", None, mirror_to=STATIC, capture_id=2)
    view = analyzer_view(capture, default_topo)
    assert (view["wrapper"], view["wrapper_name"], view["tag_short"]) == ("vxlan", "VXLAN VNI 5000", "VXLAN 5000")
    assert view["destination"] == "static VXLAN 5000 to 192.168.100.254"
    assert view["tag"] == "to probe1 192.168.100.254 (UDP 4789 from 192.168.100.1, vRouter compute1)"
    assert copy_path(capture, default_topo) == [
        {"kind": "vm", "name": "vm1", "compute": "compute1"}, {"kind": "vrouter", "name": "compute1"},
        {"kind": "fabric", "name": default_topo.fabric_bridge},
        {"kind": "fabric_analyzer", "name": "probe1", "ip": "192.168.100.254"}]
    assert view["path_text"].endswith("\u2192 probe1 192.168.100.254 (fabric analyzer)")
    words = analyzer_words(view)
    assert words[:6] == ["mirrorlab", "exec", "probe1", "--", "tshark", "-l"]
    assert option(words, "-i") == "probe1-eth0"
    assert option(words, "-f") == "udp dst port 4789 and src host 192.168.100.1 and udp src portrange 49280-49343"
    assert option(words, "-d") == "udp.port==4789,vxlan" and "vxlan.vni" in words
    assert "Nothing on the wire marks the direction" in view["directions"]


def test_nic_assisted_copies_are_the_tagged_overlay_frames_sent_only(default_topo):
    capture = capture_of(default_topo, "tap-vm1-0", None, capture_id=3,
                         mirror_to={"nic_assisted_mirroring": True, "nic_assisted_mirroring_vlan": 100})
    view = analyzer_view(capture, default_topo)
    assert (view["wrapper"], view["wrapper_name"], view["tag_short"]) == ("nic-vlan", "VLAN 100 tag, NIC-assisted", "NIC VLAN 100")
    assert view["tag"] == "mirrored by the fabric to probe1 192.168.100.254"
    assert view["destination"] == "NIC-assisted VLAN 100 to probe1 192.168.100.254"
    assert [hop["kind"] for hop in view["path"]] == ["vm", "vrouter", "fabric", "fabric_analyzer"]
    words = analyzer_words(view)
    assert words[2] == "probe1" and option(words, "-f") == "vlan 100"
    blue = default_topo.network("blue").label
    assert option(words, "-d") == f"mpls.label=={blue},pwethnocw" and "vlan.id" in words
    assert view["directions"].startswith("Ingress only, and only to other compute nodes: what vm1 sends")
    assert "traffic between VMs of compute1" in view["directions"]


@pytest.mark.parametrize("direction, copied", [("both", "both"), ("ingress", "ingress only"),
                                               ("egress", "egress only")])
def test_one_line_says_how_ingress_and_egress_differ_and_which_are_copied(default_topo, direction, copied):
    topology = with_analyzer(default_topo, "near", "compute1")
    line = analyzer_view(capture_of(topology, "tap-vm1-0", "near", direction), topology)["directions"]
    assert line == ("Ingress = what vm1 sends (juniper.vn.src = default-domain:default:blue; pcapng "
                    "Outbound); egress = what is delivered to vm1 (juniper.vn.dst = "
                    f"default-domain:default:blue; pcapng Inbound). This capture copies {copied}.")
    assert "\n" not in line


def test_a_deleted_analyzer_leaves_the_path_at_the_vrouter_and_no_analyzer_command(default_topo):
    topology = with_analyzer(default_topo, "gone", "compute3")
    capture = capture_of(topology, "tap-vm1-0", "gone")
    without = topology.without_vm(analyzers(topology)["gone"].name)
    view = analyzer_view(capture, without)
    assert view["tshark_analyzer"] is None
    assert [hop["kind"] for hop in view["path"]] == ["vm", "vrouter"]
    assert view["tag_short"] == "Juniper UDP 8099"
