"""Controller reconciliation after a restart, and the FlowMods per second it pushes.

On a running lab: stop the controller, delete every flow of some vRouters
(`ovs-ofctl del-flows`), start the controller and time until those vRouters hold their
desired flows again (the count they held before). The controller's log tells when each vRouter
reconnected and was reconciled ("vRouter dpid=N reconciled: F flows found, A added, R removed"),
which splits the time into:

  controller start   `mirrorlab controller start` until the REST API answers;
  reconnect wait     until the vRouter reconnects (Open vSwitch retries with a backoff that
                     grows to 8 s while no controller listens);
  reconcile          from the reconnection until the flows are back in the vRouter.

FlowMods/s = flows added / reconcile time. Done for one vRouter and for all of them at once.
"""
from __future__ import annotations

import time

from bench.common import STATE_DIR, BenchLab, controller_log_times, log

CONNECTED = r"vRouter dpid=(\d+) connected"
RECONCILED = r"vRouter dpid=(\d+) reconciled: (\d+) flows found, (\d+) added, (\d+) removed"


def measure(lab: BenchLab) -> dict:
    """Reconcile one vRouter, then all of them, after a controller restart."""
    vrouters = {v["bridge"]: v["dpid"] for v in lab.api.get("/api/vrouters")}
    desired = {bridge: lab.flow_count(bridge) for bridge in vrouters}
    first = next(iter(vrouters))
    result = {"desired_flows": desired,
              "one_vrouter": _restart(lab, {first: vrouters[first]}, desired),
              "all_vrouters": _restart(lab, vrouters, desired)}
    for key in ("one_vrouter", "all_vrouters"):
        r = result[key]
        log(f"reconcile {key}: total {r['total_seconds']}s (controller start {r['controller_start_seconds']}s, "
            f"reconnect wait {r['reconnect_wait_seconds']}s, reconcile {r['reconcile_seconds']}s), "
            f"{r['flows_added']} flows added, {r['flowmods_per_second']} FlowMods/s")
    return result


def _restart(lab: BenchLab, targets: dict[str, int], desired: dict[str, int]) -> dict:
    controller_log = STATE_DIR / "controller.log"
    lab.controller.stop()
    for bridge in targets:
        lab.netns("ovs-ofctl", "-O", "OpenFlow13", "del-flows", bridge)
    emptied = {bridge: lab.flow_count(bridge) for bridge in targets}
    started = time.time()
    lab.controller.start()
    api_up = time.time()
    back: dict[str, float] = {}
    deadline = time.monotonic() + 180
    while len(back) < len(targets) and time.monotonic() < deadline:
        for bridge in targets:
            if bridge not in back and lab.flow_count(bridge) >= desired[bridge]:
                back[bridge] = time.time()
        time.sleep(0.01)
    done = max(back.values()) if len(back) == len(targets) else None
    time.sleep(0.5)  # let the log catch up
    dpids = set(targets.values())
    connected = [(t, int(m.group(1))) for t, m in controller_log_times(controller_log, started, CONNECTED)
                 if int(m.group(1)) in dpids]
    reconciled = [(t, m) for t, m in controller_log_times(controller_log, started, RECONCILED)
                  if int(m.group(1)) in dpids]
    added = sum(int(m.group(3)) for _t, m in reconciled)
    first_connect = min((t for t, _d in connected), default=None)
    reconcile = (done - first_connect) if done and first_connect else None
    return {
        "vrouters": len(targets), "flows_before_start": sum(emptied.values()),
        "desired_flows": sum(desired[b] for b in targets),
        "controller_start_seconds": round(api_up - started, 3),
        "reconnect_wait_seconds": round(first_connect - api_up, 3) if first_connect else None,
        "reconcile_seconds": round(reconcile, 3) if reconcile is not None else None,
        "reconcile_logged_seconds": round(max(t for t, _m in reconciled) - first_connect, 3)
        if reconciled and first_connect else None,
        "total_seconds": round(done - started, 3) if done else None,
        "flows_added": added,
        "flowmods_per_second": round(added / reconcile) if reconcile else None,
        "all_back": done is not None,
    }
