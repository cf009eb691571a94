"""The controller's state and operations, shared by the REST API and the os-ken app.

It holds the intent (topology, analyzer VMs, captures), persists it in the store, asks the lab
process for analyzer VMs, and has the app push the resulting flow changes. All pure decisions
are made by `controller.mirroring` and `controller.pipeline`.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

from controller.errors import Conflict, LabUnavailable, NotFound
from controller.flowmodel import Flow
from controller.mirroring import (
    DEFAULT_ANALYZER, Capture, analyzers, find_compute, find_interface, plan_analyzer, plan_capture,
)
from controller.pcapfile import PcapIndex, Record
from controller.pipeline import capture_flows, forwarding_flows
from controller.store import Store
from lab.control import LabControl, LabControlError
from lab.recorder import capture_file
from lab.topology import VM, ComputeNode, Interface, Topology


def _vm_ports_exist(vm_name: str) -> bool:
    """Whether a VM called `vm_name` has a vRouter port on this machine already: analyzer VMs
    of every lab are named an1, an2..., and their ports live in the machine's namespace, so
    a name another running lab uses is skipped (its port would be replaced, not shared)."""
    return any(Path("/sys/class/net").glob(f"tap-{vm_name}-*"))


class ControllerService:
    """Intent of one lab, and the operations users run on it."""

    def __init__(self, topology: Topology, store: Store, lab: LabControl, captures_dir: Path,
                 clock: Callable[[], float] = time.time):
        self.lock = threading.RLock()
        # Where capture start, stop and lease times come from (tests step it by hand).
        self.clock = clock
        self.store = store
        self.lab = lab
        self.captures_dir = captures_dir
        for vm in store.analyzers():
            topology = topology.with_vm(vm)
        self.topology = topology
        self.captures = {c.id: c for c in store.captures()}
        self.pcaps = PcapIndex()
        self.app = None
        self._forwarding: dict[str, frozenset[Flow]] = {}

    def attach(self, app) -> None:
        """Connect the os-ken app that pushes flows."""
        self.app = app

    # --- flows -------------------------------------------------------------------------

    def desired_flows_for(self, dpid: int) -> frozenset[Flow]:
        """Every flow the vRouter with datapath id `dpid` should hold."""
        with self.lock:
            compute = next((c for c in self.topology.computes if c.dpid == dpid), None)
            if compute is None:
                return frozenset()
            if compute.name not in self._forwarding:
                self._forwarding[compute.name] = frozenset(forwarding_flows(self.topology, compute))
            flows = set(self._forwarding[compute.name])
            for capture in self.captures.values():
                if capture.active:
                    flows.update(capture_flows(self.topology, capture).get(compute.name, ()))
            return frozenset(flows)

    def _push(self, computes) -> None:
        if self.app is None:
            return
        for name in computes:
            self.app.sync(self.topology.compute(name).dpid, wait=True)

    def _set_topology(self, topology: Topology) -> None:
        self.topology = topology
        self._forwarding.clear()
        self._push(c.name for c in topology.computes)

    # --- queries -------------------------------------------------------------------------

    def vrouter(self, name: str) -> ComputeNode:
        """The compute node whose vRouter is `name` (compute name or bridge name)."""
        return find_compute(self.topology, name)

    def connected(self, compute: ComputeNode) -> bool:
        """Whether the compute node's vRouter is connected to this controller."""
        return self.app is not None and self.app.connected(compute.dpid)

    def active_captures(self, interface: Interface | None = None) -> list[Capture]:
        """Active captures, all or of one interface."""
        with self.lock:
            return [c for c in self.captures.values() if c.active
                    and (interface is None or c.interface == interface.port_name)]

    def capture(self, capture_id: int) -> Capture:
        """The capture with `capture_id`."""
        try:
            return self.captures[capture_id]
        except KeyError:
            raise NotFound(f"unknown capture {capture_id}", "id") from None

    def capture_counts(self, capture: Capture) -> tuple[int, int]:
        """(packets, bytes) the analyzer recorded for `capture`."""
        return self.pcaps.count(self.pcap_path(capture))

    def capture_records(self, capture: Capture, after: int, limit: int) -> tuple[list[Record], int]:
        """The frames the analyzer recorded for `capture` after the first `after` (at most
        `limit`), and how many it recorded in all."""
        return self.pcaps.records(self.pcap_path(capture), after, limit)

    def pcap_path(self, capture: Capture) -> Path:
        """The pcap file the analyzer writes for `capture`."""
        return capture_file(self.captures_dir, capture.label)

    # --- analyzers -----------------------------------------------------------------------

    def create_analyzer(self, name: str, network: str | None = None,
                        compute: str | None = None) -> VM:
        """Launch an analyzer instance: a new VM with a recorder, ready when this returns."""
        with self.lock:
            vm = plan_analyzer(self.topology, name, network, compute, _vm_ports_exist)
            try:
                self.lab.add_vm(vm)
            except LabControlError as err:
                raise LabUnavailable(f"cannot start analyzer '{name}': {err}") from None
            self.store.add_analyzer(vm)
            self._set_topology(self.topology.with_vm(vm))
            return vm

    def delete_analyzer(self, name: str) -> None:
        """Remove an analyzer instance that no active capture uses."""
        with self.lock:
            vm = analyzers(self.topology).get(name)
            if vm is None:
                raise NotFound(f"unknown analyzer '{name}'", "name")
            users = [str(c.id) for c in self.active_captures() if c.analyzer == name]
            if users:
                raise Conflict(f"analyzer '{name}' is used by active capture(s) {', '.join(users)}; "
                               f"stop them first")
            self._set_topology(self.topology.without_vm(vm.name))
            self.store.remove_analyzer(name)
            try:
                self.lab.remove_vm(vm.name)
            except LabControlError as err:
                raise LabUnavailable(f"analyzer '{name}' is forgotten, but its VM was not "
                                     f"removed: {err}") from None

    # --- captures ------------------------------------------------------------------------

    def start_capture(self, vrouter: str, interface: str, direction: str | None = None,
                      analyzer: str | None = None, lease_seconds: float | None = None) -> Capture:
        """Start mirroring an interface; the flows are in place when this returns. Without
        `analyzer`, the default analyzer is used, launched on the interface's compute node if
        it does not exist yet. With `lease_seconds`, the capture stops unless renewed."""
        with self.lock:
            if analyzer is None:
                analyzer = DEFAULT_ANALYZER
                if analyzer not in analyzers(self.topology):
                    target = find_interface(self.topology, vrouter, interface)
                    self.create_analyzer(analyzer, compute=target.compute)
            capture = plan_capture(self.topology, list(self.captures.values()),
                                   self.store.next_capture_id(), vrouter, interface, direction,
                                   analyzer, self.clock(), lease_seconds)
            self.store.save_capture(capture)
            self.captures[capture.id] = capture
            self._push(capture_flows(self.topology, capture))
            return capture

    def stop_capture(self, capture_id: int) -> Capture:
        """Stop a capture and remove exactly its flows. Stopping a stopped capture is a no-op."""
        with self.lock:
            capture = self.capture(capture_id)
            if not capture.active:
                return capture
            computes = capture_flows(self.topology, capture)
            capture = capture.stopped(self.clock())
            self.store.save_capture(capture)
            self.captures[capture.id] = capture
            self._push(computes)
            return capture

    def renew_lease(self, capture_id: int) -> Capture:
        """Extend an active leased capture's lease by its lease_seconds from now. A lease that
        ran out stays out: the capture is stopped, even if the reaper has not got to it yet."""
        with self.lock:
            capture = self.capture(capture_id)
            now = self.clock()
            if capture.lease_expired(now):
                self.stop_capture(capture_id)
                raise Conflict(f"capture {capture_id} stopped: its lease ran out", "id")
            if not capture.active:
                raise Conflict(f"capture {capture_id} is stopped", "id")
            capture = capture.renewed(now)
            self.store.save_capture(capture)
            self.captures[capture.id] = capture
            return capture

    def expire_leases(self) -> list[Capture]:
        """Stop every capture whose lease ran out; return them."""
        with self.lock:
            now = self.clock()
            expired = [c for c in self.captures.values() if c.lease_expired(now)]
            return [self.stop_capture(c.id) for c in expired]
