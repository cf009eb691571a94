"""The controller's state and operations, shared by the REST API and the os-ken app.

It holds the intent (topology, analyzer VMs, captures), persists it in the store, asks the lab
process for analyzer VMs, and has the app push the resulting flow changes. All pure decisions
are made by `controller.mirroring` and `controller.pipeline`.

Locking: `lock` guards the intent and is held only while it changes, never while the app
sends FlowMods, waits for a vRouter's confirmation or its datapath's revalidation, nor while the
lab process answers or an analyzer VM boots, so reads never stall behind a slow switch or VM.
Each change asks the app to push it (`_push`) and waits for it outside the lock (`_confirm`):
the app commits concurrent requests' changes in shared batches (see `controller.app`).
"""
from __future__ import annotations

import logging
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from mirrorlab.controller.errors import Conflict, LabUnavailable, MirrorlabError, NotFound, VRouterUnavailable
from mirrorlab.controller.flowmodel import Flow
from mirrorlab.controller.mirroring import (
    DEFAULT_ANALYZER, Capture, analyzers, find_compute, find_interface, named_analyzer,
    plan_analyzer, plan_capture, requested_destination,
)
from mirrorlab.controller.mirrorto import MirrorTo, not_on_the_wire_yet, parse_mirror_to
from mirrorlab.controller.pcapfile import PcapIndex, Record
from mirrorlab.controller.pipeline import (
    capture_encapsulation, capture_flows, forwarding_flows, nic_mirrors,
)
from mirrorlab.controller.policyflows import policy_encapsulations, policy_flows
from mirrorlab.controller.store import Store
from mirrorlab.controller.vncpolicy import PolicyRule
from mirrorlab.control import LabControl, LabControlError
from mirrorlab.recorder import (
    DEFAULT_LIMIT_BYTES, DEFAULT_MIN_FREE_BYTES, capture_file, format_size, raw_capture_file,
    set_encapsulation, set_limits, stop_report,
)
from mirrorlab.topology import VM, ComputeNode, Interface, Topology

LOG = logging.getLogger("mirrorlab.service")


class ControllerService:
    """Intent of one lab, and the operations users run on it."""

    def __init__(self, topology: Topology, store: Store, lab: LabControl, captures_dir: Path,
                 capture_limit_bytes: int = DEFAULT_LIMIT_BYTES,
                 min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
                 lab_health: Callable[[], list[str]] = list,
                 clock: Callable[[], float] = time.time):
        self.lock = threading.RLock()
        # Where capture start, stop and lease times come from (tests step it by hand).
        self.clock = clock
        # One analyzer VM is launched or removed at a time, without holding `lock`.
        self.analyzer_lock = threading.Lock()
        self.lab_health = lab_health
        self.capture_limit_bytes = capture_limit_bytes  # for captures started without a limit
        self.min_free_bytes = min_free_bytes  # free disk space below which nothing is recorded
        self.store = store
        self.lab = lab
        self.captures_dir = captures_dir
        for vm in store.analyzers():
            topology = topology.with_vm(vm)
        self.topology = topology
        self.captures = {c.id: c for c in store.captures()}
        # The active ones, and their flows by compute node (as of `topology`), kept aside: every
        # request and every sync reads them, and the stopped ones only ever grow in number.
        self._active = {c.id: c for c in self.captures.values() if c.active}
        self._capture_flows: dict[int, dict[str, list[Flow]]] = {}
        self.starting: set[int] = set()  # captures whose flows no vRouter has confirmed yet
        self.pcaps = PcapIndex()
        # Whether the fabric's NIC mirrors may differ from the active captures' (until the
        # first reconciliation, and after one that failed).
        self.nic_mirrors_pending = True
        self.app = None
        self._forwarding: dict[str, frozenset[Flow]] = {}
        # The rules each policed network applies (controller.vncpolicy.attached_rules), set by
        # the configuration API, and the flows they make, by compute node.
        self.policies: dict[str, tuple[PolicyRule, ...]] = {}
        self._policy_flows: dict[str, list[Flow]] = {}

    def attach(self, app) -> None:
        """Connect the os-ken app that pushes flows."""
        self.app = app

    # --- flows -------------------------------------------------------------------------

    def vrouter_name(self, dpid: int) -> str | None:
        """The compute node whose vRouter has datapath id `dpid`, or None for a stranger."""
        return next((c.name for c in self.topology.computes if c.dpid == dpid), None)

    def desired_flows_for(self, dpid: int) -> frozenset[Flow]:
        """Every flow the vRouter with datapath id `dpid` should hold (KeyError for a dpid that
        is no vRouter of this lab: its flows are not ours to decide)."""
        with self.lock:
            compute = self.topology.compute(self.vrouter_name(dpid) or "")
            if compute.name not in self._forwarding:
                self._forwarding[compute.name] = frozenset(forwarding_flows(self.topology, compute))
            flows = set(self._forwarding[compute.name])
            flows.update(self._policy_flows.get(compute.name, ()))
            for capture in self._active.values():
                flows.update(self._flows_of(capture).get(compute.name, ()))
            return frozenset(flows)

    def _flows_of(self, capture: Capture) -> dict[str, list[Flow]]:
        """`pipeline.capture_flows` of a kept active capture, computed once (under `lock`)."""
        if capture.id not in self._capture_flows:
            self._capture_flows[capture.id] = capture_flows(self.topology, capture)
        return self._capture_flows[capture.id]

    def _keep(self, capture: Capture) -> None:
        """Store a new or changed capture and make it the intent (under `lock`)."""
        self.store.save_capture(capture)
        self.captures[capture.id] = capture
        self._capture_flows.pop(capture.id, None)  # computed again from what it is now
        if capture.active:
            self._active[capture.id] = capture
        else:
            self._active.pop(capture.id, None)

    def _push(self, computes) -> list:
        """Have the app bring the vRouters of `computes` to the desired flows, with every
        change of intent made so far; return what to `_confirm`. Returns at once (under `lock`
        or not): the app sends the changes of concurrent requests together."""
        if self.app is None:
            return []
        return self.app.push([self.topology.compute(name).dpid for name in computes])

    def _push_all_connected(self) -> list:
        """Like `_push` for every connected vRouter; the others catch up when they reconnect."""
        return self._push(c.name for c in self.topology.computes if self.connected(c))

    def _confirm(self, pushed) -> None:
        """Wait (without `lock`) until the vRouters `_push` named hold the flows and their
        datapath forwards by them; raise `VRouterUnavailable` for the first that does not (not
        connected, refused, no answer)."""
        if pushed:
            self.app.confirm(pushed)

    def _set_topology(self, topology: Topology) -> list:
        self.topology = topology
        self._forwarding.clear()
        self._policy_flows = policy_flows(topology, self.policies)
        self._capture_flows.clear()
        return self._push_all_connected()

    def set_policies(self, rules: dict[str, tuple[PolicyRule, ...]]) -> None:
        """Make the vRouters apply `rules` (each policed network's, in order; see
        controller.policyflows), confirmed when this returns. The default analyzer is launched
        if a rule mirrors to it. Raises `InvalidRequest` (nothing changed) for rules the lab
        cannot apply, such as a mirror to an analyzer that does not exist, and
        `VRouterUnavailable` when a vRouter does not confirm (the previous rules are restored)."""
        mirrored_to = {rule.analyzer for network_rules in rules.values() for rule in network_rules}
        if DEFAULT_ANALYZER in mirrored_to and DEFAULT_ANALYZER not in analyzers(self.topology):
            self.require_whole_lab()
            try:
                self.create_analyzer(DEFAULT_ANALYZER, compute=self.topology.computes[0].name)
            except Conflict:
                pass  # another request launched it meanwhile
        with self.lock:
            previous = self.policies
            flows = policy_flows(self.topology, rules)
            for label, encapsulation in policy_encapsulations(self.topology, rules).items():
                # Policy copies belong to no capture: no analyzer interface, so no recorder
                # files them under one, and the encapsulator records no header-less one.
                set_encapsulation(self.captures_dir, label, {"label": label, "analyzer_interface": None,
                                                             "record": False,
                                                             **encapsulation.to_dict()})
            self.policies, self._policy_flows = rules, flows
            pushed = self._push_all_connected()
        try:
            self._confirm(pushed)
        except MirrorlabError:
            # The writer is told the policies were not applied: the vRouters go back to the
            # rules they had (one that reconnects later reconciles to those).
            with self.lock:
                self.policies, self._policy_flows = previous, policy_flows(self.topology, previous)
                self._push_all_connected()
            raise

    def policy_users(self, analyzer: str) -> list[str]:
        """The policies (fq-name strings) with a rule mirroring to `analyzer`."""
        return sorted({rule.policy for network_rules in self.policies.values()
                       for rule in network_rules if rule.analyzer == analyzer})

    def require_whole_lab(self) -> None:
        """Raise `LabUnavailable` naming what died, if any part of the lab is not running."""
        problems = self.lab_health()
        if problems:
            raise LabUnavailable("; ".join(problems))

    def require_connected(self, computes) -> None:
        """Raise `VRouterUnavailable` naming the first of `computes` whose vRouter is not
        connected to this controller (with no app attached, nothing is pushed or confirmed)."""
        if self.app is None:
            return
        for name in computes:
            if not self.connected(self.topology.compute(name)):
                raise VRouterUnavailable(f"vrouter '{name}' is not connected to the controller; "
                                         f"nothing on it can be confirmed", "vrouter")

    # --- queries -------------------------------------------------------------------------

    def vrouter(self, name: str) -> ComputeNode:
        """The compute node whose vRouter is `name` (compute name or bridge name)."""
        return find_compute(self.topology, name)

    def connected(self, compute: ComputeNode) -> bool:
        """Whether the compute node's vRouter is connected to this controller."""
        return self.app is not None and self.app.connected(compute.dpid)

    def vrouter_problem(self, compute: ComputeNode) -> str | None:
        """What is wrong with the vRouter of `compute`, if anything: not connected, or the
        last OpenFlow error it sent."""
        if self.app is None or not self.connected(compute):
            problem = self.app.problem(compute.dpid) if self.app else None
            return f"not connected to the controller{f' ({problem})' if problem else ''}"
        return self.app.problem(compute.dpid)

    def capture_problem(self, capture: Capture) -> str | None:
        """Why an active capture may not be mirroring now (a vRouter it needs is not connected,
        or the lab is not whole); None when nothing is known to be wrong."""
        if not capture.active:
            return None
        problems = self.lab_health()
        try:
            computes = capture_flows(self.topology, capture)
        except KeyError:  # an analyzer or interface that is gone
            return "its interface or analyzer no longer exists"
        problems += [f"vrouter '{name}' is not connected" for name in computes
                     if not self.connected(self.topology.compute(name))]
        return "; ".join(problems) or None

    def active_captures(self, interface: Interface | None = None) -> list[Capture]:
        """Active captures, all or of one interface."""
        with self.lock:
            return [c for c in self._active.values()
                    if interface is None or c.interface == interface.port_name]

    def list_captures(self) -> list[Capture]:
        """Every capture, newest first."""
        with self.lock:
            return sorted(self.captures.values(), key=lambda c: -c.id)

    def capture(self, capture_id: int) -> Capture:
        """The capture with `capture_id`."""
        with self.lock:
            try:
                return self.captures[capture_id]
            except KeyError:
                raise NotFound(f"unknown capture {capture_id}", "id") from None

    def capture_state(self, capture: Capture) -> str:
        """"starting" until its vRouters confirmed its flows, then "active"; or "stopped"."""
        return "starting" if capture.id in self.starting else capture.state

    def capture_counts(self, capture: Capture) -> tuple[int, int]:
        """(packets, bytes) the analyzer recorded for `capture`."""
        return self.pcaps.count(self.pcap_path(capture))

    def capture_records(self, capture: Capture, after: int, limit: int) -> tuple[list[Record], int]:
        """The frames the analyzer recorded for `capture` after the first `after` (at most
        `limit`), and how many it recorded in all."""
        return self.pcaps.records(self.pcap_path(capture), after, limit)

    def capture_file_size(self, capture: Capture) -> int:
        """How many bytes of the capture's pcap file are complete (header and whole records),
        0 if it holds no record yet."""
        return self.pcaps.complete_size(self.pcap_path(capture))

    def recorders(self) -> dict[str, dict]:
        """The health of each analyzer's recorder, by analyzer name: {"state": running |
        restarting | failed | unknown, "restarts", "last_error", "pid"} ("unknown", with the
        reason in last_error, when the lab process does not answer)."""
        try:
            by_vm = self.lab.recorders()
            unknown = "the lab process does not supervise this analyzer's recorder"
        except LabControlError as err:
            by_vm, unknown = {}, str(err)
        return {name: by_vm.get(vm.name) or {"state": "unknown", "restarts": None,
                                              "last_error": unknown, "pid": None}
                for name, vm in analyzers(self.topology).items()}

    def free_disk_bytes(self) -> int:
        """Free space on the file system the analyzers record to."""
        directory = self.captures_dir
        while not directory.exists():
            directory = directory.parent
        return shutil.disk_usage(directory).free

    def pcap_path(self, capture: Capture) -> Path:
        """The pcap file the analyzer writes for `capture`."""
        return capture_file(self.captures_dir, capture.label)

    def analyzer_interface(self, name: str) -> str:
        """The interface of analyzer instance or fabric analyzer `name` (its recorder's)."""
        vm = analyzers(self.topology).get(name)
        if vm is not None:
            return vm.interfaces[0].name
        if self.topology.has("fabric_analyzer", name):
            return self.topology.fabric_analyzer(name).interface
        known = sorted(analyzers(self.topology)) + [p.name for p in self.topology.fabric_analyzers]
        raise NotFound(f"unknown analyzer '{name}' (known: {', '.join(known) or 'none'})", "name")

    def analyzer_raw_path(self, name: str) -> Path:
        """The raw capture of analyzer instance or fabric analyzer `name`: everything its
        interface received."""
        return raw_capture_file(self.captures_dir, self.analyzer_interface(name))

    # --- analyzers -----------------------------------------------------------------------

    def create_analyzer(self, name: str, network: str | None = None,
                        compute: str | None = None) -> VM:
        """Launch an analyzer instance: a new VM with a recorder, ready when this returns."""
        self.require_whole_lab()
        with self.analyzer_lock:
            with self.lock:
                vm = plan_analyzer(self.topology, name, network, compute)
            try:
                self.lab.add_vm(vm)  # its boot takes seconds: not under `lock`
            except LabControlError as err:
                raise LabUnavailable(f"cannot start analyzer '{name}': {err}") from None
            with self.lock:
                self.store.add_analyzer(vm)
                pushed = self._set_topology(self.topology.with_vm(vm))
            self._confirm(pushed)
            return vm

    def delete_analyzer(self, name: str) -> None:
        """Remove an analyzer instance that no active capture uses."""
        with self.analyzer_lock:
            with self.lock:
                vm = analyzers(self.topology).get(name)
                if vm is None:
                    raise NotFound(f"unknown analyzer '{name}'", "name")
                users = [str(c.id) for c in self.active_captures() if c.analyzer == name]
                if users:
                    raise Conflict(f"analyzer '{name}' is used by active capture(s) "
                                   f"{', '.join(users)}; stop them first")
                policies = self.policy_users(name)
                if policies:
                    raise Conflict(f"analyzer '{name}' is the mirror destination of network "
                                   f"policy {', '.join(policies)}; change those rules first")
                pushed = self._set_topology(self.topology.without_vm(vm.name))
                self.store.remove_analyzer(name)
            try:
                self.lab.remove_vm(vm.name)
            except LabControlError as err:
                raise LabUnavailable(f"analyzer '{name}' is forgotten, but its VM was not "
                                     f"removed: {err}") from None
            self._confirm(pushed)

    # --- captures ------------------------------------------------------------------------

    def start_capture(self, vrouter: str, interface: str, direction: str | None = None,
                      analyzer: str | None = None, lease_seconds: float | None = None,
                      limit_bytes: int | None = None, origin: str = "api",
                      mirror_to: dict | None = None) -> Capture:
        """Start mirroring an interface; the flows are confirmed by the vRouters when this
        returns. Without `analyzer`, the default analyzer is used; the default analyzer
        (named or not) is launched on the interface's compute node if it does not exist yet. With `lease_seconds`, the capture stops unless
        renewed. Its pcap file holds at most `limit_bytes` (default: the controller's capture
        limit). Refused when the disk is below its free-space floor or the analyzer's recorder
        failed. `origin` says who starts it. The capture gets a random secret, which its
        starter needs for a beacon stop or a renewal. `mirror_to` is its destination as
        Contrail's MirrorActionType (`controller.mirrorto`; default: the analyzer, dynamic,
        Juniper header, UDP 8099); its analyzer_name is the same as `analyzer`. If a vRouter
        does not confirm, the capture is stopped again and `VRouterUnavailable` names the
        vRouter."""
        destination = parse_mirror_to(mirror_to)
        unsupported = not_on_the_wire_yet(destination)  # before any analyzer is launched for it
        if unsupported is not None:
            raise unsupported
        # A static or NIC-assisted one goes to a fabric analyzer, not to an analyzer instance.
        if not destination.to_fabric:
            with self.lock:
                analyzer = named_analyzer(self.topology, analyzer, destination) or DEFAULT_ANALYZER
        self.require_whole_lab()
        free = self.free_disk_bytes()
        if free < self.min_free_bytes:
            raise Conflict(f"only {format_size(free)} free in {self.captures_dir}, less than the "
                           f"floor of {format_size(self.min_free_bytes)}; free some space first")
        if not destination.to_fabric and analyzer == DEFAULT_ANALYZER:
            target = find_interface(self.topology, vrouter, interface)
            self.require_connected([target.compute])  # before launching anything for it
            if analyzer not in analyzers(self.topology):
                try:
                    self.create_analyzer(analyzer, compute=target.compute)
                except Conflict:
                    pass  # another request launched it meanwhile
        recorders = self.recorders()  # a call to the lab process: not under `lock`
        with self.lock:
            capture = plan_capture(self.topology, list(self._active.values()),
                                   self.store.next_capture_id(), vrouter, interface, direction,
                                   analyzer, self.clock(), lease_seconds,
                                   self.capture_limit_bytes if limit_bytes is None else limit_bytes,
                                   secret=secrets.token_urlsafe(24), origin=origin,
                                   mirror_to=destination)
            recorder = recorders.get(analyzer, {})
            if recorder.get("state") == "failed":
                raise Conflict(f"analyzer '{analyzer}' cannot record: its recorder failed "
                               f"({recorder.get('last_error')}); delete and re-create it", "analyzer")
            computes = capture_flows(self.topology, capture)
            self.require_connected(computes)
            set_limits(self.captures_dir, capture.label, capture.limit_bytes, self.min_free_bytes)
            wire = ({"nic_vlan": capture.mirror_to.nic_assisted_mirroring_vlan}
                    if capture.mirror_to.nic_assisted_mirroring
                    else capture_encapsulation(self.topology, capture).to_dict())
            set_encapsulation(self.captures_dir, capture.label,
                              {"label": capture.label,
                               "analyzer_interface": self.analyzer_interface(capture.analyzer),
                               **wire})
            self._keep(capture)
            self.starting.add(capture.id)
            pushed = self._push(computes)
        try:
            self._confirm(pushed)
        except MirrorlabError as err:
            with self.lock:
                self._abandon(capture)
            LOG.error("capture %d not started: %s", capture.id, err.message)
            raise
        if capture.mirror_to.nic_assisted_mirroring:
            try:
                self.reconcile_nic_mirrors()
            except LabUnavailable:
                self.stop_capture(capture.id, "the fabric's mirror could not be set", failed=True)
                raise
        with self.lock:
            self.starting.discard(capture.id)
        return capture

    def destination(self, mirror_to: dict | None) -> tuple[str, MirrorTo]:
        """Where a capture started with `mirror_to` (and no separate analyzer) would send its
        copies: the analyzer instance or fabric analyzer, and the destination filled in, as
        `start_capture` makes them. Raises as `start_capture` would (`NotFound` for the
        default analyzer while it is not launched yet)."""
        wanted = parse_mirror_to(mirror_to)
        with self.lock:
            return requested_destination(self.topology, wanted)

    def reconcile_nic_mirrors(self) -> None:
        """Make the fabric switch's mirrors those of the active NIC-assisted captures (through
        the lab process, which owns the lab's Open vSwitch); `LabUnavailable` if it cannot."""
        with self.lock:
            desired = {m.name: m for m in nic_mirrors(self.topology, list(self._active.values()))}
        try:
            present = set(self.lab.nic_mirrors())
            for name in present - set(desired):
                self.lab.remove_nic_mirror(name)
            for name in set(desired) - present:
                mirror = desired[name]
                self.lab.add_nic_mirror(name, mirror.vlan, mirror.fabric_analyzer)
        except LabControlError as err:
            self.nic_mirrors_pending = True
            raise LabUnavailable(f"the fabric's NIC mirrors were not set: {err}") from None
        self.nic_mirrors_pending = False

    def _abandon(self, capture: Capture) -> None:
        """Stop a capture whose flows were not confirmed (under `lock`); the vRouters that did
        get them lose them now or when they reconnect."""
        self.starting.discard(capture.id)
        stopped = capture.stopped(self.clock(), "not started: a vRouter did not confirm its flows",
                                  failed=True)
        self._keep(stopped)
        self._push_all_connected()

    def stop_capture(self, capture_id: int, reason: str | None = None,
                     failed: bool = False) -> Capture:
        """Stop a capture and remove exactly its flows; `reason` says why when it was not a
        user's request, `failed` when something broke. Stopping a stopped capture is a no-op.
        The capture is stopped even if a vRouter does not confirm; `VRouterUnavailable` then
        says which vRouter still has to drop the flows (it does when it reconnects)."""
        with self.lock:
            capture = self.capture(capture_id)
            if not capture.active:
                return capture
            computes = self._flows_of(capture)
            capture = capture.stopped(self.clock(), reason, failed)
            self._keep(capture)
            self.starting.discard(capture.id)
            pushed = self._push(c for c in computes if self.connected(self.topology.compute(c)))
        self._confirm(pushed)
        if capture.mirror_to.nic_assisted_mirroring:
            try:
                self.reconcile_nic_mirrors()
            except LabUnavailable as err:  # the capture is stopped; the housekeeping retries
                LOG.warning("capture %d: %s", capture.id, err.message)
        return capture

    def renew_lease(self, capture_id: int) -> Capture:
        """Extend an active leased capture's lease by its lease_seconds from now. A lease that
        ran out stays out: the capture is stopped, even if the reaper has not got to it yet."""
        with self.lock:
            capture = self.capture(capture_id)
            now = self.clock()
            expired = capture.lease_expired(now)
            if not expired:
                if not capture.active:
                    raise Conflict(f"capture {capture_id} is stopped", "id")
                capture = capture.renewed(now)
                self._keep(capture)
                return capture
        self.stop_capture(capture_id, "its lease ran out")
        raise Conflict(f"capture {capture_id} stopped: its lease ran out", "id")

    def expire_leases(self) -> list[Capture]:
        """Stop every capture whose lease ran out; return them."""
        now = self.clock()
        with self.lock:
            expired = [c.id for c in self._active.values() if c.lease_expired(now)]
        return self._stop_all([(capture_id, "its lease ran out", False) for capture_id in expired])

    def _stop_all(self, stops: list[tuple[int, str, bool]]) -> list[Capture]:
        """Stop each (capture id, reason, failed); a vRouter that cannot confirm catches up
        when it reconnects."""
        stopped = []
        for capture_id, reason, failed in stops:
            try:
                stopped.append(self.stop_capture(capture_id, reason, failed))
            except VRouterUnavailable as err:
                LOG.warning("capture %d: %s", capture_id, err.message)
                stopped.append(self.capture(capture_id))
        return stopped

    def apply_recorder_reports(self) -> list[Capture]:
        """Stop every active capture whose recorder stopped recording it (a limit), and fail
        every active capture whose analyzer's recorder failed; return them."""
        if not self.active_captures():
            return []
        recorders = self.recorders()  # asked before taking the lock: it is a call to the lab
        stops = []
        with self.lock:
            for capture in self.active_captures():
                report = stop_report(self.captures_dir, capture.label)
                recorder = recorders.get(capture.analyzer, {})
                if report is not None:
                    stops.append((capture.id, report["reason"], False))
                elif recorder.get("state") == "failed":
                    stops.append((capture.id, f"the recorder of analyzer '{capture.analyzer}' "
                                              f"failed: {recorder.get('last_error')}", True))
        return self._stop_all(stops)
