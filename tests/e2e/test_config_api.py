"""End-to-end: port mirroring configured through Contrail's configuration API with Contrail's
own client (vnc_api), on the real lab: the copies reach the analyzer, unsetting stops them; the
API, the CLI and the web UI (real Chromium) show the capture as configured on the port."""
from __future__ import annotations

import subprocess
import time

from playwright.sync_api import expect
from vnc_api.gen.resource_xsd import (
    InterfaceMirrorType, MirrorActionType, VirtualMachineInterfacePropertiesType,
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
    return next((c for c in lab.api("GET", "/api/captures", params={"state": "active"}).json()
                 if c["origin"] == "port" and c["interface"] == "tap-vm1-0"), None)


def echo_frames(lab, capture_id: int, tmp_path) -> list[str]:
    """The ICMP echo request/reply types (8, 0) tshark reads in the capture's pcap."""
    pcap = tmp_path / f"capture-{capture_id}.pcap"
    pcap.write_bytes(lab.api("GET", f"/api/captures/{capture_id}/pcap").content)
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
    lab.exec("vm1", "ping -c 3 -i 0.2 10.1.1.12")
    settle(lab, capture["id"], 6)
    assert sorted(echo_frames(lab, capture["id"], tmp_path)) == ["0", "0", "0", "8", "8", "8"]

    lab.cli("controller", "restart")  # the setting is stored: the new controller mirrors again
    lab.wait_for(lambda: all(v["connected"] for v in lab.api("GET", "/api/vrouters").json()),
                 what="the vRouters reconnected (and reconciled)")
    assert capture_flows(lab, "compute1", capture["id"])
    vnc = VncApi(api_server_host="127.0.0.1", api_server_port=CONFIG_API_PORT)
    read_back = vnc.virtual_machine_interface_read(fq_name=PROJECT + ["vm1-eth0"])
    assert read_back.get_virtual_machine_interface_properties().get_interface_mirror() \
        .get_mirror_to().get_analyzer_name() == ":".join(PROJECT + [DEFAULT_ANALYZER])
    lab.exec("vm1", "ping -c 1 10.1.1.12")
    settle(lab, capture["id"], 8)
    assert len(echo_frames(lab, capture["id"], tmp_path)) == 8

    properties = read_back.get_virtual_machine_interface_properties()
    properties.set_interface_mirror(None)
    read_back.set_virtual_machine_interface_properties(properties)
    vnc.virtual_machine_interface_update(read_back)
    assert port_capture(lab) is None
    stopped = lab.api("GET", f"/api/captures/{capture['id']}").json()
    assert stopped["state"] == "stopped" and "interface_mirror unset" in stopped["stop_reason"]
    assert capture_flows(lab, "compute1", capture["id"]) == []
    lab.exec("vm1", "ping -c 2 -i 0.2 10.1.1.12")
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
