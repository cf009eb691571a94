"""A capture's destination, Contrail's mirror_to: parsed and checked as Contrail does (each error a
400 naming the field), filled in from the named analyzer, shown whole by GET, kept across a
controller restart, and built from the CLI's flags."""
from __future__ import annotations

import pytest

from fastapi.testclient import TestClient

from mirrorlab.cli import build_parser, mirror_to_from_flags
from mirrorlab.controller import rest
from mirrorlab.controller.errors import InvalidRequest
from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, plan_analyzer
from mirrorlab.controller.mirrorto import MirrorTo, StaticNhHeader, parse_mirror_to
from mirrorlab.controller.service import ControllerService
from mirrorlab.controller.store import Store
from mirrorlab.control import LabControl
from tests.unit.test_service import FakeLab

TARGET = {"vrouter": "compute1", "interface": "tap-vm1-0"}
STATIC = {"vtep_dst_ip_address": "192.168.100.200", "vtep_dst_mac_address": "02:fa:00:00:00:c8",
          "vni": 5000}
# The default analyzer of the `service` fixture: an1 on compute1, in svc-vn-left.
DEFAULT_DESTINATION = {
    "analyzer_name": DEFAULT_ANALYZER, "analyzer_ip_address": "10.250.2.3",
    "analyzer_mac_address": "02:00:0a:fa:02:03", "routing_instance": "svc-vn-left",
    "udp_port": 8099, "juniper_header": True, "nh_mode": "dynamic", "static_nh_header": None,
    "nic_assisted_mirroring": False, "nic_assisted_mirroring_vlan": None,
}


def test_contrails_valid_combinations_parse():
    """Dynamic with the header (the default), dynamic without it, static without it (the
    header's default there), NIC-assisted; udp_port 0 means 8099."""
    assert parse_mirror_to(None) == MirrorTo()
    assert parse_mirror_to({"udp_port": 0}) == MirrorTo(udp_port=8099)
    assert parse_mirror_to({"juniper_header": False, "udp_port": 9000}) == MirrorTo(
        juniper_header=False, udp_port=9000)
    assert parse_mirror_to({"nh_mode": "static", "static_nh_header": STATIC}) == MirrorTo(
        juniper_header=False, nh_mode="static",
        static_nh_header=StaticNhHeader("192.168.100.200", "02:fa:00:00:00:c8", 5000))
    assert parse_mirror_to({"nic_assisted_mirroring": True, "nic_assisted_mirroring_vlan": 4094}) \
        == MirrorTo(nic_assisted_mirroring=True, nic_assisted_mirroring_vlan=4094)


@pytest.mark.parametrize("mirror_to, field", [
    ({"nh_mode": "static", "juniper_header": True, "static_nh_header": STATIC},
     "mirror_to.juniper_header"),
    ({"nh_mode": "static"}, "mirror_to.static_nh_header"),
    ({"static_nh_header": STATIC}, "mirror_to.static_nh_header"),
    ({"nh_mode": "static", "static_nh_header": STATIC | {"vni": 0}}, "mirror_to.static_nh_header.vni"),
    ({"nh_mode": "static", "static_nh_header": STATIC | {"vni": 16777216}},
     "mirror_to.static_nh_header.vni"),
    ({"nh_mode": "static", "static_nh_header": STATIC | {"vtep_dst_ip_address": "300.1.1.1"}},
     "mirror_to.static_nh_header.vtep_dst_ip_address"),
    ({"nh_mode": "static", "static_nh_header": STATIC | {"vtep_dst_mac_address": "02:fa"}},
     "mirror_to.static_nh_header.vtep_dst_mac_address"),
    ({"nh_mode": "static", "static_nh_header": STATIC | {"color": "red"}},
     "mirror_to.static_nh_header.color"),
    ({"nh_mode": "sideways"}, "mirror_to.nh_mode"),
    ({"udp_port": 65536}, "mirror_to.udp_port"),
    ({"udp_port": -1}, "mirror_to.udp_port"),
    ({"nic_assisted_mirroring": True, "nic_assisted_mirroring_vlan": 0},
     "mirror_to.nic_assisted_mirroring_vlan"),
    ({"nic_assisted_mirroring": True, "nic_assisted_mirroring_vlan": 4095},
     "mirror_to.nic_assisted_mirroring_vlan"),
    ({"nic_assisted_mirroring": True}, "mirror_to.nic_assisted_mirroring_vlan"),
    ({"nic_assisted_mirroring_vlan": 10}, "mirror_to.nic_assisted_mirroring_vlan"),
    ({"analyzer_ip_address": "10.250.2"}, "mirror_to.analyzer_ip_address"),
    ({"analyzer_mac_address": "not-a-mac"}, "mirror_to.analyzer_mac_address"),
    ({"analyzer_name": ""}, "mirror_to.analyzer_name"),
    ({"mirror_index": 3}, "mirror_to.mirror_index"),
])
def test_each_invalid_destination_is_a_400_naming_its_field(client, mirror_to, field):
    """Every rule Contrail has for mirror_to, through the REST app: 400, the field named, and
    no capture started."""
    response = client.post("/api/captures", json=TARGET | {"mirror_to": mirror_to})
    assert (response.status_code, response.json()["field"]) == (400, field), response.text
    assert client.get("/api/captures").json() == []


def test_the_service_checks_a_destination_too(service):
    """The service (what the REST app and the Lab API call) refuses what the schema would."""
    with pytest.raises(InvalidRequest) as refused:
        service.start_capture("compute1", "tap-vm1-0", mirror_to={"udp_port": True})
    assert refused.value.field == "mirror_to.udp_port"
    assert service.list_captures() == []


def test_get_shows_the_whole_destination_filled_in_from_the_analyzer(client):
    """Without mirror_to the default analyzer, dynamic, Juniper header, UDP 8099; the analyzer's
    address, MAC and network are filled in, in POST's answer, GET and the list."""
    started = client.post("/api/captures", json=TARGET).json()
    assert started["mirror_to"] == DEFAULT_DESTINATION
    assert client.get(f"/api/captures/{started['id']}").json()["mirror_to"] == DEFAULT_DESTINATION
    assert client.get("/api/captures").json()[0]["mirror_to"] == DEFAULT_DESTINATION


@pytest.mark.parametrize("mirror_to", [
    {"analyzer_name": DEFAULT_ANALYZER},
    {"analyzer_ip_address": "10.250.2.3"},
    {"analyzer_name": DEFAULT_ANALYZER, "analyzer_mac_address": "02:00:0A:FA:02:03",
     "routing_instance": "svc-vn-left", "udp_port": 8099, "juniper_header": True,
     "nh_mode": "dynamic", "nic_assisted_mirroring": False},
])
def test_an_analyzer_is_named_by_name_or_address(client, mirror_to):
    """analyzer_name, or the analyzer's address alone, names the analyzer; fields that agree
    with it are taken as they are (a MAC in capitals too)."""
    response = client.post("/api/captures", json=TARGET | {"mirror_to": mirror_to})
    assert response.status_code == 201, response.text
    assert response.json()["mirror_to"] == DEFAULT_DESTINATION


@pytest.mark.parametrize("body, status, field", [
    ({"mirror_to": {"analyzer_name": "nope"}}, 404, "mirror_to.analyzer_name"),
    ({"mirror_to": {"analyzer_ip_address": "10.250.2.99"}}, 404, "mirror_to.analyzer_ip_address"),
    ({"analyzer": DEFAULT_ANALYZER, "mirror_to": {"analyzer_name": DEFAULT_ANALYZER}}, 400,
     "mirror_to.analyzer_name"),
    ({"mirror_to": {"analyzer_name": DEFAULT_ANALYZER, "analyzer_mac_address": "02:00:00:00:00:01"}},
     409, "mirror_to.analyzer_mac_address"),
    ({"mirror_to": {"analyzer_name": DEFAULT_ANALYZER, "routing_instance": "blue"}}, 409,
     "mirror_to.routing_instance"),
])
def test_a_destination_that_is_not_the_analyzers_is_refused(client, body, status, field):
    """An unknown analyzer (by name or address) is a 404; naming it twice a 400; an address or
    network the named analyzer does not have a 409; nothing starts."""
    response = client.post("/api/captures", json=TARGET | body)
    assert (response.status_code, response.json()["field"]) == (status, field), response.text
    assert client.get("/api/captures").json() == []


@pytest.mark.parametrize("mirror_to, field", [
    ({"nic_assisted_mirroring": True, "nic_assisted_mirroring_vlan": 10, "nh_mode": "static",
      "static_nh_header": STATIC}, "mirror_to.nic_assisted_mirroring"),
])
def test_a_valid_destination_the_lab_does_not_send_yet_is_a_409(client, mirror_to, field):
    """NIC-assisted mirroring with a static destination is not emulated: refused (409, the
    field named), never sent another way."""
    response = client.post("/api/captures", json=TARGET | {"mirror_to": mirror_to})
    assert (response.status_code, response.json()["field"]) == (409, field), response.text
    assert "not emulated" in response.json()["error"]
    assert client.get("/api/captures").json() == []


@pytest.mark.parametrize("mirror_to", [{"juniper_header": False}, {"udp_port": 9000}])
def test_dynamic_destinations_without_the_header_or_to_another_port_start(client, mirror_to):
    """The lab sends both: they start and show as asked."""
    response = client.post("/api/captures", json=TARGET | {"mirror_to": mirror_to})
    assert response.status_code == 201, response.text
    assert response.json()["mirror_to"] == DEFAULT_DESTINATION | mirror_to


PROBE = {"vtep_dst_ip_address": "192.168.100.254", "vtep_dst_mac_address": "02:fb:00:00:00:01",
         "vni": 5000}


def test_a_static_destination_goes_to_a_vtep_of_the_lab(client):
    """nh_mode static to the default topology's fabric analyzer starts; GET shows it whole."""
    response = client.post("/api/captures", json=TARGET | {"mirror_to": {
        "nh_mode": "static", "static_nh_header": PROBE}})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["analyzer"] == "probe1"
    assert body["mirror_to"] | {} == {
        "analyzer_name": None, "analyzer_ip_address": None, "analyzer_mac_address": None,
        "routing_instance": None, "udp_port": 8099, "juniper_header": False, "nh_mode": "static",
        "static_nh_header": PROBE, "nic_assisted_mirroring": False,
        "nic_assisted_mirroring_vlan": None}


@pytest.mark.parametrize("body, status, field", [
    ({"mirror_to": {"nh_mode": "static", "static_nh_header": PROBE | {
        "vtep_dst_ip_address": "192.168.100.200"}}}, 404,
     "mirror_to.static_nh_header.vtep_dst_ip_address"),
    ({"mirror_to": {"nh_mode": "static", "static_nh_header": PROBE | {
        "vtep_dst_mac_address": "02:fb:00:00:00:09"}}}, 409,
     "mirror_to.static_nh_header.vtep_dst_mac_address"),
    ({"analyzer": DEFAULT_ANALYZER, "mirror_to": {"nh_mode": "static", "static_nh_header": PROBE}},
     400, "analyzer"),
])
def test_a_static_destination_outside_the_lab_is_refused(client, body, status, field):
    """A VTEP address no fabric analyzer of the lab has (nothing leaves the machine), a MAC that
    is not the VTEP's, an analyzer instance named with a static destination: refused."""
    response = client.post("/api/captures", json=TARGET | body)
    assert (response.status_code, response.json()["field"]) == (status, field), response.text
    assert client.get("/api/captures").json() == []


@pytest.fixture
def lab_and_client(tmp_path, default_topo):
    """A lab process that says yes to all (its fabric mirrors kept), and the API of a
    controller using it."""
    lab = FakeLab()
    store = Store(tmp_path / "controller.db")
    store.add_analyzer(plan_analyzer(default_topo, DEFAULT_ANALYZER, None, "compute1"))
    service = ControllerService(default_topo, store, lab, tmp_path)
    return lab, TestClient(rest.create_app(service, lease_seconds=5), base_url="http://127.0.0.1")


def test_nic_assisted_mirroring_goes_to_a_fabric_analyzer_one_vlan_at_a_time(lab_and_client):
    """NIC-assisted: the lab's fabric analyzer (probe1) is filled in and the lab process gets
    the fabric's mirror of the VLAN (removed at stop); a second NIC-assisted capture on the
    same VLAN or the same interface is a conflict naming the VLAN field; an analyzer instance
    is not a NIC's destination."""
    lab, client = lab_and_client
    nic = {"nic_assisted_mirroring": True, "nic_assisted_mirroring_vlan": 100}
    response = client.post("/api/captures", json=TARGET | {"mirror_to": nic})
    assert response.status_code == 201, response.text
    assert response.json()["analyzer"] == "probe1"
    assert {k: response.json()["mirror_to"][k] for k in ("analyzer_name", "analyzer_ip_address")} \
        == {"analyzer_name": "probe1", "analyzer_ip_address": "192.168.100.254"}
    for body in ({"vrouter": "compute1", "interface": "tap-vm3-0", "mirror_to": nic},
                 TARGET | {"mirror_to": nic | {"nic_assisted_mirroring_vlan": 101}}):
        refused = client.post("/api/captures", json=body)
        assert (refused.status_code, refused.json()["field"]) == (
            409, "mirror_to.nic_assisted_mirroring_vlan"), refused.text
    wrong = client.post("/api/captures", json={"vrouter": "compute1", "interface": "tap-vm3-0",
                                               "analyzer": DEFAULT_ANALYZER, "mirror_to": nic | {
                                                   "nic_assisted_mirroring_vlan": 102}})
    assert (wrong.status_code, wrong.json()["field"]) == (400, "analyzer")
    capture_id = response.json()["id"]
    assert lab.mirrors == {f"nic-{capture_id}": (100, "probe1")}
    client.delete(f"/api/captures/{capture_id}")
    assert lab.mirrors == {}


def test_a_nic_mirror_the_lab_cannot_set_fails_the_capture(client):
    """Without a lab process to set the fabric's mirror: 503 naming why, and the capture is
    stopped as failed."""
    response = client.post("/api/captures", json=TARGET | {"mirror_to": {
        "nic_assisted_mirroring": True, "nic_assisted_mirroring_vlan": 100}})
    assert response.status_code == 503 and "NIC mirrors were not set" in response.json()["error"]
    [capture] = client.get("/api/captures").json()
    assert capture["state"] == "failed"


def test_the_destination_survives_a_controller_restart(tmp_path, service, default_topo):
    """The store keeps each capture's whole destination."""
    capture = service.start_capture("compute1", "tap-vm1-0",
                                    mirror_to={"analyzer_ip_address": "10.250.2.3"})
    restarted = ControllerService(default_topo, Store(tmp_path / "controller.db"),
                                  LabControl(tmp_path / "no.sock"), tmp_path)
    assert restarted.capture(capture.id).mirror_to == capture.mirror_to
    assert capture.mirror_to.to_dict() == DEFAULT_DESTINATION


@pytest.mark.parametrize("flags, mirror_to", [
    ([], None),
    (["--udp-port", "9000", "--no-juniper-header"], {"udp_port": 9000, "juniper_header": False}),
    (["--nh-mode", "static", "--vtep-ip", "192.168.100.200", "--vtep-mac", "02:fa:00:00:00:c8",
      "--vni", "5000"], {"nh_mode": "static", "static_nh_header": STATIC}),
    (["--nic-vlan", "10"], {"nic_assisted_mirroring": True, "nic_assisted_mirroring_vlan": 10}),
])
def test_cli_flags_make_the_mirror_to_object(flags, mirror_to):
    """`capture start`'s destination flags become the API's mirror_to (None: the default)."""
    args = build_parser().parse_args(["capture", "start", "compute1", "tap-vm1-0"] + flags)
    assert mirror_to_from_flags(args) == mirror_to
