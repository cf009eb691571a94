"""The controller's state: captures persisted across a restart, and leases."""
from __future__ import annotations

import time

import pytest

from controller.errors import Conflict, NotFound
from controller.mirroring import DEFAULT_ANALYZER, plan_analyzer
from controller.service import ControllerService
from controller.store import Store
from lab.control import LabControl
from lab.topofile import load


@pytest.fixture
def make_service(tmp_path):
    """Build a service on a store in tmp_path, with the default analyzer already in place, so
    nothing asks the lab process for a VM (no vRouter is connected either)."""
    def make() -> ControllerService:
        topology = load("topologies/default.yaml")
        store = Store(tmp_path / "controller.db")
        if not store.analyzers():
            store.add_analyzer(plan_analyzer(topology, DEFAULT_ANALYZER, None, "compute1"))
        return ControllerService(topology, store, LabControl(tmp_path / "no.sock"), tmp_path)
    return make


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


def test_lease_expiry_stops_the_capture_and_a_late_renewal_is_refused(make_service):
    """A leased capture lives while renewed; once its lease ran out it is stopped, and a
    renewal arriving after that (even before the reaper ran) does not revive it."""
    service = make_service()
    leased = service.start_capture("compute1", "tap-vm1-0", lease_seconds=0.2)
    plain = service.start_capture("compute1", "tap-vm3-0")
    time.sleep(0.1)
    assert service.renew_lease(leased.id).lease_expires_at > leased.lease_expires_at
    assert service.expire_leases() == []
    time.sleep(0.3)
    with pytest.raises(Conflict, match="lease ran out"):
        service.renew_lease(leased.id)
    assert not service.capture(leased.id).active
    assert service.capture(plain.id).active
    assert service.expire_leases() == []
    with pytest.raises(NotFound):
        service.renew_lease(999)


def test_expire_leases_stops_only_expired_captures(make_service):
    """The reaper's call stops exactly the captures whose lease ran out."""
    service = make_service()
    short = service.start_capture("compute1", "tap-vm1-0", lease_seconds=0.05)
    long = service.start_capture("compute1", "tap-vm1-0", lease_seconds=60)
    time.sleep(0.1)
    assert [c.id for c in service.expire_leases()] == [short.id]
    assert service.capture(long.id).active
    with pytest.raises(Conflict, match="has no lease"):
        service.renew_lease(service.start_capture("compute1", "tap-vm3-0").id)
