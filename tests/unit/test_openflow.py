"""What goes over the wire: every flow encoded as an OpenFlow 1.3 FlowMod and decoded back by
os-ken's parser, the Nicira actions byte for byte as Open vSwitch encodes them, and the app's
reconciliation against a fake switch (tests/fakeswitch.py) that applies the FlowMods it gets."""
from __future__ import annotations

import os

import dataclasses
import itertools
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from mirrorlab.controller import app as app_module
from mirrorlab.controller.app import VRouterApp
from mirrorlab.controller.errors import VRouterUnavailable
from mirrorlab.controller.flowmodel import (
    BASE_OWNER, Clone, Ct, Decap, Encap, Output, Resubmit, SetField, capture_owner, flow,
)
from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, plan_analyzer, plan_capture
from mirrorlab.controller.ofproto import add_flow, delete_flow, ofp_action, ofp_match
from mirrorlab.controller.pipeline import DELIVER, GATEWAY_ADVERT, INGRESS_MIRROR
from mirrorlab.controller.policyflows import desired_flows
from mirrorlab.controller.service import ControllerService
from mirrorlab.controller.store import Store
from mirrorlab.sandbox import SandboxError
from tests.fakeswitch import FakeSwitch, WireFlow, decode, wire_action, wire_flow
from tests.unit.test_service import Clock, FakeLab, mirror_policy

WAIT = 10.0  # only a guard against hanging: a correct app converges at once


def lab_with_captures(topology):
    """`topology` with a local and a remote analyzer, and captures of every direction on
    vm1 (compute1), vm2 (compute2) and the local analyzer's own port."""
    for name, compute in (("near", "compute1"), ("far", "compute3")):
        topology = topology.with_vm(plan_analyzer(topology, name, None, compute))
    captures = []
    for port, direction, analyzer in itertools.product(
            ["tap-vm1-0", "tap-vm2-0", "tap-an1-0"], ["ingress", "egress", "both"], ["near", "far"]):
        compute = topology.interface_by_port_name(port).compute
        captures.append(plan_capture(topology, captures, len(captures) + 1, compute, port, direction,
                                     analyzer, 0.0))
    return topology, captures


# --- encoding ---------------------------------------------------------------------------------


def test_every_flow_survives_encoding_and_decoding(default_topo):
    """Each flow of every vRouter, with captures to local and remote analyzers, decodes from
    its FlowMod's bytes to the same table, priority, cookie, match, actions and goto; its
    delete message names the same flow, strictly, by its whole cookie."""
    topology, captures = lab_with_captures(default_topo)
    datapath = FakeSwitch(1, app=None)
    policies = mirror_policy(topology, "near")
    flows = [f for flow_set in desired_flows(topology, captures, policies).values() for f in flow_set]
    nested = [a for f in flows for a in f.actions] + [a for f in flows for c in f.actions
                                                     if isinstance(c, Clone) for a in c.actions]
    kinds = {type(a).__name__ for a in nested}
    assert kinds >= {"Output", "SetField", "Move", "Encap", "Decap", "Clone", "Resubmit", "Ct",
                     "DecTtl"}
    for f in flows:
        decoded = decode(datapath, add_flow(datapath, f))
        assert (decoded.command, decoded.buffer_id) == (ofp.OFPFC_ADD, ofp.OFP_NO_BUFFER)
        assert wire_flow(decoded) == WireFlow.of(f), f.ofctl()
        deleted = decode(datapath, delete_flow(datapath, f.table, f.priority, f.cookie, ofp_match(f)))
        assert (deleted.command, deleted.table_id, deleted.priority, deleted.cookie,
                deleted.cookie_mask, deleted.out_port, deleted.out_group) == (
            ofp.OFPFC_DELETE_STRICT, f.table, f.priority, f.cookie, 2**64 - 1, ofp.OFPP_ANY,
            ofp.OFPG_ANY)
        assert tuple(sorted(deleted.match.items())) == f.match


def test_open_vswitch_accepts_every_ipv6_flow(default_topo):
    """The gateway's neighbour advertisement and the IPv6 policy flows, as FlowMods, pass
    Open vSwitch's own decoder with their prerequisites (`ovs-ofctl ofp-print` says
    "decode error: OFPBAC_MATCH_INCONSISTENT" and warns for a field set where the match does
    not allow it, as ovs-vswitchd would refuse the flow)."""
    topology, captures = lab_with_captures(default_topo)
    datapath = FakeSwitch(1, app=None)
    flows = {f for flow_set in desired_flows(topology, captures, mirror_policy(topology, "near")).values()
             for f in flow_set if dict(f.match).get("eth_type") == 0x86DD
             or f.table == GATEWAY_ADVERT}
    assert any(a == SetField("nd_options_type", 2) for f in flows for a in f.actions)
    for f in sorted(flows, key=lambda f: f.ofctl()):
        message = add_flow(datapath, f)
        message.serialize()
        printed = subprocess.run(["ovs-ofctl", "ofp-print", bytes(message.buf).hex()],
                                 capture_output=True, text=True, check=True)
        assert "error" not in printed.stdout and "WARN" not in printed.stderr, (
            f.ofctl(), printed.stdout, printed.stderr)


# Open vSwitch's encoding of each action (checked with `ovs-ofctl ofp-print`, which decodes a
# FlowMod carrying them to the text on the right).
NICIRA_ACTIONS = {
    "encap(mpls)": (Encap("mpls"), "ffff0010 00002320 002e 0000 00018847"),
    "encap(ethernet)": (Encap("ethernet"), "ffff0010 00002320 002e 0000 00000000"),
    "decap()": (Decap(), "ffff0010 00002320 002f 0000 0000fffe"),
    "decap(packet_type(ns=0,type=0))": (Decap(inner_ethernet=True),
                                        "ffff0010 00002320 002f 0000 00000000"),
    "clone(encap(mpls),set_field:524289->mpls_label,output:1000)": (
        Clone((Encap("mpls"), SetField("mpls_label", 524289), Output(1000))),
        "ffff0040 00002320 002a 000000000000"
        "  ffff0010 00002320 002e 0000 00018847"
        "  0019 0010 80004404 00080001 00000000"
        "  0000 0010 000003e8 0000 000000000000"),
    "resubmit(,2)": (Resubmit(2), "ffff0010 00002320 000e fff8 02 000000"),
    "ct(table=19,zone=3)": (Ct(3, table=19),
                            "ffff0018 00002320 0023 0000 00000000 0003 13 000000 0000"),
    "ct(commit,zone=2)": (Ct(2, commit=True),
                          "ffff0018 00002320 0023 0001 00000000 0002 ff 000000 0000"),
}


@pytest.mark.parametrize("action, wire", NICIRA_ACTIONS.values(), ids=NICIRA_ACTIONS.keys())
def test_nicira_actions_are_encoded_as_open_vswitch_does(action, wire):
    """encap, decap, clone, resubmit and ct give Open vSwitch's bytes, and decode back."""
    encoded = bytearray()
    ofp_action(action).serialize(encoded, 0)
    assert encoded.hex() == wire.replace(" ", "")
    assert wire_action(parser.OFPAction.parser(bytes(encoded), 0)) == action


# --- reconciliation against a fake switch -------------------------------------------------


@pytest.fixture
def controller(tmp_path, default_topo, monkeypatch):
    """The controller's service and os-ken app (with the default analyzer on compute1), and a
    fake switch for each vRouter, not yet connected."""
    store = Store(tmp_path / "controller.db")
    store.add_analyzer(plan_analyzer(default_topo, DEFAULT_ANALYZER, None, "compute1"))
    service = ControllerService(default_topo, store, FakeLab(), tmp_path, clock=Clock())
    monkeypatch.setattr(VRouterApp, "service", service)
    monkeypatch.setattr(VRouterApp, "trusted_switch_pid", staticmethod(os.getpid))
    app = VRouterApp()
    switches = {c.name: FakeSwitch(c.dpid, app) for c in default_topo.computes}
    yield service, app, switches
    with app.lock:  # the app's audit thread outlives the test: give it nothing more to audit
        app.datapaths.clear()
        app.installed.clear()
    for switch in switches.values():
        assert switch.unexpected == []


def expected_flows(service: ControllerService) -> dict[str, set[WireFlow]]:
    """What the pipeline says each vRouter holds, as it looks on the wire."""
    return {name: {WireFlow.of(f) for f in flows}
            for name, flows in desired_flows(service.topology, list(service.captures.values())).items()}


def wait_until_reconciled(switch: FakeSwitch, service: ControllerService, name: str) -> None:
    """Wait for `switch` to hold exactly the desired flows of compute `name`."""
    deadline = time.monotonic() + WAIT
    while switch.flows() != expected_flows(service)[name]:
        assert time.monotonic() < deadline, f"{name} never reached its desired flows"
        time.sleep(0.01)
    switch.idle()


def test_reconnect_adds_missing_flows_before_removing_stale_and_foreign_ones(controller):
    """A vRouter that reconnects holding some correct flows, an outdated version of one flow
    and a flow the controller never made: every ADD comes before every delete (an ADD over
    the same match replaces the old version, so forwarding never gaps), the foreign flow goes,
    and the correct flows are left alone."""
    service, app, switches = controller
    desired = sorted(desired_flows(service.topology, [])["compute1"], key=lambda f: f.ofctl())
    target = next(f for f in desired if f.table == DELIVER and f.actions)
    kept = [f for f in desired[::2] if f != target]
    missing = [f for f in desired if f not in kept]
    outdated = dataclasses.replace(target, actions=(Output(99),))
    foreign = flow(0, 7, in_port=77, owner=0)
    switch = FakeSwitch(switches["compute1"].id, app, kept + [outdated, foreign])
    switch.connect()
    wait_until_reconciled(switch, service, "compute1")
    assert app.connected(switch.id)
    mods = switch.flow_mods()
    commands = [m.command for m in mods]
    assert commands == sorted(commands, key=lambda c: c != ofp.OFPFC_ADD), "a delete came before an add"
    assert {wire_flow(m) for m in mods if m.command == ofp.OFPFC_ADD} == {WireFlow.of(f) for f in missing}
    assert {(m.table_id, m.priority, m.cookie) for m in mods if m.command != ofp.OFPFC_ADD} == {
        outdated.key, foreign.key}
    assert WireFlow.of(foreign) not in switch.flows()


def test_captures_reach_every_vrouter_they_touch_and_stop_removes_only_theirs(controller):
    """With every vRouter connected, a capture of vm1 to an analyzer on compute3 is on both
    vRouters when start returns (the app waits for the switches' barrier replies), each
    vRouter holding exactly the pipeline's flows; stopping deletes exactly that capture's
    flows and adds nothing."""
    service, app, switches = controller
    for name, switch in switches.items():
        switch.connect()
        wait_until_reconciled(switch, service, name)
    service.create_analyzer("far", compute="compute3")
    assert {name: s.flows() for name, s in switches.items()} == expected_flows(service)
    for switch in switches.values():
        switch.flow_mods()
    capture = service.start_capture("compute1", "tap-vm1-0", "both", "far")
    assert {name: s.flows() for name, s in switches.items()} == expected_flows(service)
    added = {name: s.flow_mods() for name, s in switches.items()}
    assert {name for name, mods in added.items() if mods} == {"compute1", "compute3"}
    assert all(m.command == ofp.OFPFC_ADD and m.cookie >> 32 == capture_owner(capture.id)
               for mods in added.values() for m in mods)
    service.stop_capture(capture.id)
    assert {name: s.flows() for name, s in switches.items()} == expected_flows(service)
    removed = {name: s.flow_mods() for name, s in switches.items()}
    assert {name: len(mods) for name, mods in removed.items()} == {
        name: len(mods) for name, mods in added.items()}
    assert all(m.command == ofp.OFPFC_DELETE_STRICT and m.cookie >> 32 == capture_owner(capture.id)
               for mods in removed.values() for m in mods)
    assert all(f.cookie >> 32 == BASE_OWNER for s in switches.values() for f in s.flows())


def connect_all(service, switches) -> None:
    for name, switch in switches.items():
        switch.connect()
        wait_until_reconciled(switch, service, name)


def test_a_capture_on_a_disconnected_vrouter_is_refused_naming_it(controller):
    """No vRouter can confirm while it is disconnected: 503 naming it, and nothing is kept."""
    service, _app, switches = controller
    connect_all(service, switches)
    switches["compute1"].disconnect()
    switches["compute1"].idle()
    with pytest.raises(VRouterUnavailable, match="vrouter 'compute1' is not connected"):
        service.start_capture("compute1", "tap-vm1-0")
    assert service.active_captures() == []
    assert "not connected" in service.vrouter_problem(service.vrouter("compute1"))


def test_flows_the_switch_refuses_fail_the_capture_and_are_reported(controller):
    """An OpenFlow error for a capture's FlowMod: the request fails with the error named, the
    capture is not active, its state says why, and the vRouter shows the problem."""
    service, _app, switches = controller
    connect_all(service, switches)
    switches["compute1"].refused_tables = {INGRESS_MIRROR}
    with pytest.raises(VRouterUnavailable, match="refused flow changes: add of flow table=11.*"
                                                 "OFPET_BAD_ACTION"):
        service.start_capture("compute1", "tap-vm1-0", "ingress")
    capture = service.list_captures()[0]
    assert not capture.active and capture.failed and "did not confirm" in capture.stop_reason
    assert "OFPBAC_BAD_SET_ARGUMENT" in service.vrouter_problem(service.vrouter("compute1"))
    switches["compute1"].refused_tables = set()
    wait_until_reconciled(switches["compute1"], service, "compute1")


def test_a_vrouter_that_never_confirms_gets_a_bounded_answer(controller, monkeypatch):
    """A switch that takes FlowMods but never answers the barrier: the request ends after the
    confirmation timeout with a 503 naming the vRouter instead of hanging."""
    service, _app, switches = controller
    connect_all(service, switches)
    monkeypatch.setattr(app_module, "CONFIRM_TIMEOUT", 0.3)
    switches["compute1"].answers_barriers = False
    started = time.monotonic()
    with pytest.raises(VRouterUnavailable, match="vrouter 'compute1' did not confirm"):
        service.start_capture("compute1", "tap-vm1-0")
    assert time.monotonic() - started < 5
    assert service.active_captures() == []


def wait_until_starting(service: ControllerService, count: int) -> None:
    """Wait until `count` captures are "starting": their change is made and pushed."""
    deadline = time.monotonic() + WAIT
    while sum(service.capture_state(c) == "starting" for c in service.list_captures()) < count:
        assert time.monotonic() < deadline, f"never {count} captures starting"
        time.sleep(0.001)


def capture_owners(mods) -> set[int]:
    """The capture ids whose flows `mods` add or delete."""
    return {m.cookie >> 32 for m in mods} - {BASE_OWNER}


def test_requests_that_come_while_a_batch_is_in_flight_share_the_next_one(controller):
    """While compute1 has not confirmed one capture's batch, three more captures of its
    interfaces are asked for: nothing more is sent until the barrier reply comes, then one
    batch carries all three (one barrier for three requests), and each request returns once
    that batch is confirmed, with the vRouter holding exactly the pipeline's flows."""
    service, _app, switches = controller
    connect_all(service, switches)
    switch = switches["compute1"]
    switch.flow_mods()
    switch.holds_barriers = True
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(service.start_capture, "compute1", "tap-vm1-0", "ingress")
        switch.wait_for_barriers(1)
        later = [pool.submit(service.start_capture, "compute1", port, direction)
                 for port, direction in (("tap-vm1-0", "egress"), ("tap-vm3-0", "both"),
                                         ("tap-vm1-0", "both"))]
        wait_until_starting(service, 4)
        assert switch.barriers() == 1 and not first.done()
        first_batch = switch.flow_mods()
        assert switch.release_barriers() == 1
        first_id = first.result(WAIT).id
        switch.wait_for_barriers(1)
        second_batch = switch.flow_mods()
        assert all(not future.done() for future in later)
        switch.holds_barriers = False
        assert switch.release_barriers() == 1
        later_ids = {future.result(WAIT).id for future in later}
    assert capture_owners(first_batch) == {capture_owner(first_id)}
    assert capture_owners(second_batch) == {capture_owner(i) for i in later_ids}
    assert [service.capture_state(c) for c in service.list_captures()] == ["active"] * 4
    assert {name: s.flows() for name, s in switches.items()} == expected_flows(service)


def test_no_lock_is_held_while_a_vrouter_confirms(controller):
    """A capture waiting for compute1's barrier reply holds up nothing else: the captures can
    be listed, and a capture on compute2 to an analyzer there starts and stops meanwhile."""
    service, _app, switches = controller
    connect_all(service, switches)
    service.create_analyzer("near2", compute="compute2")
    switches["compute1"].holds_barriers = True
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(service.start_capture, "compute1", "tap-vm1-0")
        switches["compute1"].wait_for_barriers(1)
        assert [service.capture_state(c) for c in service.list_captures()] == ["starting"]
        other = service.start_capture("compute2", "tap-vm2-0", "both", "near2")
        assert service.capture_state(other) == "active"
        service.stop_capture(other.id)
        assert not waiting.done()
        switches["compute1"].holds_barriers = False
        switches["compute1"].release_barriers()
        assert service.capture_state(waiting.result(WAIT)) == "active"
    assert {name: s.flows() for name, s in switches.items()} == expected_flows(service)


def test_a_capture_is_confirmed_only_after_the_datapath_revalidated(controller, monkeypatch):
    """The barrier reply is not enough: the request waits for two revalidation rounds of the
    lab's Open vSwitch to end after the vRouter confirmed the flows (the first may have begun
    before), on start and on stop."""
    service, _app, switches = controller
    connect_all(service, switches)
    seen = []
    monkeypatch.setattr(VRouterApp, "revalidation_round", staticmethod(
        lambda start_round: seen.append(len(switches["compute1"].flows()))))
    before = len(switches["compute1"].flows())
    capture = service.start_capture("compute1", "tap-vm1-0", "ingress")
    assert len(seen) == 2 and seen[0] > before  # the flows were in the table when they ran
    service.stop_capture(capture.id)
    assert seen == [seen[0], seen[0], before, before]


def test_each_watched_round_is_started_at_once_by_a_flow_mod_that_changes_nothing(controller,
                                                                                monkeypatch):
    """Once it waits for a round to end, the app makes Open vSwitch start one (else the next
    would come by its timer, 100 ms later): a strict delete in a table the pipeline never uses,
    matching no flow, so every vRouter keeps exactly its flows."""
    service, _app, switches = controller
    connect_all(service, switches)
    triggers = []

    def watch(start_round):
        for switch in switches.values():
            switch.flow_mods()  # the capture's own, confirmed already
        start_round()
        triggers.append([m for s in switches.values() for m in s.flow_mods()])

    capture = service.start_capture("compute1", "tap-vm1-0", "ingress")
    monkeypatch.setattr(VRouterApp, "revalidation_round", staticmethod(watch))
    service.stop_capture(capture.id)
    assert len(triggers) == 2
    for [trigger] in triggers:
        assert (trigger.command, trigger.table_id, trigger.priority, trigger.cookie,
                trigger.cookie_mask, dict(trigger.match.items())) == (
            ofp.OFPFC_DELETE_STRICT, app_module.ROUND_TRIGGER_TABLE, 0, 0, 2**64 - 1, {})
        assert trigger.table_id not in {f.table for flows in desired_flows(service.topology, []).values()
                                        for f in flows}
    assert {name: s.flows() for name, s in switches.items()} == expected_flows(service)


def test_a_datapath_that_does_not_revalidate_fails_the_capture_naming_the_vrouter(controller,
                                                                                   monkeypatch):
    """When the revalidation cannot be confirmed, the request fails with a 503 naming the
    vRouter and the reason, and the capture is not active."""
    service, _app, switches = controller
    connect_all(service, switches)

    def stuck(_start_round):
        raise SandboxError("the lab's Open vSwitch did not revalidate its datapath flows within 5 s")

    monkeypatch.setattr(VRouterApp, "revalidation_round", staticmethod(stuck))
    with pytest.raises(VRouterUnavailable, match="vrouter 'compute1' confirmed its flow changes, "
                                                 "but its datapath .* within 5 s") as raised:
        service.start_capture("compute1", "tap-vm1-0", "ingress")
    assert raised.value.status == 503
    capture = service.list_captures()[0]
    assert not capture.active and capture.failed


def test_a_connection_from_another_process_is_refused(controller, monkeypatch):
    """A switch whose peer is not the lab's ovs-vswitchd is hung up on and never programmed."""
    service, app, switches = controller
    monkeypatch.setattr(VRouterApp, "trusted_switch_pid", staticmethod(lambda: os.getpid() + 1))
    switches["compute1"].connect()
    switches["compute1"].idle()
    assert switches["compute1"].closed and not app.connected(switches["compute1"].id)
    assert switches["compute1"].flow_mods() == []
    assert "refused a connection from pid" in app.refused[-1]
