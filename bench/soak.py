"""Soak: the default lab under capture churn and traffic for a few minutes (`scripts/bench
--only soak`, and part of the full run).

30 clients start and stop captures of random interfaces and directions through the REST API
while vm1 pings vm2 20 times a second; the lab's own ovs-vswitchd is watched all along. The
driver is bench/churn.py's (the one `scripts/ovs-stress lab` uses); this only brings the lab up
in the benchmark's state directory and keeps the figures:

  restarts          how often the lab's ovs-vswitchd was restarted (expected 0), and the abort
                    lines of its log (expected none);
  API latency       p50/p99 of POST /api/captures (201) and DELETE (200) under the churn;
  operations/s      successful starts and stops per second;
  ping loss         of the monitored traffic during the churn;
  leftover flows    after the churn, flows whose cookie names a capture the API does not list
                    as active, and active captures without flows (expected 0 and none);
  controller RSS    before and after the churn.
"""
from __future__ import annotations

from bench.churn import ChurnSettings, churn_lab
from bench.common import REPO, log, running_lab

TOPOLOGY = REPO / "topologies" / "default.yaml"


def measure(seconds: float, workers: int = 30) -> dict:
    """Churn the default lab for `seconds`; the figures of bench/churn.py's report."""
    lab_report: dict = {}
    with running_lab(TOPOLOGY, lab_report) as lab:
        result = churn_lab(lab, ChurnSettings(seconds=seconds, workers=workers))
    api = result["api_latency"]
    log(f"soak: {result['restarts']} ovs-vswitchd restarts, start p50/p99 {api['start']['p50']}/"
        f"{api['start']['p99']}s, stop p50/p99 {api['stop']['p50']}/{api['stop']['p99']}s, "
        f"{result['operations_per_second']} ops/s, {result['flows_after_churn'].get('leftover')} "
        f"leftover flows, ping loss {result['ping']['loss']}")
    return {"topology": TOPOLOGY.name, "lab": lab_report, **result}
