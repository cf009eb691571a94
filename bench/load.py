"""API load: concurrent clients starting and stopping captures as fast as the API answers
(`scripts/bench --only load`, and part of the full run).

The default lab with its default analyzer on compute1. Each of N clients (threads, each with
the one REST client, `mirrorlab.client.ApiClient`) owns one VM interface slot: client i
captures interface i mod 5 (the default lab's five VM interfaces), so no interface ever holds
more than 6 of its 8 captures and no request is refused for a full interface. A client loops:
`POST /api/captures` (direction ingress, egress, both in turn), then at once
`DELETE /api/captures/{id}`. Each answer comes only once the vRouters confirmed the flows and
their datapath revalidated (see the README's "a barrier reply says..."), so a request's latency
is the whole cost of a correct start or stop.

Runs: 1 client; N (default 30) clients as fast as the API answers (the most it does); then N
clients paced to each offered rate (default 150, 300, 450 and 600 operations/s: each client
starts a cycle every 2N/rate seconds, the clients evenly staggered; one that is late starts
at once and skips the cycles it missed), which shows the latency at a given load: where p99
passes 50 ms.
A latency is from the request sent to its answer. Reported for each run:

  operations/s   successful starts + stops per second (a start+stop cycle is 2 operations);
  latency        p50, p99 and max of each start and each stop, from request sent to answer;
  refused        requests that did not succeed, by status;
  CPU            cores the controller, the lab's ovs-vswitchd and the clients (this process)
                 used during the run: where the time goes on a 2-core machine;
  exact flows    afterwards, no capture is active, every capture the clients started is
                 stopped (none failed), and every vRouter holds exactly the flows it held before
                 the load (same table, priority, cookie, match and actions): no leftovers.
"""
from __future__ import annotations

import threading
import time

from bench.churn import ANALYZER, capture_cycle, flow_consistency, latency
from bench.common import REPO, cpu_seconds, log, ovs_vswitchd_pid, running_lab
from mirrorlab.client import ApiClient

TOPOLOGY = REPO / "topologies" / "default.yaml"
DIRECTIONS = ("ingress", "egress", "both")
OFFERED_RATES = (150, 300, 450, 600)  # operations/s offered by the paced runs


def client_loop(base_url: str, target: tuple[str, str], stop: threading.Event,
                results: dict, lock: threading.Lock, interval: float = 0.0,
                first_at: float = 0.0) -> None:
    """Start and stop captures of `target` (compute, vRouter port) until `stop`, a cycle every
    `interval` seconds from `first_at` (a `time.monotonic()`; 0: as fast as answered); record
    each request's latency or refusal, and the id of every capture started."""
    api = ApiClient(base_url, timeout=30)
    vrouter, interface = target
    turn, next_at = 0, first_at
    while not stop.is_set():
        if interval:
            now = time.monotonic()
            if next_at > now and stop.wait(next_at - now):
                return
            next_at = max(next_at, now) + interval  # late: the cycles missed are skipped
        latencies, started_id, refused = capture_cycle(api, vrouter, interface,
                                                       DIRECTIONS[turn % len(DIRECTIONS)])
        turn += 1
        with lock:
            for kind, seconds in latencies:
                results[kind].append(seconds)
            if started_id is not None:
                results["started"].append(started_id)
            if refused:
                results["refused"][refused] = results["refused"].get(refused, 0) + 1


def vrouter_flows(lab) -> dict:
    """Every vRouter's flows, by compute node, as sets (counters are not compared)."""
    return {c.name: set(lab.flows(c.name)) for c in lab.topology.computes}


def run_clients(lab, clients: int, seconds: float, rate: float | None = None) -> dict:
    """`clients` concurrent clients starting and stopping captures for `seconds`, paced to
    `rate` operations/s in all (None: as fast as answered); the figures of the module's
    docstring (without the flow check)."""
    targets = [(i.compute, i.port_name) for vm in lab.topology.vms for i in vm.interfaces]
    controller_pid = lab.controller.pid
    vswitchd_pid = ovs_vswitchd_pid()
    stop, lock = threading.Event(), threading.Lock()
    results: dict = {"start": [], "stop": [], "started": [], "refused": {}}
    interval = 2 * clients / rate if rate else 0.0  # a cycle is two operations
    began = time.monotonic()
    threads = [threading.Thread(target=client_loop, daemon=True,
                                args=(lab.api_url, targets[n % len(targets)], stop, results, lock,
                                      interval, began + interval * n / clients))
               for n in range(clients)]
    cpu_before = (cpu_seconds(controller_pid), cpu_seconds(vswitchd_pid), time.process_time())
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.monotonic() - started
    cpu_after = (cpu_seconds(controller_pid), cpu_seconds(vswitchd_pid), time.process_time())
    cores = {name: None if before is None or after is None else round((after - before) / elapsed, 2)
             for name, before, after in zip(("controller", "ovs_vswitchd", "clients"),
                                            cpu_before, cpu_after)}
    operations = len(results["start"]) + len(results["stop"])
    every = results["start"] + results["stop"]
    return {"clients": clients, "offered_per_second": rate, "seconds": round(elapsed, 1),
            "operations_per_second": round(operations / elapsed, 1),
            "latency": {"start": latency(results["start"]), "stop": latency(results["stop"]),
                        "all": latency(every)},
            "refused": results["refused"], "cpu_cores": cores,
            "started_ids": results["started"]}


def exact_flows(lab, flows_before: dict, started_ids: list[int]) -> dict:
    """After the load: no capture active, every started capture stopped (not failed), and every
    vRouter holding exactly the flows it held before."""
    flows_after = vrouter_flows(lab)
    states = {c.id: c.state for c in lab.captures()}
    not_stopped = sorted(i for i in started_ids if states.get(i) != "stopped")
    changed = {name: {"missing": len(flows_before[name] - flows_after[name]),
                      "extra": len(flows_after[name] - flows_before[name])}
               for name in flows_before if flows_before[name] != flows_after[name]}
    consistency = flow_consistency({name: list(flows) for name, flows in flows_after.items()},
                                   {i for i, state in states.items() if state == "active"})
    return {"captures_started": len(started_ids), "not_stopped": not_stopped[:20],
            "not_stopped_count": len(not_stopped), "vrouters_changed": changed,
            **consistency, "exact": not not_stopped and not changed
            and consistency["leftover"] == 0 and not consistency["captures_without_flows"]
            and consistency["active_captures"] == 0}


def load_lab(lab, seconds: float, clients: int, rates=OFFERED_RATES) -> dict:
    """On a running lab: 1 client for a third of `seconds`, `clients` clients for `seconds`,
    then `clients` clients paced to each of `rates` for half of `seconds`; each run followed
    by the exact-flows check."""
    if ANALYZER not in {a["name"] for a in lab.analyzers}:
        lab.create_analyzer(ANALYZER, compute="compute1")
    runs = []
    plan = [(1, max(2.0, seconds / 3), None), (clients, seconds, None)]
    plan += [(clients, max(2.0, seconds / 2), rate) for rate in rates]
    for count, duration, rate in plan:
        flows_before = vrouter_flows(lab)
        log(f"load: {count} client(s) start and stop captures for {duration:g} s"
            + (f", paced to {rate:g} operations/s" if rate else ""))
        figures = run_clients(lab, count, duration, rate)
        figures["flows"] = exact_flows(lab, flows_before, figures.pop("started_ids"))
        api = figures["latency"]
        log(f"load: {count} client(s): {figures['operations_per_second']} ops/s, start p50/p99 "
            f"{api['start']['p50']}/{api['start']['p99']} s, stop p50/p99 {api['stop']['p50']}/"
            f"{api['stop']['p99']} s, exact flows: {figures['flows']['exact']}")
        runs.append(figures)
    return {"topology": TOPOLOGY.name, "runs": runs}


def measure(seconds: float, clients: int = 30, rates=OFFERED_RATES) -> dict:
    """Bring up the default lab and load it; the figures of `load_lab`."""
    lab_report: dict = {}
    with running_lab(TOPOLOGY, lab_report) as lab:
        return {"lab": lab_report, **load_lab(lab, seconds, clients, rates)}
