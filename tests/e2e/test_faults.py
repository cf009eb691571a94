"""Faults the controller must notice and repair by itself, never silently: flows deleted behind
its back, an ovs-vswitchd that aborts, and processes posing as a vRouter."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from mirrorlab import LabError, faults
from tests.e2e.conftest import STATE_DIR
from tests.e2e.test_capture import (  # noqa: F401
    DEFAULT_ANALYZER, analyzers, settle, start, stop,
)


def vswitchd_pid() -> int:
    return int((STATE_DIR / "ovs" / "ovs-vswitchd.pid").read_text().strip())


def flows_once_up(lab, compute: str):
    """The vRouter's flows, or None while the restarted ovs-vswitchd does not answer yet (it
    writes its pid file before it opens the bridges' management sockets)."""
    try:
        return lab.flows(compute)
    except LabError:
        return None


def test_flows_deleted_by_hand_come_back(analyzers, clean_lab):
    """`ovs-ofctl del-flows` of a capture's flows and of a delivery flow: the audit puts them
    back within a few seconds, the capture records again and the VM is reachable again."""
    lab = clean_lab
    baseline = {c.name: lab.flows(c.name) for c in lab.topology.computes}
    capture = start(lab, vm="vm1")
    with_capture = lab.flows("compute1")
    lab.netns("ovs-ofctl", "-O", "OpenFlow13", "del-flows", "vr-compute1",
              f"cookie=0x2{capture['id']:06x}00000000/0xffffffff00000000")
    lab.netns("ovs-ofctl", "-O", "OpenFlow13", "del-flows", "vr-compute2", "table=2,reg1=2")
    lab.wait_for(lambda: lab.flows("compute1") == with_capture
                 and lab.flows("compute2") == baseline["compute2"], timeout=10, what="the audit")
    lab.shell("vm1", "ping -c 3 -i 0.2 -W 1 10.1.1.12")
    settle(lab, capture["id"], 6)
    stop(lab, capture["id"])
    assert {c.name: lab.flows(c.name) for c in lab.topology.computes} == baseline


def test_an_aborted_ovs_vswitchd_is_restarted_and_reprogrammed(analyzers, clean_lab):
    """ovs-vswitchd aborts (SIGABRT, as on a failed assertion): its monitor restarts it, the
    controller sees the vRouters come back within seconds and reinstalls every flow, and a
    capture that was active goes on recording."""
    lab = clean_lab
    capture = start(lab, vm="vm1")
    before = {c.name: lab.flows(c.name) for c in lab.topology.computes}
    old = vswitchd_pid()
    os.kill(old, signal.SIGABRT)
    lab.wait_for(lambda: (STATE_DIR / "ovs" / "ovs-vswitchd.pid").exists() and vswitchd_pid() != old,
                 timeout=15, what="the monitor to restart ovs-vswitchd")
    lab.wait_for(lambda: all(flows_once_up(lab, c) == before[c] for c in before), timeout=15,
                 what="the flows to be reinstalled")
    vrouters = lab.http("GET", "/api/vrouters").json()
    assert all(v["connected"] for v in vrouters), vrouters
    assert lab.http("GET", f"/api/captures/{capture['id']}").json()["state"] == "active"
    lab.shell("vm1", "ping -c 3 -i 0.2 -W 1 10.1.1.12")
    settle(lab, capture["id"], 6)
    stop(lab, capture["id"])
    # The fabric's static entries (runtime state of ovs-vswitchd) are pinned again.
    lab.wait_for(lambda: all(compute.fabric_mac in lab.netns("ovs-appctl", "fdb/show",
                                                             lab.topology.fabric_bridge).stdout
                             for compute in lab.topology.computes), timeout=10,
                 what="the fabric's static entries")


FAKE_SWITCH = r"""
import socket, struct, sys, time
sock = socket.socket(socket.AF_UNIX)
sock.connect(sys.argv[1])
sock.sendall(struct.pack("!BBHI", 4, 0, 8, 1))                     # HELLO
buffer, end = b"", time.time() + 5
sock.settimeout(0.5)
while time.time() < end:
    try:
        data = sock.recv(65535)
    except socket.timeout:
        continue
    if not data:
        print("closed by the controller"); sys.exit(0)
    buffer += data
    while len(buffer) >= 8:
        version, kind, length, xid = struct.unpack("!BBHI", buffer[:8])
        if len(buffer) < length:
            break
        body, buffer = buffer[8:length], buffer[length:]
        if kind == 2:                                               # ECHO_REQUEST
            sock.sendall(struct.pack("!BBHI", 4, 3, 8 + len(body), xid) + body)
        elif kind == 5:                                             # FEATURES_REQUEST: dpid 1
            sock.sendall(struct.pack("!BBHIQIBB2xII", 4, 6, 32, xid, 1, 0, 254, 0, 0, 0))
print("still connected")
"""


def test_only_the_labs_ovs_vswitchd_may_connect(analyzers, clean_lab):
    """A process posing as vRouter compute1 (dpid 1): as user nobody it cannot even open the
    OpenFlow socket; as root it is refused and the real vRouter keeps its connection and flows."""
    lab = clean_lab
    openflow = STATE_DIR / "ovs" / "openflow.sock"
    before = lab.flows("compute1")
    as_nobody = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                sys.executable, "-c", FAKE_SWITCH, str(openflow)],
                               capture_output=True, text=True, timeout=30)
    # Line 4 of the script is the connect.
    assert as_nobody.returncode != 0 and '"<string>", line 4' in as_nobody.stderr \
        and "PermissionError" in as_nobody.stderr, as_nobody.stderr
    as_root = subprocess.run([sys.executable, "-c", FAKE_SWITCH, str(openflow)], capture_output=True,
                             text=True, timeout=30)
    assert as_root.stdout.strip() == "closed by the controller", as_root
    log = (STATE_DIR / "controller.log").read_text()
    assert "refused a connection from pid" in log and "claiming dpid 1" in log
    time.sleep(2.5)  # an audit later, the real vRouter is still connected and untouched
    assert lab.http("GET", "/api/vrouters/compute1").json()["connected"]
    assert lab.flows("compute1") == before
    capture = start(lab, vm="vm1")
    lab.shell("vm1", "ping -c 2 -i 0.2 -W 1 10.1.1.12")
    settle(lab, capture["id"], 4)
    stop(lab, capture["id"])


def test_status_and_api_say_what_died(tmp_path):
    """A lab whose lab process died: status names it and exits 1, and the API refuses new
    captures with 503 and the reason instead of accepting them for VMs that are gone."""
    state_dir = STATE_DIR.parent / (STATE_DIR.name + "-dead")
    env = {**os.environ, "MIRRORLAB_STATE_DIR": str(state_dir)}
    cli = [sys.executable, "-m", "mirrorlab.cli"]
    topology = tmp_path / "one.yaml"
    topology.write_text("name: one\ncomputes: [c1]\nnetworks:\n  - {name: blue, subnet: 10.7.0.0/24}\n"
                        "vms:\n  - {name: v1, compute: c1, network: blue}\n"
                        "  - {name: v2, compute: c1, network: blue}\n")
    try:
        up = subprocess.run(cli + ["up", str(topology), "--api-port", "8098",
                                   "--config-api-port", "0"], env=env,
                            capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        record = json.loads((state_dir / "lab.json").read_text())
        os.kill(record["lab_process"]["pid"], signal.SIGKILL)
        time.sleep(0.5)
        status = subprocess.run(cli + ["status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 1
        assert f"PROBLEM: the lab process (pid {record['lab_process']['pid']}) is not running" in status.stdout
        start_request = subprocess.run(cli + ["capture", "start", "--vm", "v1"], env=env,
                                       capture_output=True, text=True, timeout=60)
        assert start_request.returncode != 0
        assert "the lab process" in start_request.stderr and "is not running" in start_request.stderr
        assert len(start_request.stderr.strip().splitlines()) == 1
    finally:
        subprocess.run(cli + ["down"], env=env, capture_output=True, timeout=300)


def test_a_disconnected_vrouter_shows_everywhere_and_its_captures_are_refused(analyzers, clean_lab, page):
    """A vRouter cut off from the controller as an agent outage does (its controller target
    pointed at a socket nobody listens on, `faults.vrouter_disconnect`): the API, `status` and
    the Virtual Routers page say so; a capture on it is refused at once with a 503 naming it, in
    one CLI line, before any analyzer is launched for it; it keeps its flows and forwards
    without the controller (secure fail mode); given the controller back, it is reconciled,
    flows changed behind its back while it was cut off included."""
    lab = clean_lab
    # No default analyzer: a capture on compute2 would launch one, unless refused first.
    assert lab.http("DELETE", f"/api/analyzers/{DEFAULT_ANALYZER}").status_code == 200
    before = lab.flows("compute2")
    faults.vrouter_disconnect(lab, "compute2")
    try:
        lab.wait_for(lambda: not lab.http("GET", "/api/vrouters/compute2").json()["connected"],
                     timeout=10, what="compute2 to be seen disconnected")
        problem = lab.http("GET", "/api/vrouters/compute2").json()["problem"]
        assert problem.startswith("not connected to the controller"), problem
        status = json.loads(lab.cli("status", "--json", check=False).stdout)
        assert {c["name"]: c["connected"] for c in status["computes"]}["compute2"] is False
        vms = {host["name"] for host in lab.state.read()["hosts"]}
        refused = lab.cli("capture", "start", "--vm", "vm2", check=False)
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [
            "mirrorlab: error: vrouter 'compute2' is not connected to the controller; nothing on "
            "it can be confirmed"]
        assert lab.http("GET", "/api/captures", params={"state": "active"}).json() == []
        assert DEFAULT_ANALYZER not in {a["name"] for a in lab.http("GET", "/api/analyzers").json()}
        assert {host["name"] for host in lab.state.read()["hosts"]} == vms
        page.goto(f"{lab.api_url}/#/vrouters")
        row = page.locator("tr", has_text="compute2")
        row.get_by_text("Not connected", exact=True).wait_for()
        row.locator(".vrouter-problem", has_text="not connected to the controller").wait_for()
        # Cut off, it keeps every flow and forwards: vm2 (compute2) reaches vm1 (compute1).
        assert lab.flows("compute2") == before
        lab.shell("vm2", "ping -c 3 -i 0.2 -W 1 10.1.1.11")
        lab.netns("ovs-ofctl", "-O", "OpenFlow13", "del-flows", "vr-compute2", "table=2,reg1=2")
        assert lab.flows("compute2") != before
    finally:
        faults.vrouter_reconnect(lab, "compute2")
    lab.wait_for(lambda: lab.http("GET", "/api/vrouters/compute2").json()["connected"]
                 and lab.flows("compute2") == before, timeout=15, what="compute2 back and reconciled")
    lab.shell("vm2", "ping -c 3 -i 0.2 -W 1 10.1.1.11")
    lab.capture("vm1").stop()  # the default analyzer back where the other tests expect it
