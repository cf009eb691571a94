"""The pure parts of the churn stress and the soak (bench/churn.py): who owns a flow, which flows
stopped captures left behind, ping's loss, and how ovs-vswitchd restarts are counted."""
from __future__ import annotations

from types import SimpleNamespace

from bench.churn import Watchdog, flow_consistency, ping_loss
from mirrorlab import InstalledFlow
from mirrorlab.driver import parse_flows
from mirrorlab.controller.flowmodel import BASE_OWNER, capture_of_cookie, capture_owner, flow
from mirrorlab.controller.flowmodel import Output

BASE = flow(0, 10, [Output(1)], in_port=2)
CAPTURE_7 = flow(3, 100, [Output(4)], in_port=2, owner=capture_owner(7))
CAPTURE_9 = flow(4, 100, [Output(5)], in_port=3, owner=capture_owner(9))


def dump(*flows) -> list[InstalledFlow]:
    """`flows` as `Lab.flows` reads them back from `ovs-ofctl --no-stats dump-flows`."""
    return parse_flows("\n".join(" " + f.ofctl().replace(",table=", ", table=").replace(",priority=", ", priority=", 1)
                                  for f in flows) + "\n")


def test_the_cookie_names_the_capture_that_owns_a_flow():
    assert capture_of_cookie(CAPTURE_7.cookie) == 7
    assert capture_of_cookie(CAPTURE_9.cookie) == 9
    assert capture_of_cookie(BASE.cookie) is None
    assert BASE.cookie >> 32 == BASE_OWNER
    assert capture_of_cookie(0) is None  # a flow added by hand, without a cookie


def test_no_leftover_when_flows_and_active_captures_agree():
    result = flow_consistency({"vr-compute1": dump(BASE, CAPTURE_7), "vr-compute2": dump(BASE)}, {7})
    assert result == {"active_captures": 1, "leftover": 0, "leftover_flows": [],
                      "captures_without_flows": []}


def test_flows_of_a_stopped_capture_are_leftover_with_their_bridge():
    result = flow_consistency({"vr-compute1": dump(BASE, CAPTURE_7),
                               "vr-compute2": dump(CAPTURE_9, CAPTURE_9)}, {7})
    assert result["leftover"] == 2
    assert all(line.startswith("vr-compute2: ") and f"{CAPTURE_9.cookie:#x}" in line
               for line in result["leftover_flows"])


def test_an_active_capture_without_flows_is_reported():
    result = flow_consistency({"vr-compute1": dump(BASE)}, {7, 9})
    assert result["leftover"] == 0
    assert result["captures_without_flows"] == [7, 9]


def test_flows_without_a_cookie_or_of_the_base_are_never_leftover():
    flows = parse_flows(" table=0, priority=0 actions=drop\nNXST_FLOW reply (xid=0x4):\n") + dump(BASE)
    assert flow_consistency({"vr-compute1": flows}, set())["leftover"] == 0


def test_ping_loss_from_its_summary():
    output = ("--- 10.1.1.12 ping statistics ---\n"
              "1200 packets transmitted, 1194 received, 0.5% packet loss, time 59950ms\n"
              "rtt min/avg/max/mdev = 0.1/0.4/9.9/0.3 ms")
    assert ping_loss(output) == {"transmitted": 1200, "received": 1194, "loss": 0.005}
    with_errors = "40 packets transmitted, 30 received, +10 errors, 25% packet loss, time 1s"
    assert ping_loss(with_errors)["loss"] == 0.25


def test_ping_loss_is_unknown_without_a_summary():
    assert ping_loss("ping: connect: Network is unreachable") == {
        "transmitted": None, "received": None, "loss": None}
    assert ping_loss("0 packets transmitted, 0 received")["loss"] is None


def test_the_watchdog_counts_each_new_ovs_vswitchd_as_a_restart():
    pids = iter([100, None, 200, 200, 300])
    ovs = SimpleNamespace(pid=100, read_pid=lambda: next(pids))
    watchdog = Watchdog(ovs)
    watchdog.look()
    assert watchdog.restarts == 0 and not watchdog.failed.is_set()
    watchdog.look()  # dead, its monitor not yet done
    assert watchdog.restarts == 0 and watchdog.failed.is_set()
    failed_at = watchdog.failed_at
    for _ in range(3):
        watchdog.look()
    assert watchdog.restarts == 2 and watchdog.failed_at == failed_at
