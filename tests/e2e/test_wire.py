"""End-to-end: a capture's destination (Contrail's mirror_to) through the CLI and REST API of
the real lab."""
from __future__ import annotations

import json
import subprocess
import time

import pytest
from scapy.all import ICMP, UDP, Ether, rdpcap

DEFAULT_ANALYZER = "interface-packet-capture"


def test_cli_destination_flags_reach_the_api_and_errors_name_the_field(wire_analyzers, clean_lab,
                                                                        target):
    """`capture start` without destination flags goes to the default analyzer the default way
    (dynamic, Juniper header, UDP 8099), shown whole by `capture show --json` and in words by
    `capture show`; a bad flag value is refused with the field named and starts nothing."""
    lab = clean_lab
    started = json.loads(lab.cli("capture", "start", "--vm", target.vm, "--json").stdout)
    analyzer = next(a for a in lab.http("GET", "/api/analyzers").json()
                    if a["name"] == DEFAULT_ANALYZER)
    assert started["mirror_to"] == {
        "analyzer_name": DEFAULT_ANALYZER, "analyzer_ip_address": analyzer["ip"],
        "analyzer_mac_address": analyzer["mac"], "routing_instance": analyzer["network"],
        "udp_port": 8099, "juniper_header": True, "nh_mode": "dynamic", "static_nh_header": None,
        "nic_assisted_mirroring": False, "nic_assisted_mirroring_vlan": None}
    shown = json.loads(lab.cli("capture", "show", str(started["id"]), "--json").stdout)
    assert shown["mirror_to"] == started["mirror_to"]
    assert f"[{analyzer['ip']} udp 8099, Juniper header]" in lab.cli(
        "capture", "show", str(started["id"])).stdout

    refused = lab.cli("capture", "start", "--vm", target.vm, "--nh-mode", "static",
                      "--vtep-ip", "192.168.100.200", "--vtep-mac", "02:fa:00:00:00:c8",
                      "--vni", "16777216", check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "mirror_to.static_nh_header.vni" in refused.stderr
    assert [c["id"] for c in lab.http("GET", "/api/captures", params={"state": "active"}).json()] \
        == [started["id"]]


WIRE_ANALYZER = "wire-remote"


@pytest.fixture(scope="module")
def wire_analyzers(lab, target):
    """The default analyzer (on the monitored VM's compute node) and one on another compute node,
    once every vRouter is connected (a test before may have restarted the controller)."""
    lab.wait_for(lambda: all(c["connected"] for c in lab.http("GET", "/api/vrouters").json()),
                 what="every vRouter connected")
    lab.stop_all_captures()
    names = {a["name"] for a in lab.http("GET", "/api/analyzers").json()}
    if WIRE_ANALYZER not in names:
        created = lab.http("POST", "/api/analyzers", json={"name": WIRE_ANALYZER,
                                                          "compute": target.other_compute})
        assert created.status_code == 201, created.text
    if DEFAULT_ANALYZER not in names:
        first = lab.http("POST", "/api/captures", json={"vm": target.vm}).json()
        lab.http("DELETE", f"/api/captures/{first['id']}")
    lab.shell(target.vm, f"ping -c 1 -W 1 {target.peer.ip}", check=False)  # warm ARP
    return {a["name"]: a for a in lab.http("GET", "/api/analyzers").json()}


def juniper_payload(udp_payload: bytes) -> tuple[int, bytes, bytes]:
    """(TLV type, value, inner frame) of a Juniper-header payload, read independently of the
    lab's own code: one TLV, then the end TLV ff 00, then the frame."""
    kind, length = udp_payload[0], udp_payload[1]
    assert udp_payload[2 + length:4 + length] == b"\xff\x00", udp_payload[:40].hex()
    return kind, udp_payload[2:2 + length], udp_payload[4 + length:]


def ping_under_capture(lab, target, analyzer_vm: str, mirror_to: dict, analyzer_filter: str,
                       name: str) -> tuple[dict, str, str]:
    """tcpdump on the monitored VM (its ICMP) and on `analyzer_vm`'s interface
    (`analyzer_filter`), a capture of the target to `mirror_to`, 3 pings to the peer, until the
    capture has recorded 6 copies and the sniffers have ended: the capture, and the pcap files
    of what the VM and the analyzer saw."""
    vm_view, analyzer_view = f"/tmp/ml-{name}-vm.pcap", f"/tmp/ml-{name}-an.pcap"
    sniffers = [lab.shell_popen(target.vm, f"timeout 8 tcpdump -n -i {target.interface.name} -w {vm_view} icmp"),
                lab.shell_popen(analyzer_vm, f"timeout 8 tcpdump -n -i {analyzer_vm}-eth0 -w {analyzer_view} "
                                             f"{analyzer_filter}")]
    time.sleep(1)
    capture = lab.http("POST", "/api/captures", json={"vm": target.vm, "mirror_to": mirror_to}).json()
    lab.shell(target.vm, f"ping -c 3 -i 0.2 {target.peer.ip}")
    lab.wait_for(lambda: lab.http("GET", f"/api/captures/{capture['id']}").json()["packets"] >= 6,
                 what="6 recorded copies")
    for sniffer in sniffers:
        sniffer.wait(timeout=15)
    return capture, vm_view, analyzer_view


def assert_recorded_as_seen(lab, capture: dict, seen_by_vm: list[bytes], tmp_path) -> None:
    """The capture's own pcap holds exactly the echo frames the VM saw (`seen_by_vm`, sorted
    bytes), and its packet list says requests are ingress and replies egress: what the recorder
    keeps of a destination whose wire carries no direction."""
    recorded = lab.http("GET", f"/api/captures/{capture['id']}/pcap", params={"format": "pcap"})
    (tmp_path / "capture.pcap").write_bytes(recorded.content)
    assert sorted(bytes(f) for f in rdpcap(str(tmp_path / "capture.pcap"))
                  if f.haslayer(ICMP)) == seen_by_vm
    listed = lab.http("GET", f"/api/captures/{capture['id']}/packets").json()["packets"]
    assert {(p["summary"].split(" id=")[0], p["direction"]) for p in listed
            if p["summary"].startswith("Echo")} == {("Echo (ping) request", "ingress"),
                                                    ("Echo (ping) reply", "egress")}


@pytest.mark.parametrize("analyzer", [DEFAULT_ANALYZER, WIRE_ANALYZER], ids=["local", "remote"])
def test_default_destination_is_juniper_header_over_udp_8099(wire_analyzers, clean_lab, target,
                                                             tmp_path, analyzer):
    """What the analyzer's own interface receives (tcpdump in the analyzer VM, decoded by tshark
    with `-d udp.port==8099,juniper`): IPv4/UDP from the monitored vRouter's fabric address to
    the analyzer's address, port 8099, a source port in 49152..65535; juniper.vn.src = the
    monitored network's fq-name (default-domain:<lab>:<network>) on the echo requests the VM
    sent, juniper.vn.dst on the replies delivered to it; the inner frames byte for byte what
    the VM saw. The raw capture the API serves holds
    the same copies, and the capture's own pcap the original frames."""
    lab = clean_lab
    info = wire_analyzers[analyzer]
    capture, vm_view, analyzer_view = ping_under_capture(
        lab, target, info["vm"], {"analyzer_name": analyzer}, "udp port 8099", f"wire-{analyzer}")

    fabric_ip = str(lab.topology.fabric_ip(lab.topology.compute(target.compute)))
    # Contrail writes the network's fq-name: default-domain, the project (the lab), the network.
    network = f"default-domain:{lab.topology.name}:{target.interface.network}"
    decoded = subprocess.run(
        ["tshark", "-r", analyzer_view, "-d", "udp.port==8099,juniper", "-Y", "icmp", "-T", "fields",
         "-E", "separator=|", "-e", "ip.src", "-e", "ip.dst", "-e", "udp.srcport", "-e", "udp.dstport",
         "-e", "juniper.vn.src", "-e", "juniper.vn.dst", "-e", "icmp.type"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    rows = [line.split("|") for line in decoded]
    assert len(rows) == 6, decoded
    for ip_src, ip_dst, sport, dport, vn_src, vn_dst, icmp_type in rows:
        outer_src, inner_src = ip_src.split(",")
        outer_dst, _inner_dst = ip_dst.split(",")
        assert (outer_src, outer_dst, dport) == (fabric_ip, info["ip"], "8099")
        assert 49152 <= int(sport) <= 65535
        assert (vn_src, vn_dst) == ((network, "") if icmp_type == "8" else ("", network))
        assert inner_src == (str(target.interface.ip) if icmp_type == "8" else str(target.peer.ip))

    seen_by_vm = sorted(bytes(f) for f in rdpcap(vm_view))
    copies = [juniper_payload(bytes(f[UDP].payload)) for f in rdpcap(analyzer_view)
              if f.haslayer(UDP) and f[UDP].dport == 8099]
    echo_copies = [(kind, value, inner) for kind, value, inner in copies
                   if Ether(inner).haslayer(ICMP)]
    assert sorted(inner for _, _, inner in echo_copies) == seen_by_vm
    assert {(kind, value) for kind, value, inner in echo_copies} == {(3, network.encode()),
                                                                     (4, network.encode())}

    raw = lab.http("GET", f"/api/analyzers/{analyzer}/pcap")
    assert raw.status_code == 200
    (tmp_path / "raw.pcap").write_bytes(raw.content)
    raw_copies = {bytes(f) for f in rdpcap(str(tmp_path / "raw.pcap"))}
    assert {bytes(f) for f in rdpcap(analyzer_view)} <= raw_copies
    recorded = lab.http("GET", f"/api/captures/{capture['id']}/pcap", params={"format": "pcap"})
    (tmp_path / "capture.pcap").write_bytes(recorded.content)
    assert sorted(bytes(f) for f in rdpcap(str(tmp_path / "capture.pcap"))
                  if f.haslayer(ICMP)) == seen_by_vm


@pytest.mark.parametrize("analyzer", [DEFAULT_ANALYZER, WIRE_ANALYZER], ids=["local", "remote"])
def test_without_the_header_the_analyzer_sees_the_conversation_itself(
        wire_analyzers, clean_lab, target, tmp_path, analyzer):
    """juniper_header false: the analyzer's interface receives the monitored VM's frames
    themselves, byte for byte, as on a SPAN port (no UDP 8099 at all); the capture's pcap holds
    them too, each with its direction."""
    lab = clean_lab
    info = wire_analyzers[analyzer]
    capture, vm_view, analyzer_view = ping_under_capture(
        lab, target, info["vm"], {"analyzer_name": analyzer, "juniper_header": False},
        "icmp or udp port 8099", f"span-{analyzer}")
    assert capture["mirror_to"]["juniper_header"] is False
    seen_by_vm = sorted(bytes(f) for f in rdpcap(vm_view))
    assert len(seen_by_vm) == 6
    assert sorted(bytes(f) for f in rdpcap(analyzer_view)) == seen_by_vm
    assert_recorded_as_seen(lab, capture, seen_by_vm, tmp_path)


def test_a_custom_udp_port_carries_the_juniper_header(wire_analyzers, clean_lab, target):
    """udp_port 9000: the copies go to UDP 9000, and `-d udp.port==9000,juniper` decodes them."""
    lab = clean_lab
    info = wire_analyzers[DEFAULT_ANALYZER]
    analyzer_view = "/tmp/ml-wire-port.pcap"
    sniffer = lab.shell_popen(info["vm"], f"timeout 6 tcpdump -n -i {info['vm']}-eth0 -w {analyzer_view} "
                                    f"udp port 9000")
    time.sleep(1)
    capture = lab.http("POST", "/api/captures", json={
        "vm": target.vm, "direction": "ingress", "mirror_to": {"udp_port": 9000}}).json()
    lab.shell(target.vm, f"ping -c 2 -i 0.2 {target.peer.ip}")
    lab.wait_for(lambda: lab.http("GET", f"/api/captures/{capture['id']}").json()["packets"] >= 2,
                 what="2 recorded copies")
    sniffer.wait(timeout=15)
    decoded = subprocess.run(
        ["tshark", "-r", analyzer_view, "-d", "udp.port==9000,juniper", "-Y", "icmp", "-T", "fields",
         "-e", "udp.dstport", "-e", "juniper.vn.src", "-e", "icmp.type"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    assert decoded == [f"9000\tdefault-domain:{lab.topology.name}:{target.interface.network}\t8"] * 2


def test_static_destination_is_vxlan_to_the_vtep_on_the_fabric(wire_analyzers, clean_lab, target,
                                                                tmp_path):
    """nh_mode static to the lab's fabric analyzer probe1 (a probe appliance in its own
    namespace on the fabric): its fabric interface gets VXLAN with the VNI, from the monitored
    vRouter's fabric address (`tshark -d udp.port==4789,vxlan` shows the VNI), a Linux VXLAN
    device there with that VNI shows the monitored VM's frames byte for byte, and the capture's
    pcap holds them with their directions. The guests see no copy."""
    lab = clean_lab
    probe = lab.topology.fabric_analyzer("probe1")
    vni = 5000
    lab.shell("probe1", f"ip link del vx{vni} 2>/dev/null; ip link add vx{vni} type vxlan id {vni} "
                       f"dstport 4789 local {probe.ip} nolearning && ip link set vx{vni} up")
    vm_view, wire_view, device_view = ("/tmp/ml-static-vm.pcap", "/tmp/ml-static-wire.pcap",
                                       "/tmp/ml-static-vx.pcap")
    sniffers = [lab.shell_popen(target.vm, f"timeout 8 tcpdump -n -i {target.interface.name} -w {vm_view} icmp"),
                lab.shell_popen("probe1", f"timeout 8 tcpdump -n -i {probe.interface} -w {wire_view} udp port 4789"),
                lab.shell_popen("probe1", f"timeout 8 tcpdump -n -i vx{vni} -w {device_view} icmp"),
                lab.shell_popen(target.peer.vm, f"timeout 8 tcpdump -n -i {target.peer.name} udp port 4789 "
                                          f"2>/dev/null")]
    time.sleep(1)
    response = lab.http("POST", "/api/captures", json={"vm": target.vm, "mirror_to": {
        "nh_mode": "static", "static_nh_header": {"vtep_dst_ip_address": str(probe.ip),
                                                  "vtep_dst_mac_address": probe.mac, "vni": vni}}})
    assert response.status_code == 201, response.text
    capture = response.json()
    lab.shell(target.vm, f"ping -c 3 -i 0.2 {target.peer.ip}")
    lab.wait_for(lambda: lab.http("GET", f"/api/captures/{capture['id']}").json()["packets"] >= 6,
                 what="6 recorded copies")
    outputs = [sniffer.communicate(timeout=15)[0] for sniffer in sniffers]
    assert outputs[3].count("VXLAN") == 0 and "4789" not in outputs[3]

    seen_by_vm = sorted(bytes(f) for f in rdpcap(vm_view))
    assert len(seen_by_vm) == 6
    assert sorted(bytes(f) for f in rdpcap(device_view)) == seen_by_vm
    fabric_ip = str(lab.topology.fabric_ip(lab.topology.compute(target.compute)))
    decoded = subprocess.run(
        ["tshark", "-r", wire_view, "-d", "udp.port==4789,vxlan", "-Y", "icmp", "-T", "fields",
         "-E", "separator=|", "-e", "ip.src", "-e", "ip.dst", "-e", "udp.dstport", "-e", "vxlan.vni"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(decoded) == 6, decoded
    for line in decoded:
        ip_src, ip_dst, dport, found_vni = line.split("|")
        assert (ip_src.split(",")[0], ip_dst.split(",")[0], dport, found_vni) == (
            fabric_ip, str(probe.ip), "4789", str(vni))
    assert_recorded_as_seen(lab, capture, seen_by_vm, tmp_path)
    raw = lab.http("GET", "/api/analyzers/probe1/pcap")
    (tmp_path / "raw.pcap").write_bytes(raw.content)
    assert {bytes(f) for f in rdpcap(wire_view)} <= {bytes(f) for f in rdpcap(str(tmp_path / "raw.pcap"))}


def test_nic_assisted_the_fabric_mirrors_the_tagged_frames_and_same_node_traffic_is_not(
        wire_analyzers, clean_lab, target, tmp_path):
    """NIC-assisted with VLAN 100: the vRouter makes no copy; what the VM sends over the fabric
    is tagged with VLAN 100 (its peer still gets it, untagged) and the fabric switch's mirror
    (an OVS Mirror with select_vlan, set through the lab process) hands it to the fabric
    analyzer probe1, where tshark shows vlan.id 100 around the overlay. As in Contrail, a ping
    to a VM on the same compute node is not mirrored. Stopping removes the mirror; the next
    NIC-assisted capture on that VLAN gets its copies at once."""
    lab = clean_lab
    local_peer = next(i for i in lab.topology.interfaces()
                      if i.network == target.interface.network and i.compute == target.compute
                      and i.vm != target.vm)
    probe = lab.topology.fabric_analyzer("probe1")
    wire_view = "/tmp/ml-nic-wire.pcap"
    sniffer = lab.shell_popen("probe1", f"timeout 9 tcpdump -n -i {probe.interface} -w {wire_view} vlan 100")
    time.sleep(1)
    response = lab.http("POST", "/api/captures", json={"vm": target.vm, "direction": "ingress", "mirror_to": {
        "nic_assisted_mirroring": True, "nic_assisted_mirroring_vlan": 100}})
    assert response.status_code == 201, response.text
    capture = response.json()
    assert lab.netns("ovs-vsctl", "--bare", "--columns=select_vlan", "find", "Mirror",
                     f"name=nic-{capture['id']}").stdout.strip() == "100"
    lab.shell(target.vm, f"ping -c 3 -i 0.2 {target.peer.ip}")       # over the fabric
    lab.shell(target.vm, f"ping -c 3 -i 0.2 {local_peer.ip}")        # same compute node
    lab.wait_for(lambda: lab.http("GET", f"/api/captures/{capture['id']}").json()["packets"] >= 3,
                 what="3 recorded copies")
    sniffer.wait(timeout=15)
    decoded = subprocess.run(
        ["tshark", "-r", wire_view, "-d", f"mpls.label=={lab.topology.network(target.interface.network).label},pwethnocw",
         "-Y", "icmp", "-T", "fields", "-e", "vlan.id", "-e", "ip.src", "-e", "ip.dst", "-e", "icmp.type"],
        capture_output=True, text=True, check=True).stdout.splitlines()
    assert decoded == [f"100\t{target.interface.ip}\t{target.peer.ip}\t8"] * 3, decoded
    recorded = lab.http("GET", f"/api/captures/{capture['id']}/pcap", params={"format": "pcap"})
    (tmp_path / "capture.pcap").write_bytes(recorded.content)
    echoes = [f for f in rdpcap(str(tmp_path / "capture.pcap")) if f.haslayer(ICMP)]
    assert [(f["IP"].dst, f[ICMP].type) for f in echoes] == [(str(target.peer.ip), 8)] * 3
    stopped = lab.http("DELETE", f"/api/captures/{capture['id']}")
    assert stopped.status_code == 200
    assert lab.netns("ovs-vsctl", "--bare", "--columns=name", "list", "Mirror").stdout.strip() == ""
    # The next NIC-assisted capture on the same VLAN, right away, gets its copies too.
    again = lab.http("POST", "/api/captures", json={"vm": target.vm, "mirror_to": {
        "nic_assisted_mirroring": True, "nic_assisted_mirroring_vlan": 100}}).json()
    lab.shell(target.vm, f"ping -c 3 -i 0.2 {target.peer.ip}")
    lab.wait_for(lambda: lab.http("GET", f"/api/captures/{again['id']}").json()["packets"] >= 3,
                 what="3 copies for the second NIC-assisted capture")
