"""The controller's state: captures persisted across a restart, leases on a hand-stepped clock,
and which vRouters it has the app sync, with which flows."""
from __future__ import annotations

import json

import pytest

from mirrorlab.controller.errors import Conflict, InvalidRequest, NotFound, VRouterUnavailable
from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, plan_analyzer
from mirrorlab.controller.policyflows import desired_flows, policy_encapsulations
from mirrorlab.controller.vncpolicy import attached_rules
from mirrorlab.recorder import encapsulation_file
from mirrorlab.controller.service import ControllerService
from mirrorlab.controller.store import Store


class Clock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeLab:
    """The lab process's control socket, answering every request at once."""

    def __init__(self):
        self.added, self.removed = [], []
        self.mirrors: dict[str, tuple[int, str]] = {}  # the fabric's NIC mirrors

    def add_vm(self, vm) -> None:
        """Record a VM the controller asked for."""
        self.added.append(vm.name)

    def recorders(self) -> dict:
        """Every recorder runs (the service asks before it starts a capture)."""
        return {}

    def remove_vm(self, name: str) -> None:
        """Record a VM the controller asked to remove."""
        self.removed.append(name)

    def nic_mirrors(self) -> list[str]:
        """The fabric's NIC mirrors, by name."""
        return list(self.mirrors)

    def add_nic_mirror(self, name: str, vlan: int, fabric_analyzer: str) -> None:
        """Record a NIC mirror the controller asked for."""
        self.mirrors[name] = (vlan, fabric_analyzer)

    def remove_nic_mirror(self, name: str) -> None:
        """Forget a NIC mirror the controller asked to remove."""
        del self.mirrors[name]


class RecordingApp:
    """Stands in for the os-ken app: every vRouter is connected, and each push records the
    vRouters and the flows the service wants them to hold at that moment."""

    def __init__(self, service: ControllerService):
        self.service = service
        self.synced: list[tuple[int, frozenset]] = []
        service.attach(self)

    def connected(self, _dpid: int) -> bool:
        """Every vRouter is connected."""
        return True

    def push(self, dpids) -> list:
        """Record what the vRouters would be made to hold; nothing to wait for."""
        self.synced += [(dpid, self.service.desired_flows_for(dpid)) for dpid in dpids]
        return []

    def take(self) -> dict[str, frozenset]:
        """The flows last synced to each vRouter since the previous call, by compute name."""
        names = {c.dpid: c.name for c in self.service.topology.computes}
        synced = {names[dpid]: flows for dpid, flows in self.synced}
        self.synced.clear()
        return synced


@pytest.fixture
def make_service(tmp_path, default_topo):
    """Build a service on a store in tmp_path with a hand-stepped clock (`service.clock`), the
    default analyzer already in place on compute1, and a lab process that says yes to all."""
    def make(clock: Clock | None = None) -> ControllerService:
        store = Store(tmp_path / "controller.db")
        if not store.analyzers():
            store.add_analyzer(plan_analyzer(default_topo, DEFAULT_ANALYZER, None, "compute1"))
        return ControllerService(default_topo, store, FakeLab(), tmp_path, clock=clock or Clock())
    return make


def pipeline_flows(service: ControllerService) -> dict[str, frozenset]:
    """What the pure pipeline says every vRouter should hold for the service's intent."""
    return desired_flows(service.topology, list(service.captures.values()), service.policies)


def assert_desired_flows_follow_the_pipeline(service: ControllerService) -> None:
    """`desired_flows_for` gives each vRouter exactly the pipeline's flows."""
    expected = pipeline_flows(service)
    for compute in service.topology.computes:
        assert service.desired_flows_for(compute.dpid) == expected[compute.name], compute.name


def test_captures_and_analyzers_survive_a_restart(make_service):
    """A new service on the same store knows the analyzer and which captures are active."""
    service = make_service()
    active = service.start_capture("compute1", "tap-vm1-0", "ingress")
    stopped = service.stop_capture(service.start_capture("compute2", "vm2-eth0").id)
    restarted = make_service()
    assert restarted.capture(active.id) == active
    assert not restarted.capture(stopped.id).active
    assert [c.id for c in restarted.active_captures()] == [active.id]
    assert DEFAULT_ANALYZER in {vm.analyzer for vm in restarted.topology.vms}
    assert restarted.start_capture("compute1", "tap-vm3-0").id == stopped.id + 1


def test_a_lease_survives_a_restart_and_still_runs_out(make_service):
    """A leased capture comes back from the store with its lease and expiry time, so the
    restarted controller stops it when the lease runs out, and not before."""
    clock = Clock(1000.0)
    leased = make_service(clock).start_capture("compute1", "tap-vm1-0", lease_seconds=5)
    assert (leased.lease_seconds, leased.lease_expires_at) == (5, 1005.0)
    restarted = make_service(clock)
    assert restarted.capture(leased.id) == leased
    clock.now = 1004.5
    assert restarted.expire_leases() == []
    clock.now = 1005.0
    assert [c.id for c in restarted.expire_leases()] == [leased.id]
    assert restarted.capture(leased.id).stopped_at == 1005.0


def test_a_lease_runs_out_exactly_at_its_expiry_time(make_service):
    """Renewing moves the expiry to now + lease_seconds; at that very instant the capture
    stops, an instant before it does not."""
    clock = Clock(1000.0)
    service = make_service(clock)
    leased = service.start_capture("compute1", "tap-vm1-0", lease_seconds=2)
    clock.now = 1001.0
    assert service.renew_lease(leased.id).lease_expires_at == 1003.0
    clock.now = 1002.999
    assert service.expire_leases() == []
    assert service.capture(leased.id).active
    clock.now = 1003.0
    [expired] = service.expire_leases()
    assert (expired.id, expired.active, expired.stopped_at) == (leased.id, False, 1003.0)


def test_lease_expiry_stops_the_capture_and_a_late_renewal_is_refused(make_service):
    """A leased capture lives while renewed; once its lease ran out it is stopped, and a
    renewal arriving after that (even before the reaper ran) does not revive it."""
    clock = Clock(1000.0)
    service = make_service(clock)
    leased = service.start_capture("compute1", "tap-vm1-0", lease_seconds=0.2)
    plain = service.start_capture("compute1", "tap-vm3-0")
    clock.now = 1000.1
    assert service.renew_lease(leased.id).lease_expires_at == pytest.approx(1000.3)
    assert service.expire_leases() == []
    clock.now = 1000.5
    with pytest.raises(Conflict, match="lease ran out"):
        service.renew_lease(leased.id)
    assert not service.capture(leased.id).active
    assert service.capture(plain.id).active
    assert service.expire_leases() == []
    with pytest.raises(Conflict, match="is stopped"):
        service.renew_lease(leased.id)
    with pytest.raises(NotFound):
        service.renew_lease(999)


def test_expire_leases_stops_only_expired_captures(make_service):
    """The reaper's call stops exactly the captures whose lease ran out."""
    clock = Clock(1000.0)
    service = make_service(clock)
    short = service.start_capture("compute1", "tap-vm1-0", lease_seconds=0.05)
    long = service.start_capture("compute1", "tap-vm1-0", lease_seconds=60)
    clock.now = 1000.1
    assert [c.id for c in service.expire_leases()] == [short.id]
    assert service.capture(long.id).active
    with pytest.raises(Conflict, match="has no lease"):
        service.renew_lease(service.start_capture("compute1", "tap-vm3-0").id)


def test_start_and_stop_sync_every_vrouter_the_capture_touches(make_service):
    """A capture of vm1 (compute1) to an analyzer on compute3 has flows on both vRouters:
    starting and stopping it syncs both, each to exactly the pipeline's flows."""
    service = make_service()
    app = RecordingApp(service)
    service.create_analyzer("far", compute="compute3")
    assert app.take() == pipeline_flows(service)  # a new VM changes every vRouter's forwarding
    capture = service.start_capture("compute1", "tap-vm1-0", "both", "far")
    expected = pipeline_flows(service)
    assert app.take() == {"compute1": expected["compute1"], "compute3": expected["compute3"]}
    service.stop_capture(capture.id)
    expected = pipeline_flows(service)
    assert app.take() == {"compute1": expected["compute1"], "compute3": expected["compute3"]}
    assert all(flow.cookie >> 32 != 0x02000000 + capture.id
               for flows in expected.values() for flow in flows)
    service.stop_capture(capture.id)
    assert app.take() == {}  # stopping a stopped capture changes nothing


def test_desired_flows_follow_the_pipeline_through_start_stop_and_new_analyzers(make_service):
    """`desired_flows_for` equals `pipeline.desired_flows` after each change of intent,
    including an analyzer added after the vRouters' flows were first computed."""
    service = make_service()
    assert_desired_flows_follow_the_pipeline(service)
    first = service.start_capture("compute1", "tap-vm1-0", "both")
    second = service.start_capture("compute2", "tap-vm2-0", "egress", DEFAULT_ANALYZER)
    assert_desired_flows_follow_the_pipeline(service)
    service.stop_capture(first.id)
    assert_desired_flows_follow_the_pipeline(service)
    assert service.desired_flows_for(service.vrouter("compute1").dpid) == pipeline_flows(service)[
        "compute1"] != desired_flows(service.topology, [first, second])["compute1"]
    service.create_analyzer("blue-tap", network="blue", compute="compute2")
    assert_desired_flows_follow_the_pipeline(service)
    third = service.start_capture("compute1", "tap-vm3-0", "ingress", "blue-tap")
    assert_desired_flows_follow_the_pipeline(service)
    service.stop_capture(third.id)
    service.delete_analyzer("blue-tap")
    assert_desired_flows_follow_the_pipeline(service)
    assert service.vrouter_name(0xDEAD) is None  # a stranger: the app leaves its flows alone
    with pytest.raises(KeyError):
        service.desired_flows_for(0xDEAD)


def mirror_policy(topology, analyzer: str = DEFAULT_ANALYZER) -> dict:
    """Rules of a policy on blue and red that passes and mirrors everything to `analyzer`."""
    entries = {"default-domain:default:watch": {"policy_rule": [{
        "direction": "<>", "protocol": "any", "src_addresses": [], "dst_addresses": [],
        "action_list": {"simple_action": "pass", "mirror_to": {"analyzer_name": analyzer}}}]}}
    return attached_rules(topology, entries, {network: [("default-domain:default:watch", (0, 0))]
                                              for network in ("blue", "red")})


def test_policies_set_reach_every_vrouter_and_their_copies_are_described(make_service, tmp_path):
    """Set policies are pushed to every vRouter (as the pure flows say), each policy label gets
    its encapsulation file, and an analyzer they mirror to cannot be deleted."""
    service = make_service()
    app = RecordingApp(service)
    rules = mirror_policy(service.topology)
    service.set_policies(rules)
    assert app.take() == pipeline_flows(service)
    assert service.policies == rules
    for label in policy_encapsulations(service.topology, rules):
        assert json.loads(encapsulation_file(tmp_path, label).read_text())["analyzer_interface"] is None
    with pytest.raises(Conflict, match="network policy default-domain:default:watch"):
        service.delete_analyzer(DEFAULT_ANALYZER)


def test_policies_the_lab_cannot_apply_change_nothing(make_service):
    service = make_service()
    app = RecordingApp(service)
    with pytest.raises(InvalidRequest, match="unknown analyzer 'nowhere'"):
        service.set_policies(mirror_policy(service.topology, "nowhere"))
    assert service.policies == {} and app.take() == {}


class UnconfirmingApp(RecordingApp):
    """Like `RecordingApp`, but no vRouter confirms what it was sent."""

    def push(self, dpids) -> list:
        super().push(dpids)
        return list(dpids)

    def confirm(self, _batches) -> None:
        raise VRouterUnavailable("vrouter 'compute1' did not confirm", "vrouter")


def test_policies_a_vrouter_does_not_confirm_are_taken_back(make_service):
    service = make_service()
    app = UnconfirmingApp(service)
    with pytest.raises(VRouterUnavailable):
        service.set_policies(mirror_policy(service.topology))
    assert service.policies == {}
    assert app.take() == pipeline_flows(service) == desired_flows(
        service.topology, list(service.captures.values()))


def test_a_capture_refused_after_it_was_planned_leaves_nothing_to_the_next(make_service):
    """A capture refused once its flows were planned (a vRouter it needs is not connected)
    leaves nothing behind: the next capture gets the same id, and its own flows."""
    service = make_service()
    app = RecordingApp(service)
    service.create_analyzer("far", compute="compute3")
    far_away = service.vrouter("compute3").dpid
    app.connected = lambda dpid: dpid != far_away
    with pytest.raises(VRouterUnavailable, match="compute3"):
        service.start_capture("compute1", "tap-vm1-0", "both", "far")
    capture = service.start_capture("compute1", "tap-vm3-0", "ingress")
    assert capture.id == 1
    assert_desired_flows_follow_the_pipeline(service)
