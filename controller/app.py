"""The os-ken app: the only code that sends FlowMods.

It keeps each connected vRouter's flow table equal to the desired set the service computes.
On connection it dumps the installed flows and reconciles (so a restarted controller removes
stale flows and adds missing ones without touching correct ones); afterwards it applies
differences as the intent changes. Flows are compared by (table, priority, cookie), the cookie
carrying a digest of the flow (see `controller.flowmodel`).
"""
from __future__ import annotations

import functools
import logging
import threading

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.ofproto import add_flow, delete_flow, ofp_match

LOG = logging.getLogger("mirrorlab.controller")
BARRIER_TIMEOUT = 10.0


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


class VRouterApp(app_manager.OSKenApp):
    """Programs every vRouter from the service's desired flows."""

    OFP_VERSIONS = [ofp.OFP_VERSION]
    # controller.main sets this before os-ken instantiates the app.
    service = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lock = threading.RLock()
        self.datapaths = {}
        self.installed: dict[int, dict] = {}  # dpid -> {(table, priority, cookie): match}
        self.dumps: dict[int, list] = {}
        self.barriers: dict[tuple[int, int], threading.Event] = {}  # (dpid, xid) -> waiter
        self.service.attach(self)

    def connected(self, dpid: int) -> bool:
        """Whether the vRouter with `dpid` is connected and reconciled."""
        return dpid in self.installed

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    @_logged
    def _switch_features(self, event):
        datapath = event.msg.datapath
        LOG.info("vRouter dpid=%s connected; reading its flow table", datapath.id)
        self.dumps[datapath.id] = []
        datapath.send_msg(parser.OFPFlowStatsRequest(datapath, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY,
                                                     ofp.OFPG_ANY, 0, 0, parser.OFPMatch()))

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    @_logged
    def _flow_stats(self, event):
        datapath = event.msg.datapath
        self.dumps.setdefault(datapath.id, []).extend(event.msg.body)
        if event.msg.flags & ofp.OFPMPF_REPLY_MORE:
            return
        stats = self.dumps.pop(datapath.id)
        with self.lock:
            self.datapaths[datapath.id] = datapath
            self.installed[datapath.id] = {(s.table_id, s.priority, s.cookie): s.match for s in stats}
        # Not on this event thread: syncing takes the service's lock, which a request may hold
        # while it waits for a barrier reply that only this thread can deliver.
        threading.Thread(target=self._reconcile, args=(datapath.id, len(stats)),
                         name=f"reconcile-{datapath.id}", daemon=True).start()

    @_logged
    def _reconcile(self, dpid: int, found: int) -> None:
        added, removed = self.sync(dpid)
        LOG.info("vRouter dpid=%s reconciled: %d flows found, %d added, %d removed",
                 dpid, found, added, removed)

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    @_logged
    def _state_change(self, event):
        if event.state == DEAD_DISPATCHER and event.datapath.id is not None:
            with self.lock:
                if self.datapaths.get(event.datapath.id) is event.datapath:
                    LOG.info("vRouter dpid=%s disconnected", event.datapath.id)
                    del self.datapaths[event.datapath.id]
                    self.installed.pop(event.datapath.id, None)
                    # A lost connection confirms nothing; reconnecting reconciles instead.
                    for key in [key for key in list(self.barriers) if key[0] == event.datapath.id]:
                        waiter = self.barriers.pop(key, None)  # its reply may have just come
                        if waiter:
                            waiter.set()

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    @_logged
    def _barrier_reply(self, event):
        waiter = self.barriers.pop((event.msg.datapath.id, event.msg.xid), None)
        if waiter:
            waiter.set()

    def sync(self, dpid: int, wait: bool = False) -> tuple[int, int]:
        """Make vRouter `dpid` hold exactly the desired flows: add what is missing first, then
        delete what is stale (an ADD over an equal match replaces it, so nothing forwards
        through a gap). With `wait`, return only once the vRouter confirmed (barrier).
        Returns (added, removed); (0, 0) for a vRouter that is not connected."""
        # Lock order: the service's, then this app's. The service holds its lock while it
        # changes the intent and pushes it, so the desired flows cannot change under us.
        with self.service.lock, self.lock:
            datapath = self.datapaths.get(dpid)
            installed = self.installed.get(dpid)
            if datapath is None or installed is None:
                return 0, 0
            desired = {flow.key: flow for flow in self.service.desired_flows_for(dpid)}
            missing = [desired[key] for key in desired.keys() - installed.keys()]
            stale = [(key, installed[key]) for key in installed.keys() - desired.keys()]
            for flow in sorted(missing, key=lambda f: (f.table, f.priority)):
                datapath.send_msg(add_flow(datapath, flow))
                installed[flow.key] = ofp_match(flow)
            for (table, priority, cookie), match in stale:
                datapath.send_msg(delete_flow(datapath, table, priority, cookie, match))
                del installed[(table, priority, cookie)]
            waiter = None
            if wait and (missing or stale):
                barrier = parser.OFPBarrierRequest(datapath)
                datapath.set_xid(barrier)
                waiter = self.barriers[(dpid, barrier.xid)] = threading.Event()
                datapath.send_msg(barrier)
        if waiter is not None and not waiter.wait(BARRIER_TIMEOUT):
            LOG.warning("vRouter dpid=%s did not confirm flow changes in time", dpid)
        return len(missing), len(stale)
