"""The os-ken app: the only code that sends FlowMods.

It keeps each connected vRouter's flow table equal to the desired set the service computes.
On connection it dumps the installed flows and reconciles (so a restarted controller removes
stale flows and adds missing ones without touching correct ones); afterwards it applies
differences as the intent changes, and audits every vRouter's table every few seconds, so
flows deleted or added behind its back are put right. Flows are compared by
(table, priority, cookie), the cookie carrying a digest of the flow (see `controller.flowmodel`).

What a vRouter holds is known only from what it confirmed: each batch of FlowMods ends with a
barrier, and the batch counts as installed when the barrier reply comes, less any FlowMod the
switch refused with an OpenFlow error (which is logged and reported to whoever waits). Whoever
waits (`confirm`) also waits for the switch's datapath to re-translate its cached flows.
Only the lab's own Open vSwitch may connect: a connection from any other process is refused.

Requests commit in groups (`push`, then `confirm`): a committer thread keeps at most one batch
of its own in flight per vRouter, and sends the next one, with the changes of every request
that came meanwhile, when its barrier reply comes; the requests of one batch share its barrier,
and concurrent requests share the watching of the datapath's revalidation rounds
(`controller.commit.SharedRounds`). No lock is held while anyone waits for a switch.
"""
from __future__ import annotations

import functools
import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (
    CONFIG_DISPATCHER, DEAD_DISPATCHER, HANDSHAKE_DISPATCHER, MAIN_DISPATCHER, set_ev_cls,
)
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from mirrorlab.controller.commit import SharedRounds
from mirrorlab.controller.errors import VRouterUnavailable
from mirrorlab.controller.ofproto import add_flow, delete_flow, ofp_match
from mirrorlab.sandbox import SandboxError

LOG = logging.getLogger("mirrorlab.controller")
CONFIRM_TIMEOUT = 5.0
AUDIT_INTERVAL = 2.0
# Reading a flow table back costs os-ken some 50 µs a flow (it parses every action). The audit
# reads the vRouters one after another, at most this many flows a second: a small lab is still
# audited every AUDIT_INTERVAL, while a lab of 1000 VMs (25,000 flows), read all at once every
# AUDIT_INTERVAL, kept a core busy and delayed echo replies past the liveness check.
AUDIT_FLOWS_PER_SECOND = 2000
# A flow table the pipeline never uses, where deleting "the" flow deletes nothing.
ROUND_TRIGGER_TABLE = 254


def _logged(handler):
    """Log a handler's failure instead of letting it end its thread (for os-ken's event loop:
    os-ken would stop dispatching events to this app for good)."""
    @functools.wraps(handler)
    def wrapper(self, *args):
        try:
            handler(self, *args)
        except Exception:
            LOG.exception("%s failed", handler.__name__)
    return wrapper


def peer_pid(sock) -> int | None:
    """The PID of the process at the other end of a Unix socket (None for other sockets)."""
    try:
        if sock.family != socket.AF_UNIX:
            return None
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return struct.unpack("3i", creds)[0]


@dataclass
class Batch:
    """FlowMods sent to one vRouter and the barrier that confirms them."""

    vrouter: str
    adds: dict = field(default_factory=dict)     # key -> match
    deletes: set = field(default_factory=set)    # keys
    errors: list = field(default_factory=list)   # what the switch refused, as text
    done: threading.Event = field(default_factory=threading.Event)
    lost: str | None = None                      # why it will never be confirmed

    def wait(self, deadline: float) -> None:
        """Return once the vRouter confirmed the batch; raise `VRouterUnavailable` naming the
        vRouter if it refused part of it, disconnected, or did not answer by `deadline` (a
        `time.monotonic()`)."""
        if not self.done.wait(max(0.0, deadline - time.monotonic())):
            raise _not_confirmed(self.vrouter)
        if self.lost:
            raise VRouterUnavailable(f"vrouter '{self.vrouter}' {self.lost} before confirming "
                                     f"flow changes", "vrouter")
        if self.errors:
            raise VRouterUnavailable(f"vrouter '{self.vrouter}' refused flow changes: "
                                     f"{'; '.join(self.errors[:3])}", "vrouter")


def _not_confirmed(vrouter: str) -> VRouterUnavailable:
    return VRouterUnavailable(f"vrouter '{vrouter}' did not confirm flow changes within "
                              f"{CONFIRM_TIMEOUT:.0f} s", "vrouter")


@dataclass
class Ticket:
    """One request's claim on a vRouter: that it come to hold the flows the intent asked for
    when the request made it. The committer settles it with the batches whose confirmation
    says so (none when the vRouter held them already), or with why it cannot."""

    vrouter: str
    settled: threading.Event = field(default_factory=threading.Event)
    batches: list = field(default_factory=list)
    failure: VRouterUnavailable | None = None

    def wait(self, deadline: float) -> None:
        """Return once the vRouter confirmed the flows; raise `VRouterUnavailable` naming it
        otherwise (not connected, refused, or no answer by `deadline`)."""
        if not self.settled.wait(max(0.0, deadline - time.monotonic())):
            raise _not_confirmed(self.vrouter)
        if self.failure is not None:
            raise self.failure
        for batch in self.batches:
            batch.wait(deadline)


class VRouterApp(app_manager.OSKenApp):
    """Programs every vRouter from the service's desired flows."""

    OFP_VERSIONS = [ofp.OFP_VERSION]
    # controller.main sets these before os-ken instantiates the app: the service, a function
    # giving the PID of the lab's ovs-vswitchd (the only process that may connect), and one
    # returning at the end of that ovs-vswitchd's revalidation round under way or its next one,
    # calling its argument once it waits (`RevalidationWatch.next_round_end`; see `confirm`;
    # None: the switches cache no flows).
    service = None
    trusted_switch_pid = None
    revalidation_round = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lock = threading.RLock()
        self.datapaths = {}
        self.installed: dict[int, dict] = {}  # dpid -> {(table, priority, cookie): match}, confirmed
        self.batches: dict[tuple[int, int], Batch] = {}  # (dpid, barrier xid) -> in flight
        self.flowmods: dict[tuple[int, int], tuple[int, tuple, str]] = {}  # (dpid, xid) -> batch
        self.dumps: dict[int, list] = {}
        self.problems: dict[int, str] = {}  # dpid -> the last thing that went wrong with it
        self.refused: list[str] = []        # connections refused, newest last
        self.pending_reconcile: set[int] = set()
        self.wakeup = threading.Condition(self.lock)
        self.tickets: dict[int, list[Ticket]] = {}  # dpid -> tickets the committer has not sent yet
        self.committing: dict[int, Batch] = {}      # dpid -> the committer's batch in flight
        self.commit_wakeup = threading.Condition(self.lock)
        # Held from a batch's registration until its last message is handed to os-ken, so
        # batches leave in the order `_expected` assumes, without holding the locks meanwhile.
        self.send_locks: dict[int, threading.Lock] = {}
        self.revalidation = SharedRounds(self._revalidation_round)
        self.service.attach(self)
        threading.Thread(target=self._reconciler, name="reconciler", daemon=True).start()
        threading.Thread(target=self._committer, name="flow-commit", daemon=True).start()
        threading.Thread(target=self._auditor, name="flow-audit", daemon=True).start()

    # --- queries -----------------------------------------------------------------------------

    def connected(self, dpid: int) -> bool:
        """Whether the vRouter with `dpid` is connected and its table has been read."""
        return dpid in self.installed

    def problem(self, dpid: int) -> str | None:
        """The last problem seen with the vRouter `dpid` (refused flows, a lost connection)."""
        return self.problems.get(dpid)

    # --- connections ---------------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    @_logged
    def _switch_features(self, event):
        datapath = event.msg.datapath
        pid, trusted = peer_pid(datapath.socket), self.trusted_switch_pid()
        if pid is None or pid != trusted:
            message = (f"refused a connection from pid {pid} claiming dpid {datapath.id}: only the "
                       f"lab's ovs-vswitchd (pid {trusted}) may connect")
            LOG.error(message)
            with self.lock:
                self.refused = (self.refused + [message])[-10:]
            datapath.close()
            return
        if self.service.vrouter_name(datapath.id) is None:
            LOG.error("a switch with unknown dpid %s connected; leaving it alone", datapath.id)
            datapath.close()
            return
        LOG.info("vRouter dpid=%s connected; reading its flow table", datapath.id)
        with self.lock:
            previous = self.datapaths.get(datapath.id)
            self.datapaths[datapath.id] = datapath
            self._forget(datapath.id, "reconnected")
        if previous is not None and previous is not datapath:
            previous.close()  # the switch called again: its old connection is dead
        self._request_dump(datapath)

    def _request_dump(self, datapath) -> None:
        with self.lock:
            if datapath.id in self.dumps:
                return
            self.dumps[datapath.id] = []
        datapath.send_msg(parser.OFPFlowStatsRequest(datapath, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY,
                                                     ofp.OFPG_ANY, 0, 0, parser.OFPMatch()))

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    @_logged
    def _flow_stats(self, event):
        datapath = event.msg.datapath
        with self.lock:
            if self.datapaths.get(datapath.id) is not datapath or datapath.id not in self.dumps:
                return
            self.dumps[datapath.id].extend(event.msg.body)
            if event.msg.flags & ofp.OFPMPF_REPLY_MORE:
                return
            stats = self.dumps.pop(datapath.id)
            first = datapath.id not in self.installed
            # What the switch holds now; batches still in flight were sent after the request
            # and are applied on top when their barriers come back.
            self.installed[datapath.id] = {(s.table_id, s.priority, s.cookie): s.match for s in stats}
            if first:
                LOG.info("vRouter dpid=%s holds %d flows", datapath.id, len(stats))
            self.pending_reconcile.add(datapath.id)
            self.wakeup.notify()

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    @_logged
    def _state_change(self, event):
        if event.state == DEAD_DISPATCHER and event.datapath.id is not None:
            with self.lock:
                if self.datapaths.get(event.datapath.id) is event.datapath:
                    LOG.warning("vRouter dpid=%s disconnected", event.datapath.id)
                    del self.datapaths[event.datapath.id]
                    self._forget(event.datapath.id, "disconnected")
                    self.problems[event.datapath.id] = "disconnected from the controller"

    def _forget(self, dpid: int, why: str) -> None:
        """Drop what is known of `dpid`'s table; release whoever waits for it (under the lock)."""
        self.installed.pop(dpid, None)
        self.dumps.pop(dpid, None)
        for key in [key for key in self.flowmods if key[0] == dpid]:
            del self.flowmods[key]
        for key in [key for key in self.batches if key[0] == dpid]:
            batch = self.batches.pop(key)
            batch.lost = why
            batch.done.set()
        if self.committing.pop(dpid, None) is not None:
            self.commit_wakeup.notify()

    # --- confirmations and errors ----------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    @_logged
    def _barrier_reply(self, event):
        dpid = event.msg.datapath.id
        with self.lock:
            batch = self.batches.pop((dpid, event.msg.xid), None)
            if batch is None:
                return
            installed = self.installed.get(dpid)
            if installed is not None:
                installed.update(batch.adds)
                for key in batch.deletes:
                    installed.pop(key, None)
            for key in [key for key, value in self.flowmods.items()
                        if key[0] == dpid and value[0] == event.msg.xid]:
                del self.flowmods[key]
            if batch.errors:
                self.problems[dpid] = "refused flows: " + "; ".join(batch.errors[:3])
            batch.done.set()
            if self.committing.get(dpid) is batch:
                del self.committing[dpid]
                self.commit_wakeup.notify()

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [HANDSHAKE_DISPATCHER, CONFIG_DISPATCHER, MAIN_DISPATCHER])
    @_logged
    def _error(self, event):
        msg = event.msg
        names = ofp.ofp_error_to_jsondict(msg.type, msg.code)
        with self.lock:
            sent = self.flowmods.pop((msg.datapath.id, msg.xid), None)
            batch = self.batches.get((msg.datapath.id, sent[0])) if sent else None
            if batch is None:
                text = f"{names['type']} {names['code']} (xid {msg.xid})"
                self.problems[msg.datapath.id] = f"OpenFlow error: {text}"
                LOG.error("vRouter dpid=%s sent an OpenFlow error: %s", msg.datapath.id, text)
                return
            _barrier, key, kind = sent
            text = f"{kind} of flow table={key[0]} priority={key[1]} cookie={key[2]:#x}: " \
                   f"{names['type']} {names['code']}"
            LOG.error("vRouter dpid=%s refused %s", msg.datapath.id, text)
            batch.errors.append(text)
            batch.adds.pop(key, None)
            batch.deletes.discard(key)

    def push(self, dpids) -> list[Ticket]:
        """Ask for the vRouters `dpids` to be brought to their desired flows, with every change
        of intent made before this call; return the tickets to `confirm`. Returns at once: the
        committer sends the changes of every request that came since its last batch to that
        vRouter in one batch, as soon as that batch is confirmed."""
        with self.lock:
            tickets = []
            for dpid in dpids:
                ticket = Ticket(self.service.vrouter_name(dpid) or f"dpid {dpid}")
                self.tickets.setdefault(dpid, []).append(ticket)
                tickets.append(ticket)
            self.commit_wakeup.notify()
        return tickets

    def confirm(self, tickets: list[Ticket]) -> None:
        """Return once every ticket's vRouter confirmed its flows and the datapath forwards by
        them. The barrier reply says a vRouter's flow tables hold the changes, but Open
        vSwitch's datapath goes on applying the actions its cached flows were translated to
        until its revalidators have run: without waiting for them, a new capture misses the
        first packets of traffic already flowing, and a stopped one still copies a few. So
        this also waits for a revalidation round that began after the confirmation to end
        (shared with every other request waiting). Raises `VRouterUnavailable` naming the
        vRouter(s) if either cannot be confirmed."""
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        for ticket in tickets:
            ticket.wait(deadline)
        if not tickets or self.revalidation_round is None:
            return
        try:
            self.revalidation.wait()
        except SandboxError as err:
            names = ", ".join(dict.fromkeys(f"'{ticket.vrouter}'" for ticket in tickets))
            raise VRouterUnavailable(f"vrouter {names} confirmed its flow changes, but its "
                                     f"datapath may still forward by the old ones: {err}",
                                     "vrouter") from None

    def _revalidation_round(self) -> None:
        self.revalidation_round(self._start_revalidation_round)

    def _start_revalidation_round(self) -> None:
        """Make the lab's ovs-vswitchd start a revalidation round now rather than at its next
        timer (100 ms at the soonest): a FlowMod that deletes nothing still bumps the version
        of the bridge's flow tables, which is what starts a round (Open vSwitch 3.1,
        `handle_flow_mod__`). Every vRouter is a bridge of that one ovs-vswitchd, so any will
        do; with none connected, the timer starts it."""
        with self.lock:  # where the transaction ids of this app's messages are given out
            datapath = next((self.datapaths.get(dpid) for dpid in self.installed), None)
            if datapath is None:
                return
            trigger = delete_flow(datapath, ROUND_TRIGGER_TABLE, 0, 0, parser.OFPMatch())
            datapath.set_xid(trigger)
        datapath.send_msg(trigger)

    def _committer(self) -> None:
        # Not on os-ken's event thread, for the same reason as the reconciler; it never waits
        # for a switch: a barrier reply wakes it for that vRouter's next batch.
        while True:
            with self.lock:
                while not (ready := [dpid for dpid, tickets in self.tickets.items()
                                     if tickets and dpid not in self.committing]):
                    self.commit_wakeup.wait()
                groups = {dpid: self.tickets.pop(dpid) for dpid in ready}
            for dpid, tickets in groups.items():
                try:
                    self._commit(dpid, tickets)
                except Exception as err:
                    LOG.exception("committing flow changes to dpid=%s failed", dpid)
                    failure = VRouterUnavailable(f"vrouter '{tickets[0].vrouter}' did not get its "
                                                 f"flow changes: {err}", "vrouter")
                    for ticket in tickets:
                        ticket.failure = failure
                        ticket.settled.set()

    def _commit(self, dpid: int, tickets: list[Ticket]) -> None:
        """Send one batch bringing `dpid` to its desired flows, and settle `tickets` with every
        batch in flight to it then (the others may carry a ticket's change too; each one's
        barrier reply says all before it were applied)."""
        try:
            batch = self.sync(dpid)
        except VRouterUnavailable as err:
            for ticket in tickets:
                ticket.failure = err
                ticket.settled.set()
            return
        with self.lock:
            if batch is not None and not batch.done.is_set():
                self.committing[dpid] = batch
            in_flight = [b for (batch_dpid, _xid), b in sorted(self.batches.items()) if batch_dpid == dpid]
            if batch is not None and batch not in in_flight:
                in_flight.append(batch)  # confirmed (or lost) already: its outcome still counts
            for ticket in tickets:
                ticket.batches = in_flight
                ticket.settled.set()

    # --- reconciliation ------------------------------------------------------------------------

    def _reconciler(self) -> None:
        # Not on os-ken's event thread: syncing takes the service's lock, and only the event
        # thread delivers the replies that requests holding it may wait for.
        while True:
            with self.lock:
                while not self.pending_reconcile:
                    self.wakeup.wait()
                dpid = self.pending_reconcile.pop()
            try:
                batch = self.sync(dpid)
                if batch is not None:
                    LOG.info("vRouter dpid=%s reconciled: %d flows added, %d removed",
                             dpid, len(batch.adds), len(batch.deletes))
            except Exception:
                LOG.exception("reconciling dpid=%s failed", dpid)

    def _auditor(self) -> None:
        while True:
            with self.lock:
                datapaths = [(dp, len(self.installed[dpid])) for dpid, dp in self.datapaths.items()
                             if dpid in self.installed]
            if not datapaths:
                time.sleep(AUDIT_INTERVAL)
            for datapath, flows in datapaths:
                time.sleep(max(AUDIT_INTERVAL / len(datapaths), flows / AUDIT_FLOWS_PER_SECOND))
                with self.lock:
                    current = (self.datapaths.get(datapath.id) is datapath
                               and datapath.id in self.installed)
                try:
                    if current:
                        self._request_dump(datapath)
                except Exception:
                    LOG.exception("auditing dpid=%s failed", datapath.id)

    def _expected(self, dpid: int) -> dict:
        """What `dpid` will hold once every batch in flight is confirmed (under the lock)."""
        expected = dict(self.installed[dpid])
        for (batch_dpid, _xid), batch in sorted(self.batches.items()):
            if batch_dpid == dpid:
                expected.update(batch.adds)
                for key in batch.deletes:
                    expected.pop(key, None)
        return expected

    def sync(self, dpid: int) -> Batch | None:
        """Send vRouter `dpid` what it needs to hold exactly the desired flows: adds first, then
        deletes (an ADD over an equal match replaces it, so nothing forwards through a gap),
        then a barrier. Returns the batch to `wait()` on, or None when nothing had to change.
        Raises `VRouterUnavailable` if the vRouter is not connected."""
        # Lock order: the service's, then this app's. The desired flows and the batch are taken
        # together, so batches reach a vRouter in the order of the intents they carry.
        with self.service.lock, self.lock:
            name = self.service.vrouter_name(dpid) or f"dpid {dpid}"
            datapath = self.datapaths.get(dpid)
            if datapath is None or dpid not in self.installed:
                raise VRouterUnavailable(f"vrouter '{name}' is not connected to the controller",
                                         "vrouter")
            desired = {flow.key: flow for flow in self.service.desired_flows_for(dpid)}
            expected = self._expected(dpid)
            missing = [desired[key] for key in desired.keys() - expected.keys()]
            stale = [(key, expected[key]) for key in expected.keys() - desired.keys()]
            if not missing and not stale:
                return None
            batch = Batch(vrouter=name)
            barrier = parser.OFPBarrierRequest(datapath)
            datapath.set_xid(barrier)
            messages = []
            for flow in sorted(missing, key=lambda f: (f.table, f.priority)):
                message = add_flow(datapath, flow)
                datapath.set_xid(message)
                messages.append(message)
                self.flowmods[(dpid, message.xid)] = (barrier.xid, flow.key, "add")
                batch.adds[flow.key] = ofp_match(flow)
            for (table, priority, cookie), match in stale:
                message = delete_flow(datapath, table, priority, cookie, match)
                datapath.set_xid(message)
                messages.append(message)
                self.flowmods[(dpid, message.xid)] = (barrier.xid, (table, priority, cookie), "delete")
                batch.deletes.add((table, priority, cookie))
            self.batches[(dpid, barrier.xid)] = batch
            sending = self.send_locks.setdefault(dpid, threading.Lock())
            sending.acquire()
        try:
            for message in messages + [barrier]:
                datapath.send_msg(message)
        finally:
            sending.release()
        return batch
