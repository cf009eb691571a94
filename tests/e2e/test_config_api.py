"""End-to-end: port mirroring configured through Contrail's configuration API with Contrail's
own client (vnc_api), on the real lab: the copies reach the analyzer, in the wire format its
mirror_to asks for (tshark inside the analyzer VM and the fabric probe as the oracle); a changed
mirror_to moves them, unsetting stops them; the API, the CLI and the web UI (real Chromium) show
the capture as configured on the port."""
from __future__ import annotations

import subprocess
import threading
import time

from playwright.sync_api import expect
from vnc_api.gen.resource_xsd import (
    InterfaceMirrorType, MirrorActionType, StaticMirrorNhType, VirtualMachineInterfacePropertiesType,
)
from vnc_api.vnc_api import VncApi

from tests.e2e.conftest import CHROMIUM, CONFIG_API_PORT
from tests.e2e.test_capture import DEFAULT_ANALYZER, capture_flows, settle

PROJECT = ["default-domain", "default"]
assert CHROMIUM  # the web UI test below needs it


def set_interface_mirror(vnc: VncApi, interface: str, direction: str | None) -> None:
    """Set (or with None, unset) the interface_mirror of `interface`'s VMI to the default
    analyzer, as a Contrail script does."""
    vmi = vnc.virtual_machine_interface_read(fq_name=PROJECT + [interface])
    mirror = None if direction is None else InterfaceMirrorType(
        traffic_direction=direction,
        mirror_to=MirrorActionType(analyzer_name=":".join(PROJECT + [DEFAULT_ANALYZER])))
    vmi.set_virtual_machine_interface_properties(
        VirtualMachineInterfacePropertiesType(interface_mirror=mirror))
    vnc.virtual_machine_interface_update(vmi)


def port_capture(lab) -> dict | None:
    """The active capture configured on vm1's port, if any."""
    return next((c for c in lab.http("GET", "/api/captures", params={"state": "active"}).json()
                 if c["origin"] == "port" and c["interface"] == "tap-vm1-0"), None)


def echo_frames(lab, capture_id: int, tmp_path) -> list[str]:
    """The ICMP echo request/reply types (8, 0) tshark reads in the capture's pcap."""
    pcap = tmp_path / f"capture-{capture_id}.pcap"
    pcap.write_bytes(lab.http("GET", f"/api/captures/{capture_id}/pcap").content)
    decoded = subprocess.run(["tshark", "-r", str(pcap), "-Y", "icmp.type == 8 || icmp.type == 0",
                              "-T", "fields", "-e", "icmp.type"],
                             capture_output=True, text=True, timeout=60)
    assert decoded.returncode == 0, decoded.stderr
    return decoded.stdout.split()


def test_vnc_api_sets_and_unsets_interface_mirror_on_vm1(clean_lab, tmp_path):
    """Set on vm1's VMI, interface_mirror copies a ping's 6 echo frames to the default analyzer,
    still after a controller restart; unset, its flows are gone and nothing more arrives."""
    lab = clean_lab
    vnc = VncApi(api_server_host="127.0.0.1", api_server_port=CONFIG_API_PORT)
    vmi = vnc.virtual_machine_interface_read(fq_name=PROJECT + ["vm1-eth0"])
    assert vmi.get_virtual_network_refs()[0]["to"] == PROJECT + ["blue"]
    assert vmi.get_virtual_machine_interface_properties() is None

    mirror_to = MirrorActionType(analyzer_name=":".join(PROJECT + [DEFAULT_ANALYZER]))
    vmi.set_virtual_machine_interface_properties(VirtualMachineInterfacePropertiesType(
        interface_mirror=InterfaceMirrorType(traffic_direction="both", mirror_to=mirror_to)))
    vnc.virtual_machine_interface_update(vmi)

    capture = port_capture(lab)
    assert capture is not None and capture["analyzer"] == DEFAULT_ANALYZER
    assert capture["lease_seconds"] is None and capture["direction"] == "both"
    assert f"capture {capture['id']}: active" in lab.cli("capture", "list").stdout
    assert "started by port" in lab.cli("capture", "list").stdout
    assert capture_flows(lab, "compute1", capture["id"])
    lab.shell("vm1", "ping -c 3 -i 0.2 10.1.1.12")
    settle(lab, capture["id"], 6)
    assert sorted(echo_frames(lab, capture["id"], tmp_path)) == ["0", "0", "0", "8", "8", "8"]

    lab.cli("controller", "restart")  # the setting is stored: the new controller mirrors again
    lab.wait_for(lambda: all(v["connected"] for v in lab.http("GET", "/api/vrouters").json()),
                 what="the vRouters reconnected (and reconciled)")
    assert capture_flows(lab, "compute1", capture["id"])
    vnc = VncApi(api_server_host="127.0.0.1", api_server_port=CONFIG_API_PORT)
    read_back = vnc.virtual_machine_interface_read(fq_name=PROJECT + ["vm1-eth0"])
    assert read_back.get_virtual_machine_interface_properties().get_interface_mirror() \
        .get_mirror_to().get_analyzer_name() == ":".join(PROJECT + [DEFAULT_ANALYZER])
    lab.shell("vm1", "ping -c 1 10.1.1.12")
    settle(lab, capture["id"], 8)
    assert len(echo_frames(lab, capture["id"], tmp_path)) == 8

    properties = read_back.get_virtual_machine_interface_properties()
    properties.set_interface_mirror(None)
    read_back.set_virtual_machine_interface_properties(properties)
    vnc.virtual_machine_interface_update(read_back)
    assert port_capture(lab) is None
    stopped = lab.http("GET", f"/api/captures/{capture['id']}").json()
    assert stopped["state"] == "stopped" and "interface_mirror unset" in stopped["stop_reason"]
    assert capture_flows(lab, "compute1", capture["id"]) == []
    lab.shell("vm1", "ping -c 2 -i 0.2 10.1.1.12")
    time.sleep(1)
    assert len(echo_frames(lab, capture["id"], tmp_path)) == 8


def test_the_web_ui_shows_a_port_configured_capture(clean_lab, page):
    """The vRouter's interface list marks the capture as the port's; the Captures page says
    who started it."""
    lab = clean_lab
    vnc = VncApi(api_server_host="127.0.0.1", api_server_port=CONFIG_API_PORT)
    set_interface_mirror(vnc, "vm1-eth0", "ingress")
    capture = port_capture(lab)
    page.goto(f"{lab.api_url}/#/vrouters/compute1/interfaces")
    chip = page.locator(".chip-mirror[data-origin='port']")
    expect(chip).to_have_text(f"#{capture['id']} \u2192 {DEFAULT_ANALYZER} (ingress, port)")
    page.goto(f"{lab.api_url}/#/captures")
    expect(page.locator(f"tr[data-capture='{capture['id']}']")).to_contain_text("Port configuration")
    set_interface_mirror(vnc, "vm1-eth0", None)
    page.goto(f"{lab.api_url}/#/vrouters/compute1/interfaces")
    expect(page.locator(".chip-mirror")).to_have_count(0)


class Tshark:
    """tshark inside a VM (or the fabric probe), printing `fields` of every ICMP echo it
    decodes on `interface`; `rows` fills as copies arrive. It is stopped by its own pid."""

    def __init__(self, lab, vm: str, interface: str, decode: str, fields: list[str]):
        self.lab, self.vm = lab, vm
        self.process = lab.shell_popen(vm, f"echo $$; exec timeout 90 tshark -l -n -i {interface} "
                                     f"-d {decode} -Y 'icmp.type == 8 || icmp.type == 0' -T fields "
                                     f"-E separator='|' " + " ".join(f"-e {f}" for f in fields))
        self.pid = int(self.process.stdout.readline())
        self.rows: list[list[str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.rows.append(line.rstrip("\n").split("|"))

    def stop(self) -> None:
        """Stop tshark and wait for it."""
        self.lab.shell(self.vm, f"kill {self.pid}", check=False)
        self.process.wait(timeout=30)
        self.reader.join(10)


def later_echo_copies(lab, tshark: Tshark, pairs: int = 5) -> dict[int, tuple[tuple[str, ...], ...]]:
    """Keep vm1 pinging vm2 until `tshark` shows a copy (so it was listening: no start race),
    then the copies it shows of the next `pairs` echo requests and replies, by sequence number
    (tshark's last field is icmp.seq), each copy as its other fields."""
    ping = lab.shell_popen("vm1", "echo $$; exec ping -n -i 0.2 -c 300 10.1.1.12")
    ping_pid = int(ping.stdout.readline())
    try:
        lab.wait_for(lambda: tshark.rows, timeout=60, what="tshark's first copy")
        first = max(int(row[-1]) for row in list(tshark.rows))
        wanted = range(first + 1, first + 1 + pairs)
        lab.wait_for(lambda: any(int(row[-1]) > wanted[-1] + 1 for row in list(tshark.rows)),
                     timeout=30, what=f"the copies of echo {wanted[0]}..{wanted[-1]}")
    finally:
        lab.shell("vm1", f"kill {ping_pid}", check=False)
        ping.wait(timeout=30)
        tshark.stop()
    return {seq: tuple(sorted(tuple(row[:-1]) for row in tshark.rows if int(row[-1]) == seq))
            for seq in wanted}


def test_vnc_api_mirror_to_modes_reach_the_wire_and_a_change_moves_them(clean_lab):
    """vm1's VMI set through vnc_api with the default mirror_to: tshark in the analyzer VM
    (`-d udp.port==8099,juniper`) shows one copy of each echo request with juniper.vn.src the
    fq-name vnc_api reads for blue (default-domain:<lab>:blue), and one of each reply with
    juniper.vn.dst that fq-name. Changed through vnc_api to a static VXLAN
    destination (probe1, VNI 5000): the port capture is replaced, and probe1's fabric interface
    shows each request and reply once in VXLAN with that VNI. Unset: stopped, its flows gone."""
    lab = clean_lab
    vnc = VncApi(api_server_host="127.0.0.1", api_server_port=CONFIG_API_PORT)
    set_interface_mirror(vnc, "vm1-eth0", "both")
    dynamic = port_capture(lab)
    assert dynamic["mirror_to"]["juniper_header"] is True and dynamic["mirror_to"]["udp_port"] == 8099
    analyzer = next(a for a in lab.http("GET", "/api/analyzers").json()
                    if a["name"] == DEFAULT_ANALYZER)
    tshark = Tshark(lab, analyzer["vm"], f"{analyzer['vm']}-eth0", "udp.port==8099,juniper",
                    ["juniper.vn.src", "juniper.vn.dst", "icmp.type", "icmp.seq"])
    copies = later_echo_copies(lab, tshark)
    blue = ":".join(vnc.virtual_network_read(fq_name=PROJECT + ["blue"]).get_fq_name())
    assert blue == "default-domain:default:blue"
    assert set(copies.values()) == {(("", blue, "0"), (blue, "", "8"))}, copies

    probe = lab.topology.fabric_analyzer("probe1")
    vmi = vnc.virtual_machine_interface_read(fq_name=PROJECT + ["vm1-eth0"])
    vmi.set_virtual_machine_interface_properties(VirtualMachineInterfacePropertiesType(
        interface_mirror=InterfaceMirrorType(traffic_direction="both", mirror_to=MirrorActionType(
            nh_mode="static", juniper_header=False,
            static_nh_header=StaticMirrorNhType(str(probe.ip), probe.mac, 5000)))))
    vnc.virtual_machine_interface_update(vmi)
    static = port_capture(lab)
    assert (static["analyzer"], static["mirror_to"]["nh_mode"], static["mirror_to"]["static_nh_header"]) \
        == ("probe1", "static", {"vtep_dst_ip_address": str(probe.ip),
                                 "vtep_dst_mac_address": probe.mac, "vni": 5000})
    replaced = lab.http("GET", f"/api/captures/{dynamic['id']}").json()
    assert replaced["state"] == "stopped" and "interface_mirror changed" in replaced["stop_reason"]
    assert capture_flows(lab, "compute1", dynamic["id"]) == []
    read_back = vnc.virtual_machine_interface_read(fq_name=PROJECT + ["vm1-eth0"]) \
        .get_virtual_machine_interface_properties().get_interface_mirror().get_mirror_to()
    assert (read_back.nh_mode, read_back.static_nh_header.vni) == ("static", 5000)
    tshark = Tshark(lab, "probe1", probe.interface, "udp.port==4789,vxlan",
                    ["vxlan.vni", "icmp.type", "icmp.seq"])
    copies = later_echo_copies(lab, tshark)
    assert set(copies.values()) == {(("5000", "0"), ("5000", "8"))}, copies

    set_interface_mirror(vnc, "vm1-eth0", None)
    assert port_capture(lab) is None
    stopped = lab.http("GET", f"/api/captures/{static['id']}").json()
    assert stopped["state"] == "stopped" and "interface_mirror unset" in stopped["stop_reason"]
    assert capture_flows(lab, "compute1") == []
