"""Contrail's configuration API driven by Contrail's own client library, vnc_api
(contrail-api-client), against the config API app served by uvicorn on a free local port."""
from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import replace

import pytest
import requests
import uvicorn
from starlette.testclient import TestClient
from vnc_api.exceptions import BadRequest, HttpError, NoIdError, PermissionDenied, RefsExistError
from vnc_api.gen.resource_xsd import (
    ActionListType, AddressType, InterfaceMirrorType, MirrorActionType, PolicyEntriesType,
    PolicyRuleType, PortType, SequenceType, StaticMirrorNhType, SubnetType,
    VirtualMachineInterfacePropertiesType, VirtualNetworkPolicyType,
)
from vnc_api.vnc_api import NetworkPolicy, VirtualNetwork, VncApi

from mirrorlab.control import LabControlError
from mirrorlab.errors import ApiError
from mirrorlab.scenario import PolicyRule as ScenarioRule
from mirrorlab.vncclient import ConfigApiClient
from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, PORT_ORIGIN, plan_analyzer
from mirrorlab.controller.mirrorto import MirrorTo, StaticNhHeader
from mirrorlab.controller.rest import MAX_REQUEST_BYTES, ApiAccess
from mirrorlab.controller.service import ControllerService
from mirrorlab.controller.store import Store
from mirrorlab.controller.vncmodel import Catalog, lab_objects, object_uuid, render
from mirrorlab.controller.vncserver import ConfigApi, create_config_app
from mirrorlab.recorder import encapsulation_file
from mirrorlab.topofile import load
from tests.unit.test_service import FakeLab

PROJECT = ["default-domain", "default"]
INTERFACE_MIRROR = "virtual_machine_interface_properties.interface_mirror"
# The default analyzer of the `service` fixture: an1 on compute1, in svc-vn-left.
DEFAULT_DESTINATION = MirrorTo(analyzer_name=DEFAULT_ANALYZER, analyzer_ip_address="10.250.2.3",
                               analyzer_mac_address="02:00:0a:fa:02:03",
                               routing_instance="svc-vn-left")
# The default topology's fabric analyzer probe1, a VTEP.
PROBE = StaticNhHeader("192.168.100.254", "02:fb:00:00:00:01", 5000)


@pytest.fixture
def service(tmp_path, default_topo):
    """A controller service on default.yaml whose default analyzer exists, with a lab process
    that says yes to all (so the fabric's NIC mirrors of NIC-assisted captures can be set)."""
    store = Store(tmp_path / "controller.db")
    store.add_analyzer(plan_analyzer(default_topo, DEFAULT_ANALYZER, None, "compute1"))
    return ControllerService(default_topo, store, FakeLab(), tmp_path)


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(service):
    """The configuration API of `service` on a free loopback port: its base URL."""
    with serving(create_config_app(ConfigApi(service), ApiAccess.of())) as url:
        yield url


@contextlib.contextmanager
def serving(app):
    """`app` served by uvicorn on a free loopback port while the block runs: its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert time.monotonic() < deadline, "the configuration API did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(10)


@pytest.fixture
def vnc(server):
    """Contrail's client, connected to `server`."""
    host, port = server.rsplit("//", 1)[1].split(":")
    return VncApi(api_server_host=host, api_server_port=int(port))


def mirror_props(analyzer: str | None = DEFAULT_ANALYZER, direction: str = "both", **mirror_to):
    """VirtualMachineInterfacePropertiesType with an interface_mirror to `analyzer` (None:
    no analyzer_name) and the other MirrorActionType fields `mirror_to`."""
    action = MirrorActionType(analyzer_name=analyzer and ":".join(PROJECT + [analyzer]), **mirror_to)
    return VirtualMachineInterfacePropertiesType(
        interface_mirror=InterfaceMirrorType(traffic_direction=direction, mirror_to=action))


def vmi_fq_name(interface: str) -> list[str]:
    """The fq_name of the virtual-machine-interface of VM-side interface `interface`."""
    return PROJECT + [interface]


def set_mirror(vnc, interface: str, properties) -> None:
    """PUT `properties` as the virtual_machine_interface_properties of `interface`'s VMI."""
    vmi = vnc.virtual_machine_interface_read(fq_name=vmi_fq_name(interface))
    vmi.set_virtual_machine_interface_properties(properties)
    vnc.virtual_machine_interface_update(vmi)


def read_mirror(vnc, interface: str):
    """The interface_mirror of `interface`'s VMI as vnc_api reads it back."""
    return vnc.virtual_machine_interface_read(fq_name=vmi_fq_name(interface)) \
        .get_virtual_machine_interface_properties().get_interface_mirror()


def port_captures(service) -> list:
    """(interface, direction, analyzer, active) of every port-configured capture."""
    return [(c.interface, c.direction.value, c.analyzer, c.active)
            for c in service.list_captures() if c.origin == PORT_ORIGIN]


def test_the_home_page_links_collections_resource_bases_and_actions(server):
    links = [entry["link"] for entry in requests.get(f"{server}/").json()["links"]]
    by_rel = {(link["rel"], link["name"]): link["href"] for link in links}
    assert by_rel[("collection", "virtual-network")] == f"{server}/virtual-networks"
    assert by_rel[("resource-base", "virtual-machine-interface")] == f"{server}/virtual-machine-interface"
    assert by_rel[("action", "name-to-id")] == f"{server}/fqname-to-id"
    assert by_rel[("action", "id-to-name")] == f"{server}/id-to-fqname"


def test_vnc_api_lists_the_labs_networks_with_their_subnets(vnc):
    listed = vnc.virtual_networks_list()["virtual-networks"]
    assert sorted(n["fq_name"][-1] for n in listed) == ["blue", "red", "svc-vn-left"]
    blue = next(n for n in vnc.virtual_networks_list(detail=True) if n.name == "blue")
    (ipam_ref,) = blue.get_network_ipam_refs()
    assert ipam_ref["to"] == PROJECT + ["default-network-ipam"]
    prefixes = [(s.subnet.ip_prefix, s.subnet.ip_prefix_len, s.default_gateway)
                for s in ipam_ref["attr"].ipam_subnets]
    assert prefixes == [("10.1.1.0", 24, "10.1.1.1"), ("fd00:1:1::", 64, "fd00:1:1::1")]
    project = vnc.project_read(fq_name=PROJECT)
    assert {vn["to"][-1] for vn in project.get_virtual_networks()} == {"blue", "red", "svc-vn-left"}
    assert vnc.domain_read(fq_name=["default-domain"]).get_projects()[0]["to"] == PROJECT


def test_vnc_api_reads_a_vmi_by_fq_name_with_its_network_vm_and_instance_ip(vnc, default_topo):
    vmi = vnc.virtual_machine_interface_read(fq_name=vmi_fq_name("vm1-eth0"),
                                             fields=["instance_ip_back_refs"])
    assert vmi.get_virtual_network_refs()[0]["to"] == PROJECT + ["blue"]
    assert vmi.get_virtual_machine_refs()[0]["to"] == ["vm1"]
    assert vmi.get_virtual_machine_interface_mac_addresses().mac_address == [
        default_topo.vm("vm1").interfaces[0].mac]
    ips = {vnc.instance_ip_read(id=ref["uuid"]).instance_ip_address
           for ref in vmi.get_instance_ip_back_refs()}
    assert ips == {"10.1.1.11", "fd00:1:1::b"}
    vm = vnc.virtual_machine_read(fq_name=["vm1"], fields=["virtual_machine_interface_back_refs"])
    assert vm.get_virtual_machine_interface_back_refs()[0]["to"] == vmi_fq_name("vm1-eth0")


def test_fq_name_and_uuid_translate_both_ways_and_uuids_are_stable(vnc):
    uuid = vnc.fq_name_to_id("virtual-network", PROJECT + ["red"])
    assert uuid == object_uuid("virtual-network", PROJECT + ["red"])
    assert vnc.id_to_fq_name(uuid) == PROJECT + ["red"]
    assert vnc.id_to_fq_name_type(uuid) == (PROJECT + ["red"], "virtual-network")
    with pytest.raises(NoIdError):
        vnc.fq_name_to_id("virtual-network", PROJECT + ["green"])
    with pytest.raises(NoIdError):
        vnc.virtual_network_read(id="00000000-0000-0000-0000-000000000000")


def test_the_analyzers_are_service_instances_of_an_analyzer_template(vnc):
    instance = vnc.service_instance_read(fq_name=PROJECT + [DEFAULT_ANALYZER])
    assert instance.get_service_template_refs()[0]["to"] == ["default-domain", "analyzer-template"]
    assert instance.get_service_instance_properties().left_virtual_network == ":".join(
        PROJECT + ["svc-vn-left"])
    template = vnc.service_template_read(fq_name=["default-domain", "analyzer-template"])
    assert template.get_service_template_properties().service_type == "analyzer"


def test_interface_mirror_starts_a_port_capture_that_unset_stops(vnc, service):
    vmi = vnc.virtual_machine_interface_read(fq_name=vmi_fq_name("vm1-eth0"))
    vmi.set_virtual_machine_interface_properties(mirror_props(direction="ingress"))
    vnc.virtual_machine_interface_update(vmi)
    assert port_captures(service) == [("tap-vm1-0", "ingress", DEFAULT_ANALYZER, True)]
    (capture,) = service.active_captures()
    assert capture.lease_seconds is None
    assert service.store.captures()[-1].origin == PORT_ORIGIN

    mirror = read_mirror(vnc, "vm1-eth0")
    assert (mirror.traffic_direction, mirror.mirror_to.analyzer_name) == (
        "ingress", ":".join(PROJECT + [DEFAULT_ANALYZER]))

    vnc.virtual_machine_interface_update(vmi)  # the same setting again: nothing changes
    assert len(service.list_captures()) == 1

    vmi = vnc.virtual_machine_interface_read(fq_name=vmi_fq_name("vm1-eth0"))
    properties = vmi.get_virtual_machine_interface_properties()
    properties.set_interface_mirror(None)
    vmi.set_virtual_machine_interface_properties(properties)
    vnc.virtual_machine_interface_update(vmi)
    assert port_captures(service) == [("tap-vm1-0", "ingress", DEFAULT_ANALYZER, False)]
    assert vnc.virtual_machine_interface_read(fq_name=vmi_fq_name("vm1-eth0")) \
        .get_virtual_machine_interface_properties() is None


def test_the_juniper_header_names_the_network_by_the_fq_name_the_config_api_shows(vnc, service):
    """The VN the encapsulator is told to write in a port capture's Juniper header is the
    fq-name of the interface's virtual network as vnc_api reads it, as in Contrail."""
    set_mirror(vnc, "vm4-eth0", mirror_props())
    (capture,) = service.active_captures()
    written = json.loads(encapsulation_file(service.captures_dir, capture.label).read_text())
    [network] = vnc.virtual_machine_interface_read(fq_name=vmi_fq_name("vm4-eth0")).get_virtual_network_refs()
    assert written["vn"] == ":".join(network["to"]) == "default-domain:default:red"


def test_naming_the_default_analyzer_launches_it_when_it_is_not_running(tmp_path, default_topo):
    """As in Contrail, the default analyzer (named by its fq-name string) is launched on the
    interface's compute node if it does not exist yet; the port capture then goes to it."""
    lab = FakeLab()
    service = ControllerService(default_topo, Store(tmp_path / "controller.db"), lab, tmp_path)
    config = ConfigApi(service)
    vmi = config.catalog().by_name[("virtual-machine-interface", tuple(vmi_fq_name("vm4-eth0")))]
    config.update("virtual-machine-interface", vmi.uuid, {
        "virtual_machine_interface_properties": mirror_props().exportDict(name_=None)})
    assert lab.added == ["an1"]
    assert port_captures(service) == [("tap-vm4-0", "both", DEFAULT_ANALYZER, True)]
    assert service.topology.vm("an1").compute == "compute2"


def test_mirror_to_fields_at_their_defaults_are_taken(vnc, service):
    vmi = vnc.virtual_machine_interface_read(fq_name=vmi_fq_name("vm5-eth0"))
    vmi.set_virtual_machine_interface_properties(mirror_props(
        udp_port=8099, juniper_header=True, nh_mode="dynamic", nic_assisted_mirroring=False))
    vnc.virtual_machine_interface_update(vmi)
    assert port_captures(service) == [("tap-vm5-0", "both", DEFAULT_ANALYZER, True)]


def test_changing_the_direction_replaces_the_port_capture(vnc, service):
    vmi = vnc.virtual_machine_interface_read(fq_name=vmi_fq_name("vm2-eth0"))
    vmi.set_virtual_machine_interface_properties(mirror_props(direction="egress"))
    vnc.virtual_machine_interface_update(vmi)
    vmi.set_virtual_machine_interface_properties(mirror_props(direction="both"))
    vnc.virtual_machine_interface_update(vmi)
    assert port_captures(service) == [("tap-vm2-0", "both", DEFAULT_ANALYZER, True),
                                      ("tap-vm2-0", "egress", DEFAULT_ANALYZER, False)]


def test_a_port_mirror_survives_a_controller_restart(vnc, service, tmp_path, default_topo):
    vmi = vnc.virtual_machine_interface_read(fq_name=vmi_fq_name("vm4-eth0"))
    vmi.set_virtual_machine_interface_properties(mirror_props())
    vnc.virtual_machine_interface_update(vmi)
    restarted = ControllerService(default_topo, Store(tmp_path / "controller.db"),
                                  service.lab, tmp_path)
    vmi = ConfigApi(restarted).catalog().by_name[("virtual-machine-interface",
                                                  tuple(vmi_fq_name("vm4-eth0")))]
    assert vmi.props["virtual_machine_interface_properties"]["interface_mirror"][
        "traffic_direction"] == "both"
    compute = restarted.topology.compute("compute2")
    assert restarted.desired_flows_for(compute.dpid) == service.desired_flows_for(compute.dpid)
    assert restarted.desired_flows_for(compute.dpid) != frozenset(
        restarted._forwarding.get("compute2", ()))


NIC_ASSISTED = {"nic_assisted_mirroring": True, "nic_assisted_mirroring_vlan": 100}
STATIC = {"nh_mode": "static", "juniper_header": False, "static_nh_header": StaticMirrorNhType(
    PROBE.vtep_dst_ip_address, PROBE.vtep_dst_mac_address, PROBE.vni)}


@pytest.mark.parametrize("analyzer, mirror_to, destination", [
    (DEFAULT_ANALYZER, {"udp_port": 9000}, replace(DEFAULT_DESTINATION, udp_port=9000)),
    (DEFAULT_ANALYZER, {"juniper_header": False},
     replace(DEFAULT_DESTINATION, juniper_header=False)),
    (None, STATIC, MirrorTo(juniper_header=False, nh_mode="static", static_nh_header=PROBE)),
    (None, NIC_ASSISTED, MirrorTo(analyzer_name="probe1", analyzer_ip_address="192.168.100.254",
                                  analyzer_mac_address="02:fb:00:00:00:01", **NIC_ASSISTED)),
], ids=["udp_port", "no-juniper-header", "static", "nic-assisted"])
def test_every_mirror_to_mode_reaches_the_capture_service_and_reads_back(
        vnc, service, analyzer, mirror_to, destination):
    """vnc_api's MirrorActionType (every field sent, nulls and all) reaches the capture
    service whole: the port capture's destination is the mode asked for, and the VMI reads
    back that destination, filled in as the service resolved it."""
    set_mirror(vnc, "vm1-eth0", mirror_props(analyzer, direction="ingress", **mirror_to))
    (capture,) = service.active_captures()
    assert (capture.interface, capture.direction.value, capture.origin) == (
        "tap-vm1-0", "ingress", PORT_ORIGIN)
    assert capture.mirror_to == destination
    mirror = read_mirror(vnc, "vm1-eth0")
    shown = mirror.mirror_to
    assert (mirror.traffic_direction, shown.udp_port, shown.juniper_header, shown.nh_mode) == (
        "ingress", destination.udp_port, destination.juniper_header, destination.nh_mode)
    assert (shown.nic_assisted_mirroring, shown.nic_assisted_mirroring_vlan) == (
        destination.nic_assisted_mirroring, destination.nic_assisted_mirroring_vlan)
    vtep = shown.static_nh_header
    assert (vtep and (vtep.vtep_dst_ip_address, vtep.vtep_dst_mac_address, vtep.vni)) == (
        destination.static_nh_header and (PROBE.vtep_dst_ip_address, PROBE.vtep_dst_mac_address,
                                          PROBE.vni))
    if destination.analyzer_name == DEFAULT_ANALYZER:
        assert (shown.analyzer_name, shown.analyzer_ip_address, shown.routing_instance) == (
            ":".join(PROJECT + [DEFAULT_ANALYZER]), "10.250.2.3",
            ":".join(PROJECT + ["svc-vn-left", "svc-vn-left"]))
    if destination.nic_assisted_mirroring:
        assert service.lab.mirrors == {f"nic-{capture.id}": (100, "probe1")}


def test_what_was_read_back_written_again_changes_nothing(vnc, service):
    """A client that reads the VMI (its mirror_to filled in: analyzer address, MAC, routing
    instance) and writes it back unchanged keeps the running capture."""
    set_mirror(vnc, "vm2-eth0", mirror_props(udp_port=9000))
    vmi = vnc.virtual_machine_interface_read(fq_name=vmi_fq_name("vm2-eth0"))
    vnc.virtual_machine_interface_update(vmi)
    set_mirror(vnc, "vm2-eth0", vmi.get_virtual_machine_interface_properties())
    set_mirror(vnc, "vm2-eth0", mirror_props(udp_port=9000, encapsulation="ignored"))
    assert [c.mirror_to.udp_port for c in service.list_captures()] == [9000]


def test_a_changed_mirror_to_restarts_the_port_capture_with_the_new_destination(vnc, service):
    """Each change starts the new destination's capture and stops the old one (the reason
    says it changed); NIC-assisted to NIC-assisted on another VLAN too."""
    set_mirror(vnc, "vm1-eth0", mirror_props())
    set_mirror(vnc, "vm1-eth0", mirror_props(None, **STATIC))
    set_mirror(vnc, "vm1-eth0", mirror_props(None, **NIC_ASSISTED))
    set_mirror(vnc, "vm1-eth0", mirror_props(None, **NIC_ASSISTED | {"nic_assisted_mirroring_vlan": 101}))
    captures = service.list_captures()
    assert [(c.active, c.analyzer, c.mirror_to.nh_mode, c.mirror_to.nic_assisted_mirroring_vlan)
            for c in sorted(captures, key=lambda c: c.id)] == [
        (False, DEFAULT_ANALYZER, "dynamic", None), (False, "probe1", "static", None),
        (False, "probe1", "dynamic", 100), (True, "probe1", "dynamic", 101)]
    assert {c.stop_reason for c in captures if not c.active} == {
        "interface_mirror changed through the configuration API"}
    assert list(service.lab.mirrors.values()) == [(101, "probe1")]
    assert read_mirror(vnc, "vm1-eth0").mirror_to.nic_assisted_mirroring_vlan == 101


def test_a_nic_assisted_change_the_lab_refuses_keeps_the_old_setting(vnc, service):
    """NIC-assisted to a VLAN another interface's NIC-assisted capture holds: 409 naming the
    VLAN field, and the interface mirrors on its old VLAN."""
    set_mirror(vnc, "vm3-eth0", mirror_props(None, **NIC_ASSISTED))
    set_mirror(vnc, "vm1-eth0", mirror_props(None, **NIC_ASSISTED | {"nic_assisted_mirroring_vlan": 200}))
    with pytest.raises(RefsExistError, match=rf"{INTERFACE_MIRROR}\.mirror_to\."
                                             rf"nic_assisted_mirroring_vlan: .*VLAN 100"):
        set_mirror(vnc, "vm1-eth0", mirror_props(None, **NIC_ASSISTED))
    assert sorted((c.interface, c.mirror_to.nic_assisted_mirroring_vlan)
                  for c in service.active_captures()) == [("tap-vm1-0", 200), ("tap-vm3-0", 100)]
    assert sorted(service.lab.mirrors.values()) == [(100, "probe1"), (200, "probe1")]


def test_a_nic_assisted_change_that_cannot_restore_the_old_setting_says_so(vnc, service):
    """When the fabric's mirror can be set neither for the new NIC-assisted setting nor for
    the old one again, the refusal says the interface is not mirrored now, and the VMI reads
    back without interface_mirror."""
    set_mirror(vnc, "vm1-eth0", mirror_props(None, **NIC_ASSISTED))

    def refuse(name, vlan, fabric_analyzer):
        raise LabControlError("the lab process does not answer")

    service.lab.add_nic_mirror = refuse
    with pytest.raises(HttpError, match="NIC mirrors were not set.*previous setting was not "
                                        "started again either.*vm1-eth0 is not mirrored now"):
        set_mirror(vnc, "vm1-eth0", mirror_props(None, **NIC_ASSISTED | {"nic_assisted_mirroring_vlan": 101}))
    assert service.active_captures() == []
    assert vnc.virtual_machine_interface_read(fq_name=vmi_fq_name("vm1-eth0")) \
        .get_virtual_machine_interface_properties() is None


@pytest.mark.parametrize("properties, field, message", [
    (mirror_props(None, nh_mode="static", static_nh_header=STATIC["static_nh_header"]),
     "mirror_to.juniper_header", "a static destination takes no Juniper header"),
    (mirror_props(None, **STATIC | {"static_nh_header": StaticMirrorNhType(
        PROBE.vtep_dst_ip_address, PROBE.vtep_dst_mac_address, 0)}),
     "mirror_to.static_nh_header.vni", "0 is out of range"),
    (mirror_props(None, nic_assisted_mirroring=True, nic_assisted_mirroring_vlan=5000),
     "mirror_to.nic_assisted_mirroring_vlan", "5000 is out of range"),
    (mirror_props(None, **STATIC | {"static_nh_header": StaticMirrorNhType(
        "192.168.100.200", "02:fb:00:00:00:c8", 5000)}),
     "mirror_to.static_nh_header.vtep_dst_ip_address", "no VTEP of this lab has address 192.168.100.200"),
    (mirror_props(udp_port=70000), "mirror_to.udp_port", "70000 is out of range"),
    (mirror_props(nh_mode="sideways"), "mirror_to.nh_mode", "'sideways' is not a next-hop mode"),
    (mirror_props("no-such-analyzer"), "mirror_to.analyzer_name", "unknown analyzer 'no-such-analyzer'"),
    (mirror_props(**STATIC), "mirror_to.analyzer_name", "goes to its VTEP"),
    (mirror_props(routing_instance="default-domain:other:svc-vn-left:svc-vn-left"),
     "mirror_to.routing_instance", "is not a network's routing instance in project default-domain:default"),
    (mirror_props(direction="sideways"), "traffic_direction", "bad value 'sideways'"),
], ids=["static-with-header", "vni-0", "vlan-5000", "unknown-vtep", "udp-port", "nh-mode",
        "unknown-analyzer", "static-with-analyzer", "foreign-routing-instance", "direction"])
def test_an_invalid_mirror_to_is_refused_naming_the_field_and_changes_nothing(
        vnc, service, properties, field, message):
    """Contrail's checks, each a 400 (vnc_api's BadRequest) whose plain-text body names the
    VMI's field; the running setting stays as it was."""
    set_mirror(vnc, "vm1-eth0", mirror_props(direction="egress"))
    with pytest.raises(BadRequest) as refused:
        set_mirror(vnc, "vm1-eth0", properties)
    assert str(refused.value).startswith(f"{INTERFACE_MIRROR}.{field}: "), str(refused.value)
    assert message in str(refused.value)
    assert port_captures(service) == [("tap-vm1-0", "egress", DEFAULT_ANALYZER, True)]
    assert read_mirror(vnc, "vm1-eth0").traffic_direction == "egress"


def test_a_destination_that_is_not_the_analyzers_is_a_conflict(vnc, service):
    """A routing instance (or address, MAC) that is not the named analyzer's: 409 naming the
    field, as the capture service says; nothing starts."""
    with pytest.raises(RefsExistError, match=rf"^{INTERFACE_MIRROR}\.mirror_to\.routing_instance "
                                             rf"'blue' is not analyzer '{DEFAULT_ANALYZER}''s"):
        set_mirror(vnc, "vm1-eth0", mirror_props(routing_instance="default-domain:default:blue:blue"))
    assert service.list_captures() == []


def test_a_port_mirror_keeps_its_mirror_to_across_a_controller_restart(vnc, service, tmp_path,
                                                                       default_topo):
    """The store keeps the port capture's whole destination: a restarted controller reads the
    VMI back with it and wants the same flows."""
    set_mirror(vnc, "vm4-eth0", mirror_props(None, **STATIC))
    restarted = ControllerService(default_topo, Store(tmp_path / "controller.db"),
                                  service.lab, tmp_path)
    (capture,) = restarted.active_captures()
    assert capture.mirror_to == MirrorTo(juniper_header=False, nh_mode="static", static_nh_header=PROBE)
    vmi = ConfigApi(restarted).catalog().by_name[("virtual-machine-interface",
                                                  tuple(vmi_fq_name("vm4-eth0")))]
    assert vmi.props["virtual_machine_interface_properties"]["interface_mirror"]["mirror_to"][
        "static_nh_header"] == {"vtep_dst_ip_address": "192.168.100.254",
                                "vtep_dst_mac_address": "02:fb:00:00:00:01", "vni": 5000}
    compute = restarted.topology.compute("compute2")
    assert restarted.desired_flows_for(compute.dpid) == service.desired_flows_for(compute.dpid)


def test_a_setting_the_lab_cannot_apply_now_is_refused_with_the_reason_and_keeps_the_old(vnc, service):
    vmi = vnc.virtual_machine_interface_read(fq_name=vmi_fq_name("vm3-eth0"))
    vmi.set_virtual_machine_interface_properties(mirror_props(direction="egress"))
    vnc.virtual_machine_interface_update(vmi)
    service.lab_health = lambda: ["the lab process (pid 4242) died"]
    vmi.set_virtual_machine_interface_properties(mirror_props(direction="both"))
    with pytest.raises(HttpError, match="the lab process .* died") as refused:
        vnc.virtual_machine_interface_update(vmi)
    assert refused.value.status_code == 500  # not 503, which vnc_api retries for 30 s
    assert port_captures(service) == [("tap-vm3-0", "egress", DEFAULT_ANALYZER, True)]


def test_topology_objects_cannot_be_created_or_deleted(vnc, service):
    project = vnc.project_read(fq_name=PROJECT)
    with pytest.raises(PermissionDenied, match="cannot be created through this API"):
        vnc.virtual_network_create(VirtualNetwork("green", parent_obj=project))
    with pytest.raises(PermissionDenied, match="cannot be deleted through this API"):
        vnc.virtual_network_delete(fq_name=PROJECT + ["blue"])
    assert len(vnc.virtual_networks_list()["virtual-networks"]) == 3


def put(server: str, path: str, body) -> requests.Response:
    """A raw PUT (bytes as they are, anything else as JSON)."""
    data = body if isinstance(body, bytes) else json.dumps(body)
    return requests.put(f"{server}{path}", data=data, headers={"Content-Type": "application/json"})


def test_bad_input_gets_a_clear_4xx_and_changes_nothing(server, service):
    vmi = f"/virtual-machine-interface/{object_uuid('virtual-machine-interface', vmi_fq_name('vm1-eth0'))}"
    vn = f"/virtual-network/{object_uuid('virtual-network', PROJECT + ['blue'])}"
    refusals = [
        (put(server, vmi, b"{not json"), 400, "not valid JSON"),
        (put(server, vmi, {"virtual-network": {}}), 400, "must be {\"virtual-machine-interface\""),
        (put(server, vmi, {"virtual-machine-interface": {"colour": "blue"}}), 400,
         "Unknown field 'colour' for virtual-machine-interface"),
        (put(server, vmi, {"virtual-machine-interface": {"virtual_machine_interface_properties": {
            "interface_mirror": {"mirror_to": {"analyzer_name": DEFAULT_ANALYZER, "colour": 1}}}}}),
         400, "interface_mirror.mirror_to.colour: unknown field"),
        (put(server, vmi, {"virtual-machine-interface": {"virtual_network_refs": [
            {"to": PROJECT + ["red"]}]}}), 403, "its virtual_network_refs cannot be changed"),
        (put(server, vn, {"virtual-network": {"network_ipam_refs": [{"to": PROJECT + [
            "default-network-ipam"], "attr": {"ipam_subnets": [{"subnet": {
                "ip_prefix": "10.9.9.0", "ip_prefix_len": 33}}]}}]}}), 403, "mirrors the lab's topology"),
        (put(server, vmi, {"virtual-machine-interface": {"uuid": "not-this-one"}}), 400,
         "does not match the object at this URL"),
        (put(server, "/virtual-machine-interface/00000000-0000-0000-0000-000000000000",
             {"virtual-machine-interface": {}}), 404, "No virtual-machine-interface object found"),
        (requests.get(f"{server}/routing-instances"), 404, "Unknown collection 'routing-instances'"),
        (requests.post(f"{server}/fqname-to-id", data=json.dumps({"fq_name": "blue"})), 400,
         "fqname-to-id needs"),
        (requests.post(f"{server}/id-to-fqname", data=json.dumps({"uuid": "nope"})), 404,
         "UUID nope not found"),
        (requests.post(f"{server}/virtual-networks", data=b"[1"), 400, "not valid JSON"),
    ]
    for response, status, message in refusals:
        assert (response.status_code, message in response.text) == (status, True), response.text
    assert service.list_captures() == []


def test_query_options_select_fields_back_refs_and_details(server):
    vn = object_uuid("virtual-network", PROJECT + ["blue"])
    full = requests.get(f"{server}/virtual-network/{vn}").json()["virtual-network"]
    assert {"virtual_machine_interface_back_refs", "network_ipam_refs", "parent_uuid"} <= set(full)
    lean = requests.get(f"{server}/virtual-network/{vn}?exclude_back_refs=true").json()["virtual-network"]
    assert "virtual_machine_interface_back_refs" not in lean and "network_ipam_refs" in lean
    some = requests.get(f"{server}/virtual-network/{vn}?fields=instance_ip_back_refs").json()[
        "virtual-network"]
    assert "instance_ip_back_refs" in some and "virtual_machine_interface_back_refs" not in some
    assert some["network_ipam_refs"] == full["network_ipam_refs"]
    listed = requests.get(f"{server}/virtual-networks?detail=true").json()["virtual-networks"]
    assert [entry["virtual-network"]["name"] for entry in listed] == ["blue", "red", "svc-vn-left"]
    counted = requests.get(f"{server}/virtual-machine-interfaces?count=true").json()
    assert counted == {"virtual-machine-interfaces": {"count": 6}}
    with_field = requests.get(f"{server}/virtual-networks?fields=virtual_network_network_id").json()
    assert [n["virtual_network_network_id"] for n in with_field["virtual-networks"]] == [1, 2, 3]


def test_lists_filter_by_parent_back_ref_uuid_and_fq_name(vnc):
    def names(listed):
        return [entry["fq_name"][-1] for entry in listed["virtual-machine-interfaces"]]

    project = vnc.fq_name_to_id("project", PROJECT)
    red = vnc.fq_name_to_id("virtual-network", PROJECT + ["red"])
    assert len(names(vnc.virtual_machine_interfaces_list(parent_id=project))) == 6
    assert names(vnc.virtual_machine_interfaces_list(parent_fq_name=["default-domain", "other"])) == []
    assert names(vnc.virtual_machine_interfaces_list(back_ref_id=red)) == ["vm4-eth0", "vm5-eth0"]
    vm5 = vnc.fq_name_to_id("virtual-machine-interface", PROJECT + ["vm5-eth0"])
    assert names(vnc.virtual_machine_interfaces_list(obj_uuids=[vm5])) == ["vm5-eth0"]
    assert names(vnc.virtual_machine_interfaces_list(fq_names=[PROJECT + ["vm2-eth0"]])) == ["vm2-eth0"]


def test_a_foreign_host_a_foreign_origin_a_large_body_and_a_missing_token_are_refused(service):
    guarded = TestClient(create_config_app(ConfigApi(service), ApiAccess.of((), "s3cret")),
                         base_url="http://127.0.0.1")
    token = {"X-Auth-Token": "s3cret"}
    assert guarded.get("/", headers={"Host": "evil.example"} | token).status_code == 403
    refused = guarded.get("/")
    assert refused.status_code == 401 and "X-Auth-Token" in refused.text
    assert guarded.get("/", headers=token).status_code == 200
    policy = json.dumps({"network-policy": {"fq_name": PROJECT + ["csrf"]}})
    cross_site = guarded.post("/network-policys", content=policy,
                              headers={"Origin": "http://evil.example", "Content-Type": "text/plain"} | token)
    assert cross_site.status_code == 403 and "origin 'http://evil.example'" in cross_site.text
    large = guarded.post("/network-policys", content=b" " * (MAX_REQUEST_BYTES + 1) + policy.encode(),
                         headers=token)
    assert large.status_code == 413
    assert guarded.get("/network-policys", headers=token).json() == {"network-policys": []}
    assert guarded.post("/network-policys", content=policy, headers=token).status_code == 200


def policy_rule(action: str = "pass", src: str = "blue", dst: str = "red", **mirror_to) -> PolicyRuleType:
    """A rule between two of the lab's networks, any protocol and port, both ways."""
    any_port = [PortType(start_port=-1, end_port=-1)]
    return PolicyRuleType(
        direction="<>", protocol="any",
        src_addresses=[AddressType(virtual_network=":".join(PROJECT + [src]))],
        dst_addresses=[AddressType(virtual_network=":".join(PROJECT + [dst]))],
        src_ports=any_port, dst_ports=any_port,
        action_list=ActionListType(simple_action=None if mirror_to else action,
                                   mirror_to=MirrorActionType(**mirror_to) if mirror_to else None))


def rule_actions(policy) -> list[str]:
    """The rules of `policy` in order, as "pass", "deny" or "mirror:ANALYZER"."""
    return [f"mirror:{r.action_list.mirror_to.analyzer_name.split(':')[-1]}" if r.action_list.mirror_to
            else r.action_list.simple_action for r in policy.get_network_policy_entries().policy_rule]


def test_network_policies_are_created_attached_in_sequence_reordered_detached_and_deleted(vnc, service):
    project = vnc.project_read(fq_name=PROJECT)
    policy = NetworkPolicy("blue-red", parent_obj=project, network_policy_entries=PolicyEntriesType(
        [policy_rule("pass"), policy_rule(analyzer_name=":".join(PROJECT + [DEFAULT_ANALYZER]))]))
    uuid = vnc.network_policy_create(policy)
    assert uuid == object_uuid("network-policy", PROJECT + ["blue-red"])
    stored = vnc.network_policy_read(fq_name=PROJECT + ["blue-red"])
    assert rule_actions(stored) == ["pass", f"mirror:{DEFAULT_ANALYZER}"]
    assert [p["fq_name"] for p in vnc.network_policys_list()["network-policys"]] == [PROJECT + ["blue-red"]]

    for network, major in (("blue", 1), ("red", 2)):
        vn = vnc.virtual_network_read(fq_name=PROJECT + [network])
        vn.add_network_policy(stored, VirtualNetworkPolicyType(sequence=SequenceType(major, 0)))
        vnc.virtual_network_update(vn)
    (ref,) = vnc.virtual_network_read(fq_name=PROJECT + ["red"]).get_network_policy_refs()
    assert (ref["to"], ref["attr"].sequence.major, ref["attr"].sequence.minor) == (
        PROJECT + ["blue-red"], 2, 0)
    attached = vnc.network_policy_read(fq_name=PROJECT + ["blue-red"],
                                       fields=["virtual_network_back_refs"])
    assert sorted(r["to"][-1] for r in attached.get_virtual_network_back_refs()) == ["blue", "red"]

    with pytest.raises(RefsExistError, match="still referred"):
        vnc.network_policy_delete(id=uuid)

    entries = stored.get_network_policy_entries()
    entries.policy_rule.reverse()
    stored.set_network_policy_entries(entries)
    vnc.network_policy_update(stored)
    assert rule_actions(vnc.network_policy_read(id=uuid)) == [f"mirror:{DEFAULT_ANALYZER}", "pass"]

    restarted = ConfigApi(service).catalog()  # what the store gives a restarted controller
    assert restarted.by_uuid[uuid].props["network_policy_entries"]["policy_rule"][0]["action_list"][
        "mirror_to"]["analyzer_name"].endswith(DEFAULT_ANALYZER)
    assert [r.to[-1] for r in restarted.by_name[("virtual-network", tuple(PROJECT + ["blue"]))].refs
            if r.type == "network-policy"] == ["blue-red"]

    for network in ("blue", "red"):
        vn = vnc.virtual_network_read(fq_name=PROJECT + [network])
        vn.del_network_policy(stored)
        vnc.virtual_network_update(vn)
    assert vnc.virtual_network_read(fq_name=PROJECT + ["blue"]).get_network_policy_refs() is None
    vnc.network_policy_delete(id=uuid)
    assert vnc.network_policys_list()["network-policys"] == []
    assert ConfigApi(service).catalog().of_type("network-policy") == []
    assert service.list_captures() == []  # policies are stored; their traffic semantics are not emulated yet


def test_bad_policies_and_refs_are_refused_and_change_nothing(vnc, server):
    project = vnc.project_read(fq_name=PROJECT)
    bad_rules = [
        (policy_rule(src="green"), BadRequest, "unknown virtual network 'default-domain:default:green'"),
        (policy_rule(action="drop"), BadRequest, "simple_action: bad value 'drop'"),
        (policy_rule(analyzer_name="nowhere"), BadRequest, "unknown service instance 'nowhere'"),
        (policy_rule(analyzer_name=DEFAULT_ANALYZER, nic_assisted_mirroring=True,
                     nic_assisted_mirroring_vlan=100), BadRequest,
         r"policy_rule\[0\]\.action_list\.mirror_to\.nic_assisted_mirroring: a policy rule cannot "
         r"mirror NIC-assisted"),
        (policy_rule(**{**STATIC, "juniper_header": True}), BadRequest,
         r"action_list\.mirror_to\.juniper_header: a static destination takes no Juniper header"),
        (policy_rule(**{**STATIC, "static_nh_header": StaticMirrorNhType(
            "192.168.100.200", "02:fb:00:00:00:01", 5000)}), BadRequest,
         r"mirror_to\.static_nh_header\.vtep_dst_ip_address: no VTEP of this lab"),
    ]
    for rule, error, message in bad_rules:
        with pytest.raises(error, match=message):
            vnc.network_policy_create(NetworkPolicy("bad", parent_obj=project,
                                                    network_policy_entries=PolicyEntriesType([rule])))
    cidr = policy_rule()
    cidr.src_addresses = [AddressType(subnet=SubnetType("10.1.1.0", 33))]
    with pytest.raises(BadRequest, match=r"policy_rule\[0\]\.src_addresses\[0\]\.subnet: bad CIDR '10.1.1.0/33'"):
        vnc.network_policy_create(NetworkPolicy("bad", parent_obj=project,
                                                network_policy_entries=PolicyEntriesType([cidr])))
    bad_direction = policy_rule()
    bad_direction.direction = "<"
    with pytest.raises(BadRequest, match="direction: bad value '<'"):
        vnc.network_policy_create(NetworkPolicy("bad", parent_obj=project,
                                                network_policy_entries=PolicyEntriesType([bad_direction])))
    vn = f"/virtual-network/{object_uuid('virtual-network', PROJECT + ['blue'])}"
    unknown_ref = put(server, vn, {"virtual-network": {"network_policy_refs": [
        {"to": PROJECT + ["no-such-policy"], "attr": {"sequence": {"major": 0, "minor": 0}}}]}})
    assert unknown_ref.status_code == 404 and "unknown network-policy" in unknown_ref.text
    twice = requests.post(f"{server}/network-policys", data=json.dumps(
        {"network-policy": {"fq_name": PROJECT + ["p"], "colour": "blue"}}))
    assert twice.status_code == 400 and "Unknown field 'colour' for network-policy" in twice.text
    assert vnc.network_policys_list()["network-policys"] == []
    assert vnc.virtual_network_read(fq_name=PROJECT + ["blue"]).get_network_policy_refs() is None


def test_every_shipped_topology_gives_objects_whose_refs_and_parents_resolve(topologies_dir):
    for path in sorted(topologies_dir.glob("*.yaml")):
        topology = load(path)
        objects = lab_objects(topology, {})
        catalog = Catalog(objects)
        assert len(catalog.by_uuid) == len(objects), f"{path.name}: two objects share a uuid"
        for obj in objects:
            for ref in obj.refs:
                assert (ref.type, ref.to) in catalog.by_name, f"{path.name}: {obj.fq_name} -> {ref.to}"
            if obj.parent_type:
                assert (obj.parent_type, obj.parent_fq_name) in catalog.by_name, f"{path.name}: {obj.fq_name}"
            render(obj, catalog, "http://lab")  # every object renders
        assert {o.fq_name[-1] for o in catalog.of_type("virtual-network")} == {n.name for n in topology.networks}
        assert len(catalog.of_type("virtual-machine-interface")) == len(list(topology.interfaces()))
        assert Catalog(lab_objects(load(path), {})).by_uuid.keys() == catalog.by_uuid.keys()  # stable


def test_a_policy_rule_takes_every_mirror_to_a_capture_takes_but_nic_assisted(vnc, service):
    """A static destination and one without the Juniper header, written by vnc_api, reach the
    vRouters' rules as the capture service's MirrorTo, and their copies' encapsulation (VXLAN
    to the VTEP; the original frame)."""
    project = vnc.project_read(fq_name=PROJECT)
    policy = NetworkPolicy("modes", parent_obj=project, network_policy_entries=PolicyEntriesType([
        policy_rule(**STATIC), policy_rule(analyzer_name=":".join(PROJECT + [DEFAULT_ANALYZER]),
                                           juniper_header=False, udp_port=9000)]))
    vnc.network_policy_create(policy)
    for network in ("blue", "red"):
        vn = vnc.virtual_network_read(fq_name=PROJECT + [network])
        vn.add_network_policy(policy, VirtualNetworkPolicyType(sequence=SequenceType(0, 0)))
        vnc.virtual_network_update(vn)
    static, headerless = service.policies["blue"]
    assert (static.mirror_to.nh_mode, static.mirror_to.static_nh_header, static.analyzer) == (
        "static", PROBE, None)
    assert (headerless.mirror_to.juniper_header, headerless.mirror_to.udp_port,
            headerless.analyzer) == (False, 9000, DEFAULT_ANALYZER)
    wires = [json.loads(path.read_text()) for path in service.captures_dir.glob("label-*.wire.json")]
    assert {(w["vni"], w["juniper_header"], w["record"]) for w in wires} == {
        (5000, False, False), (None, False, False)}


def test_the_labs_own_client_writes_policies_as_vnc_api_reads_them(server, vnc, service, default_topo):
    """`mirrorlab.vncclient` (what scenarios write policies with): a policy created with rules in
    Contrail's policy_rule form, attached in sequence beside a policy vnc_api attached, its rules
    reordered, detached; vnc_api reads each state back, the vRouters' rules follow, and a bad
    rule is refused with contrail-api's message naming the field."""
    client = ConfigApiClient(server)
    policy = PROJECT + ["ordered"]
    passing = ScenarioRule("<>", "icmp", ("blue",), ("red",), (), (), "pass", None)
    mirror = ScenarioRule("<>", "any", ("blue",), ("red",), (), (), "pass", DEFAULT_ANALYZER)
    assert client.fq_name_to_id("network-policy", policy) is None
    uuid = client.write_policy(policy, [rule.policy_rule(default_topo) for rule in (passing, mirror)])
    assert uuid == object_uuid("network-policy", policy)
    assert rule_actions(vnc.network_policy_read(fq_name=policy)) == ["pass", f"mirror:{DEFAULT_ANALYZER}"]

    other = NetworkPolicy("other", parent_obj=vnc.project_read(fq_name=PROJECT),
                          network_policy_entries=PolicyEntriesType([policy_rule("deny", "blue", "blue")]))
    vnc.network_policy_create(other)
    blue = vnc.virtual_network_read(fq_name=PROJECT + ["blue"])
    blue.add_network_policy(other, VirtualNetworkPolicyType(sequence=SequenceType(5, 0)))
    vnc.virtual_network_update(blue)
    client.attach_policy(PROJECT + ["blue"], policy, (0, 0))
    client.attach_policy(PROJECT + ["red"], policy, (2, 1))
    refs = vnc.virtual_network_read(fq_name=PROJECT + ["blue"]).get_network_policy_refs()
    assert sorted((r["to"][-1], r["attr"].sequence.major) for r in refs) == [("ordered", 0), ("other", 5)]
    (ref,) = vnc.virtual_network_read(fq_name=PROJECT + ["red"]).get_network_policy_refs()
    assert (ref["to"], ref["attr"].sequence.major, ref["attr"].sequence.minor) == (policy, 2, 1)
    assert [(r.policy.split(":")[-1], r.protocol, r.analyzer) for r in service.policies["red"]] == [
        ("ordered", 1, None), ("ordered", None, DEFAULT_ANALYZER)]

    client.write_policy(policy, client.policy_rules(policy)[::-1])
    assert rule_actions(vnc.network_policy_read(fq_name=policy)) == [f"mirror:{DEFAULT_ANALYZER}", "pass"]
    assert [r.analyzer for r in service.policies["red"]] == [DEFAULT_ANALYZER, None]

    with pytest.raises(ApiError) as refused:
        client.write_policy(policy, [{**passing.policy_rule(default_topo), "protocol": "gre"}])
    assert refused.value.status == 400
    assert refused.value.message.startswith("network_policy_entries.policy_rule[0].protocol: bad value 'gre'")
    assert rule_actions(vnc.network_policy_read(fq_name=policy)) == [f"mirror:{DEFAULT_ANALYZER}", "pass"]

    client.detach_policy(PROJECT + ["blue"], policy)
    client.detach_policy(PROJECT + ["red"], policy)
    (ref,) = vnc.virtual_network_read(fq_name=PROJECT + ["blue"]).get_network_policy_refs()
    assert ref["to"] == PROJECT + ["other"]
    assert vnc.virtual_network_read(fq_name=PROJECT + ["red"]).get_network_policy_refs() is None
    assert "red" not in service.policies


def test_the_labs_own_client_shows_the_token_as_vnc_api_does(service):
    """A lab started with a token: the client sends it as X-Auth-Token (vnc_api's header);
    without it the configuration API refuses with 401."""
    guarded = create_config_app(ConfigApi(service), ApiAccess.of((), "s3cret"))
    with serving(guarded) as url:
        blue = PROJECT + ["blue"]
        assert ConfigApiClient(url, "s3cret").fq_name_to_id("virtual-network", blue) == \
            object_uuid("virtual-network", blue)
        with pytest.raises(ApiError) as refused:
            ConfigApiClient(url).fq_name_to_id("virtual-network", blue)
        assert refused.value.status == 401 and "X-Auth-Token" in refused.value.message
