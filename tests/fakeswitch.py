"""A vRouter as the os-ken app sees it, without Open vSwitch (after Faucet's fakeoftable).

`FakeSwitch` is an os-ken datapath whose `send_msg` encodes each message to OpenFlow 1.3 bytes,
decodes the bytes of FlowMods again with os-ken's parser, keeps the messages, and applies FlowMods
to a software flow table with OpenFlow's rules: an ADD with the table, priority and match of an
existing flow replaces it; a DELETE_STRICT removes the flow with that table, priority and match
if its cookie matches under the mask. Requests that expect an answer (flow stats, barrier) are
answered through the app's own event handlers, on one thread per switch, as os-ken does.

`wire_flow` turns a decoded FlowMod (or flow stats entry) back into `controller.flowmodel`
terms, so tests compare what went over the wire with what the pipeline asked for.
"""
from __future__ import annotations

import queue
import socket
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace

from os_ken.controller import ofp_event
from os_ken.controller.handler import DEAD_DISPATCHER
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from mirrorlab.controller.flowmodel import (
    Clone, Ct, Decap, DecTtl, Encap, Flow, Move, Output, PopVlan, PushVlan, Resubmit, SetField,
)
from mirrorlab.controller.ofproto import (
    FIELD_BITS, add_flow, NX_IN_PORT, PACKET_TYPE_ETHERNET, PACKET_TYPE_MPLS, PACKET_TYPE_USE_NEXT_PROTO,
    NXActionClone, NXActionDecap, NXActionEncap,
)


@dataclass(frozen=True)
class WireFlow:
    """A flow as decoded from OpenFlow, in flowmodel terms."""

    table: int
    priority: int
    cookie: int
    match: tuple
    actions: tuple
    goto: int | None

    @classmethod
    def of(cls, flow: Flow) -> "WireFlow":
        """What `flow` should look like once it went over the wire."""
        return cls(flow.table, flow.priority, flow.cookie, flow.match, flow.actions, flow.goto)


def wire_action(action):
    """The flowmodel action an os-ken action decodes to."""
    if isinstance(action, parser.OFPActionOutput):
        return Output("in_port" if action.port == ofp.OFPP_IN_PORT else action.port)
    if isinstance(action, parser.OFPActionSetField):
        return SetField(action.key, action.value)
    if isinstance(action, parser.NXActionRegLoad) and action.dst == "in_port_nxm":
        assert action.ofs_nbits == 15  # all 16 bits from bit 0
        return SetField("in_port", action.value)
    if isinstance(action, parser.NXActionRegMove):
        assert (action.n_bits, action.src_ofs, action.dst_ofs) == (FIELD_BITS[action.src_field], 0, 0)
        return Move(action.src_field, action.dst_field)
    if isinstance(action, NXActionEncap):
        return Encap({PACKET_TYPE_MPLS: "mpls", PACKET_TYPE_ETHERNET: "ethernet"}[action.new_packet_type])
    if isinstance(action, NXActionDecap):
        return Decap(inner_ethernet={PACKET_TYPE_ETHERNET: True,
                                     PACKET_TYPE_USE_NEXT_PROTO: False}[action.new_packet_type])
    if isinstance(action, parser.OFPActionPushVlan):
        assert action.ethertype == 0x8100
        return PushVlan()
    if isinstance(action, parser.OFPActionPopVlan):
        return PopVlan()
    if isinstance(action, NXActionClone):
        return Clone(tuple(wire_action(a) for a in action.actions))
    if isinstance(action, parser.NXActionResubmitTable):
        assert action.in_port == NX_IN_PORT
        return Resubmit(action.table_id)
    if isinstance(action, parser.OFPActionDecNwTtl):
        return DecTtl()
    if isinstance(action, parser.NXActionCT):
        assert (action.zone_src, action.alg, action.actions) in (("", 0, []), (None, 0, []))
        return Ct(action.zone_ofs_nbits, commit=bool(action.flags & 1),
                  table=None if action.recirc_table == 0xFF else action.recirc_table)
    raise AssertionError(f"undecodable action {action!r}")


def wire_flow(message) -> WireFlow:
    """A decoded FlowMod or flow stats entry as a `WireFlow`."""
    actions, goto = (), None
    for instruction in message.instructions:
        if isinstance(instruction, parser.OFPInstructionGotoTable):
            assert goto is None
            goto = instruction.table_id
        else:
            assert instruction.type == ofp.OFPIT_APPLY_ACTIONS and not actions, instruction
            actions = tuple(wire_action(a) for a in instruction.actions)
    return WireFlow(message.table_id, message.priority, message.cookie,
                    tuple(sorted(message.match.items())), actions, goto)


def decode(datapath, message):
    """Encode an os-ken message to bytes, and decode the bytes with os-ken's parser."""
    message.serialize()
    data = bytes(message.buf)
    version, msg_type, msg_len, xid = ofproto_parser.header(data)
    assert msg_len == len(data)
    return ofproto_parser.msg(datapath, version, msg_type, msg_len, xid, data)


def handlers(app, event) -> list:
    """The app's handlers of `event`'s class (os-ken's @set_ev_cls registrations)."""
    found = []
    for name in dir(type(app)):
        handler = getattr(app, name, None)
        if type(event) in getattr(handler, "callers", {}):
            found.append(handler)
    assert found, f"the app does not handle {type(event).__name__}"
    return found


def deliver(app, event) -> None:
    """Hand `event` to every handler the app registered for it."""
    for handler in handlers(app, event):
        handler(event)


class FakeSwitch:
    """One vRouter: an os-ken datapath over a software flow table (see the module's docstring)."""

    ofproto = ofp
    ofproto_parser = parser

    def __init__(self, dpid: int, app, flows=()):
        self.id = dpid
        self.app = app
        self.lock = threading.Lock()
        self.table: dict[tuple, object] = {}  # (table, priority, match items) -> decoded entry
        self.sent: list = []  # every decoded message, in the order the app sent them
        self.unexpected: list[str] = []
        self.xid = 0
        self.events: queue.Queue = queue.Queue()
        # A real Unix connection, as the lab's ovs-vswitchd has: its peer is this process.
        self.socket, self._other_end = socket.socketpair(socket.AF_UNIX)
        self.closed = False
        self.refused_tables: set[int] = set()  # FlowMods for these tables get an OpenFlow error
        self.answers_barriers = True
        self.holds_barriers = False  # keeps barrier replies until `release_barriers`
        self.held: list = []
        threading.Thread(target=self._event_loop, name=f"fake-switch-{dpid}", daemon=True).start()
        for flow in flows:
            self._apply(decode(self, add_flow(self, flow)))

    # --- the datapath interface the app uses -------------------------------------------

    def set_xid(self, message) -> int:
        """Give `message` the next transaction id."""
        with self.lock:
            self.xid += 1
            message.set_xid(self.xid)
            return self.xid

    def send_msg(self, message) -> None:
        """Take one message from the app, as the switch would receive it."""
        if message.xid is None:
            self.set_xid(message)
        if isinstance(message, parser.OFPFlowMod):
            decoded = decode(self, message)
        else:  # os-ken decodes only what switches send, and FlowMods
            message.serialize()
            decoded = message
        with self.lock:
            self.sent.append(decoded)
        if isinstance(decoded, parser.OFPFlowMod) and decoded.table_id in self.refused_tables:
            self.events.put(ofp_event.EventOFPErrorMsg(SimpleNamespace(
                datapath=self, xid=decoded.xid, type=ofp.OFPET_BAD_ACTION,
                code=ofp.OFPBAC_BAD_SET_ARGUMENT)))
        elif isinstance(decoded, parser.OFPFlowMod):
            self._apply(decoded)
        elif isinstance(decoded, parser.OFPFlowStatsRequest):
            with self.lock:
                body = list(self.table.values())
            self.events.put(ofp_event.EventOFPFlowStatsReply(
                SimpleNamespace(datapath=self, xid=decoded.xid, flags=0, body=body)))
        elif isinstance(decoded, parser.OFPBarrierRequest) and not self.answers_barriers:
            pass
        elif isinstance(decoded, parser.OFPBarrierRequest):
            reply = ofp_event.EventOFPBarrierReply(SimpleNamespace(datapath=self, xid=decoded.xid))
            with self.lock:
                if self.holds_barriers:
                    self.held.append(reply)
                    return
            self.events.put(reply)
        elif not isinstance(decoded, parser.OFPEchoRequest):
            self.unexpected.append(f"message the fake switch does not model: {decoded}")

    # --- what tests use ------------------------------------------------------------------

    def connect(self) -> None:
        """The switch connects: os-ken tells the app its features."""
        self.events.put(ofp_event.EventOFPSwitchFeatures(
            SimpleNamespace(datapath=self, datapath_id=self.id, xid=0)))

    def close(self) -> None:
        """The app hangs up on the switch (as on a refused or superseded connection)."""
        self.closed = True

    def disconnect(self) -> None:
        """The connection drops."""
        event = ofp_event.EventOFPStateChange(self)
        event.state = DEAD_DISPATCHER
        self.events.put(event)

    def barriers(self) -> int:
        """How many barrier requests the app sent (not forgotten by `flow_mods`)."""
        with self.lock:
            return sum(isinstance(m, parser.OFPBarrierRequest) for m in self.sent)

    def wait_for_barriers(self, count: int, timeout: float = 10.0) -> None:
        """Wait until `count` barrier replies are held (the switch `holds_barriers`)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.held) >= count:
                    return
            assert time.monotonic() < deadline, f"{count} barriers never came"
            time.sleep(0.001)

    def release_barriers(self) -> int:
        """Answer the barriers held so far, in order; how many."""
        with self.lock:
            held, self.held = self.held, []
        for reply in held:
            self.events.put(reply)
        return len(held)

    def flows(self) -> set[WireFlow]:
        """The flow table, decoded."""
        with self.lock:
            return {wire_flow(entry) for entry in self.table.values()}

    def flow_mods(self) -> list:
        """The FlowMods the app sent, in order; forgets them."""
        with self.lock:
            mods = [m for m in self.sent if isinstance(m, parser.OFPFlowMod)]
            self.sent.clear()
            return mods

    def idle(self) -> None:
        """Wait until every pending reply was handed to the app."""
        self.events.join()

    # --- internals -------------------------------------------------------------------------

    def _event_loop(self) -> None:
        while True:
            event = self.events.get()
            try:
                deliver(self.app, event)
            finally:
                self.events.task_done()

    def _apply(self, mod) -> None:
        key = (mod.table_id, mod.priority, tuple(sorted(mod.match.items())))
        with self.lock:
            if mod.command == ofp.OFPFC_ADD:
                self.table[key] = parser.OFPFlowStats(
                    table_id=mod.table_id, duration_sec=0, duration_nsec=0, priority=mod.priority,
                    idle_timeout=mod.idle_timeout, hard_timeout=mod.hard_timeout, flags=mod.flags,
                    cookie=mod.cookie, packet_count=0, byte_count=0, match=mod.match,
                    instructions=mod.instructions)
            elif mod.command == ofp.OFPFC_DELETE_STRICT:
                entry = self.table.get(key)
                if entry is not None and (entry.cookie ^ mod.cookie) & mod.cookie_mask == 0:
                    del self.table[key]
            else:
                self.unexpected.append(f"FlowMod command {mod.command} is not modelled")
