"""Churn stress for Open vSwitch (`scripts/ovs-stress`): change mirror flows while packets are in
flight and report whether ovs-vswitchd aborted or restarted.

It runs only against a private Open vSwitch: `scripts/ovs-stress` starts one (its own ovsdb-server
and ovs-vswitchd, without a monitor, in a network namespace of its own) and runs this module inside
that namespace. Every Open vSwitch on a machine is shared by all its labs, so a crash provoked on
purpose must never reach the machine's own.

Two modes:

  lab      the real pipeline: the default lab, an analyzer on compute1, a VM pinging another
           (20/s by default), and WORKERS clients starting and stopping captures of random
           interfaces and directions for SECONDS through the REST API (the incident of issue 8).
  minimal  two bridges joined by a veth (a vRouter and a fabric switch) with hand-written flows
           in the pipeline's action patterns, overlay frames sent in from the fabric, and one
           mirror flow added and deleted in a tight loop. `--pattern skipped-output` is the
           pattern that aborts Open vSwitch 3.1 (a copy's clone whose output OVS skips, followed
           by another copy); `--pattern in-port-reset` is the pattern the pipeline uses instead.

The report (JSON on stdout, and in OUTPUT/report.json with ovs-vswitchd's log) says whether
ovs-vswitchd survived; the exit code is 1 when it did not.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import PYTHON, REPO, log, run

PRIVATE_OVS_ENV = "MIRRORLAB_STRESS_PRIVATE_OVS"
NETNS_ENV = "MIRRORLAB_STRESS_NETNS"
STATE_DIR = Path(os.environ.get("MIRRORLAB_STRESS_STATE_DIR", "/run/mirrorlab-stress"))
API_PORT = int(os.environ.get("MIRRORLAB_STRESS_API_PORT", "8391"))
DEFAULT_OUTPUT = REPO / "artifacts" / "ovs-stress"
ANALYZER = "interface-packet-capture"

# The minimal set-up: vRouter port numbers and addresses.
VR, FAB = "st-vr", "st-fab"
VR_FABRIC_PORT, VR_VM_PORT, VR_ANALYZER_PORT = 1, 2, 3
VR_FABRIC_MAC, PEER_FABRIC_MAC = "02:00:00:00:0f:01", "02:00:00:00:0f:02"
VM_MAC, PEER_VM_MAC = "02:00:00:00:00:11", "02:00:00:00:00:12"
ANALYZER_MAC, VROUTER_MAC = "02:00:00:00:00:a1", "00:00:5e:00:01:00"
NETWORK_LABEL = 100
# (name, peer inside the namespace, bridge, OpenFlow port on the vRouter or None)
MINIMAL_LINKS = [("st-vrf", "st-fabv", VR, VR_FABRIC_PORT), ("st-tap", "st-tapp", VR, VR_VM_PORT),
                 ("st-an", "st-anp", VR, VR_ANALYZER_PORT), ("st-fabh", "st-fabhp", FAB, None)]


class NotPrivate(RuntimeError):
    """The Open vSwitch this would stress is not a private one."""


# --- the private Open vSwitch -----------------------------------------------------------------

class PrivateOvs:
    """The private ovs-vswitchd `scripts/ovs-stress` started: where it is, whether it lives."""

    def __init__(self):
        rundir = os.environ.get(PRIVATE_OVS_ENV)
        if not rundir or os.environ.get("OVS_RUNDIR") != rundir:
            raise NotPrivate(f"run this through scripts/ovs-stress, which starts a private Open "
                             f"vSwitch ({PRIVATE_OVS_ENV} and OVS_RUNDIR must name its directory)")
        self.rundir = Path(rundir)
        self.log_path = self.rundir / "ovs-vswitchd.log"
        self.pid = self.read_pid()
        if self.pid is None:
            raise NotPrivate(f"no ovs-vswitchd is running from {self.rundir}")
        # The machine's ovs-vswitchd runs in the machine's network namespace; ours runs in
        # the namespace scripts/ovs-stress made for it.
        netns = Path("/run/netns") / os.environ.get(NETNS_ENV, "-")
        try:
            private = os.stat(f"/proc/{self.pid}/ns/net").st_ino == netns.stat().st_ino
        except OSError:
            private = False
        if not private:
            raise NotPrivate(f"ovs-vswitchd {self.pid} does not run in network namespace "
                             f"{netns.name} ({NETNS_ENV}): it is not a private one")
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0

    def read_pid(self) -> int | None:
        """The PID in ovs-vswitchd's pidfile if that process is alive, else None."""
        try:
            pid = int((self.rundir / "ovs-vswitchd.pid").read_text().strip())
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError, IndexError):
            return None
        return None if state in ("Z", "X") else pid

    def state(self) -> str:
        """"alive" (the same process as at the start), "restarted" or "dead"."""
        pid = self.read_pid()
        return "dead" if pid is None else "alive" if pid == self.pid else "restarted"

    def emergencies(self) -> list[str]:
        """The log lines ovs-vswitchd wrote since the start at EMER level, or about an abort."""
        try:
            with open(self.log_path, errors="replace") as logfile:
                logfile.seek(self.log_offset)
                lines = logfile.read().splitlines()
        except OSError:
            return []
        return [line for line in lines if "|EMER|" in line or "assertion" in line
                or "Aborted" in line or "terminating with signal" in line]

    def flow_mod_errors(self) -> list[str]:
        """The log lines since the start where ovs-vswitchd refused a flow mod: a stress whose
        flows were never installed proves nothing."""
        try:
            with open(self.log_path, errors="replace") as logfile:
                logfile.seek(self.log_offset)
                lines = logfile.read().splitlines()
        except OSError:
            return []
        return [line for line in lines if "error reply to OFPT_FLOW_MOD" in line]

    def keep_log(self, output: Path) -> None:
        """Copy ovs-vswitchd's log to `output` (its directory goes when the stress ends)."""
        if self.log_path.exists():
            shutil.copyfile(self.log_path, output / "ovs-vswitchd.log")


class Watchdog(threading.Thread):
    """Notices, within `interval` seconds, when ovs-vswitchd stops being the process it was."""

    def __init__(self, ovs: PrivateOvs, interval: float = 0.2):
        super().__init__(name="watchdog", daemon=True)
        self.ovs, self.interval = ovs, interval
        self.stopped = threading.Event()
        self.failed_at: float | None = None
        self.started_at = time.monotonic()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            if self.ovs.state() != "alive":
                self.failed_at = time.monotonic() - self.started_at
                self.stopped.set()

    def stop(self) -> None:
        """End the watch (with a last look)."""
        self.stopped.set()
        self.join()
        if self.failed_at is None and self.ovs.state() != "alive":
            self.failed_at = time.monotonic() - self.started_at


def ofctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`ovs-ofctl -O OpenFlow13 ARGS` against the private Open vSwitch."""
    return run("ovs-ofctl", "-O", "OpenFlow13", *args, timeout=60, check=check)


# --- minimal: two bridges and hand-written flows ----------------------------------------------

def copy_actions(label: int, exit_port: int, pattern: str, via_in_port: bool = False) -> str:
    """A mirror copy, as the pipeline writes it: Ethernet-in-MPLS with the capture's label, out
    of `exit_port`. `skipped-output` leaves by port number (or by IN_PORT when `via_in_port`);
    `in-port-reset` first clears the clone's input port, so the output is never skipped."""
    wrap = (f"encap(mpls),set_field:{label}->mpls_label,encap(ethernet),"
            f"set_field:{VR_FABRIC_MAC}->eth_src,set_field:{PEER_FABRIC_MAC}->eth_dst")
    if pattern == "in-port-reset":
        return f"clone(set_field:0->in_port,{wrap},output:{exit_port})"
    return f"clone({wrap},{'IN_PORT' if via_in_port else f'output:{exit_port}'})"


def minimal_flows(pattern: str) -> tuple[list[str], list[str]]:
    """(the vRouter's fixed flows, the churned capture's flows, in the order the controller
    adds them): a fabric landing that decaps the overlay, delivery to the VM, an egress mirror
    slot whose capture sends copies back over the fabric, and a second, permanent capture in
    the next slot with a local analyzer."""
    fixed = [
        f"table=0,priority=100,in_port={VR_FABRIC_PORT},eth_type=0x8847,mpls_label={NETWORK_LABEL},"
        f"actions=decap(),decap(packet_type(ns=0,type=0)),goto_table:1",
        f"table=0,priority=0,actions=drop",
        f"table=1,priority=100,eth_dst={VM_MAC},actions=output:{VR_VM_PORT},goto_table:3",
        "table=3,priority=0,actions=goto_table:4",
        f"table=4,priority=100,actions={copy_actions(0x80002, VR_ANALYZER_PORT, pattern)}",
    ]
    if pattern == "in-port-reset":
        churned = [f"table=3,priority=100,actions={copy_actions(0x80001, VR_FABRIC_PORT, pattern)},"
                   f"goto_table:4"]
    else:
        churned = [
            f"table=3,priority=100,actions={copy_actions(0x80001, VR_FABRIC_PORT, pattern)},"
            f"goto_table:4",
            f"table=3,priority=110,in_port={VR_FABRIC_PORT},"
            f"actions={copy_actions(0x80001, VR_FABRIC_PORT, pattern, via_in_port=True)},"
            f"goto_table:4",
        ]
    return fixed, churned


def set_up_minimal(pattern: str) -> None:
    """Create the two bridges, their veths and the vRouter's fixed flows."""
    for name, peer, _bridge, _port in MINIMAL_LINKS:
        run("ip", "link", "add", name, "type", "veth", "peer", "name", peer)
        for end in (name, peer):
            run("ip", "link", "set", end, "up")
    run("ovs-vsctl", "add-br", VR, "--", "set", "bridge", VR, "datapath_type=netdev",
        "fail-mode=secure", "protocols=OpenFlow13")
    run("ovs-vsctl", "add-br", FAB, "--", "set", "bridge", FAB, "datapath_type=netdev")
    for name, peer, bridge, port in MINIMAL_LINKS:
        if bridge == VR:
            run("ovs-vsctl", "add-port", VR, name, "--", "set", "interface", name,
                f"ofport_request={port}")
        else:
            run("ovs-vsctl", "add-port", FAB, name)
    run("ovs-vsctl", "add-port", FAB, "st-fabv")
    fixed, _churned = minimal_flows(pattern)
    with tempfile.NamedTemporaryFile("w", suffix=".flows") as flows:
        flows.write("\n".join(fixed) + "\n")
        flows.flush()
        ofctl("add-flows", VR, flows.name)


def overlay_frame(size: int = 100) -> bytes:
    """An Ethernet-in-MPLS frame from the peer vRouter to ours, carrying a frame to the VM."""
    def mac(text):
        return bytes.fromhex(text.replace(":", ""))
    inner = mac(VM_MAC) + mac(PEER_VM_MAC) + b"\x08\x00" + bytes(size)
    mpls = struct.pack("!I", (NETWORK_LABEL << 12) | (1 << 8) | 64)
    return mac(VR_FABRIC_MAC) + mac(PEER_FABRIC_MAC) + b"\x88\x47" + mpls + inner


def send_frames(stop: threading.Event, rate: float, counter: list[int]) -> None:
    """Send overlay frames into the fabric at `rate` per second until `stop`."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind(("st-fabhp", 0))
    frame, interval = overlay_frame(), 1.0 / rate
    next_at = time.monotonic()
    while not stop.is_set():
        try:
            sock.send(frame)
            counter[0] += 1
        except OSError:
            pass
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    sock.close()


def run_minimal(args, ovs: PrivateOvs, watchdog: Watchdog) -> dict:
    """Churn one capture's flows on the minimal set-up while overlay frames arrive."""
    set_up_minimal(args.pattern)
    _fixed, churned = minimal_flows(args.pattern)
    # One round: add the capture's flows in the controller's order (ascending priority), then
    # delete them; every line is its own flow mod (no bundle), as the controller sends them.
    rounds = []
    for _ in range(args.rounds_per_batch):
        rounds += [f"add {f}" for f in churned]
        rounds += [f"delete_strict {f.split(',actions=')[0]}" for f in reversed(churned)]
    trace = run("ovs-appctl", "ofproto/trace", VR,
                f"in_port={VR_FABRIC_PORT},dl_dst={VR_FABRIC_MAC},dl_src={PEER_FABRIC_MAC},"
                f"dl_type=0x8847,mpls_label={NETWORK_LABEL},mpls_bos=1", check=False).stdout
    stop, sent = threading.Event(), [0]
    sender = threading.Thread(target=send_frames, args=(stop, args.rate, sent), daemon=True)
    sender.start()
    batches, deadline = 0, time.monotonic() + args.seconds
    with tempfile.NamedTemporaryFile("w", suffix=".flows") as batch:
        batch.write("\n".join(rounds) + "\n")
        batch.flush()
        while time.monotonic() < deadline and not watchdog.stopped.is_set():
            batches += 1
            if ofctl("add-flows", VR, batch.name, check=False).returncode != 0:
                break
    stop.set()
    sender.join()
    return {"pattern": args.pattern, "frames_sent": sent[0],
            "flow_mods_sent": batches * len(rounds), "churned_flows": churned,
            "trace_without_capture": trace.splitlines()[-1:] if trace else []}


# --- lab: the real pipeline -------------------------------------------------------------------

class StressLab:
    """The default lab in the stress's own state directory and ports."""

    def __init__(self, topology: Path):
        self.topology = topology
        self.env = {**os.environ, "MIRRORLAB_STATE_DIR": str(STATE_DIR), "PYTHONUNBUFFERED": "1"}
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{API_PORT}", timeout=60)

    def cli(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        """`mirrorlab ARGS` against this lab."""
        return run(PYTHON, "-m", "lab.cli", *args, timeout=timeout, check=check, env=self.env)

    def up(self) -> None:
        """Bring the lab up (taking down what an earlier run left)."""
        self.cli("down", check=False)
        self.cli("up", str(self.topology), "--api-port", str(API_PORT))

    def down(self) -> None:
        """Tear the lab down and keep its logs."""
        self.http.close()
        self.cli("down", check=False)


def capture_worker(lab: StressLab, targets: list[tuple[str, str]], stop: threading.Event,
                   counts: dict, lock: threading.Lock, seed: int) -> None:
    """Start a capture of a random interface and direction, keep it a moment, stop it; again."""
    rng = random.Random(seed)
    with httpx.Client(base_url=f"http://127.0.0.1:{API_PORT}", timeout=15) as http:
        while not stop.is_set():
            vrouter, interface = rng.choice(targets)
            outcome = "started"
            try:
                response = http.post("/api/captures", json={
                    "vrouter": vrouter, "interface": interface, "analyzer": ANALYZER,
                    "direction": rng.choice(["ingress", "egress", "both"])})
                if response.status_code == 201:
                    time.sleep(rng.uniform(0, 0.2))
                    stopped = http.delete(f"/api/captures/{response.json()['id']}")
                    if stopped.status_code != 200:
                        outcome = f"stop {stopped.status_code}"
                else:
                    outcome = f"start {response.status_code}"
            except httpx.HTTPError as err:
                outcome = type(err).__name__
                time.sleep(0.2)
            with lock:
                counts[outcome] = counts.get(outcome, 0) + 1


def mirror_check(lab: StressLab, pinger: str, target: str) -> dict:
    """After the churn, one capture of `pinger` (both directions) while it pings `target`
    three times: the copies it should get (6) and the packets the analyzer recorded."""
    capture = lab.http.post("/api/captures", json={"vm": pinger, "analyzer": ANALYZER}).json()
    lab.cli("exec", pinger, "--", "ping", "-c", "3", "-i", "0.2", target, check=False)
    recorded = 0
    for _ in range(25):
        time.sleep(0.2)
        recorded = lab.http.get(f"/api/captures/{capture['id']}").json()["packets"]
        if recorded >= 6:
            break
    lab.http.delete(f"/api/captures/{capture['id']}")
    return {"expected": 6, "recorded": recorded}


def run_lab(args, ovs: PrivateOvs, watchdog: Watchdog) -> dict:
    """The incident: captures churned by many clients while a VM pings."""
    lab = StressLab(args.topology)
    log(f"mirrorlab up {args.topology.name} (state {STATE_DIR}, API port {API_PORT})")
    lab.up()
    try:
        status = json.loads(lab.cli("status", "--json").stdout)
        targets = [(vm["compute"], i["vrouter_port"]) for vm in status["vms"]
                   for i in vm["interfaces"]]
        analyzer = lab.http.post("/api/analyzers", json={"name": ANALYZER,
                                                         "compute": args.analyzer_compute})
        if analyzer.status_code != 201:
            raise RuntimeError(f"cannot create the analyzer: {analyzer.text}")
        pinger, target = args.ping.split(":")
        ping = subprocess.Popen([PYTHON, "-m", "lab.cli", "exec", pinger, "--", "ping", "-q",
                                 "-i", str(1 / args.ping_rate), target],
                                env=lab.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, cwd=REPO)
        stop, lock, counts = threading.Event(), threading.Lock(), {}
        workers = [threading.Thread(target=capture_worker, daemon=True,
                                    args=(lab, targets, stop, counts, lock, seed))
                   for seed in range(args.workers)]
        log(f"{args.workers} clients start and stop captures for {args.seconds}s; "
            f"{pinger} pings {target} {args.ping_rate}/s")
        for worker in workers:
            worker.start()
        watchdog.stopped.wait(args.seconds)
        stop.set()
        for worker in workers:
            worker.join(timeout=90)
        ping.send_signal(signal.SIGINT)  # ping prints its summary on SIGINT
        ping_output = ping.communicate(timeout=30)[0].strip().splitlines()[-2:]
        return {"mirror_check": mirror_check(lab, pinger, target) if ovs.state() == "alive"
                else None,"topology": str(args.topology), "workers": args.workers,
                "ping": f"{pinger} -> {target} at {args.ping_rate}/s", "ping_summary": ping_output,
                "requests": counts, "targets": [f"{c}/{i}" for c, i in targets]}
    finally:
        for log_file in STATE_DIR.glob("*.log"):
            shutil.copyfile(log_file, args.output / log_file.name)
        lab.down()


# --- entry point ------------------------------------------------------------------------------

def main(argv=None) -> int:
    """Run the stress and print its report; 1 if ovs-vswitchd did not survive it."""
    parser = argparse.ArgumentParser(prog="scripts/ovs-stress", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["lab", "minimal"])
    parser.add_argument("--seconds", type=float, default=60, help="how long to churn (60)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"where the report and logs go ({DEFAULT_OUTPUT})")
    lab_options = parser.add_argument_group("lab mode")
    lab_options.add_argument("--topology", type=Path, default=REPO / "topologies" / "default.yaml")
    lab_options.add_argument("--workers", type=int, default=30, help="concurrent clients (30)")
    lab_options.add_argument("--ping", default="vm1:10.1.1.12", help="VM:ADDRESS (vm1:10.1.1.12)")
    lab_options.add_argument("--ping-rate", type=float, default=20, help="pings a second (20)")
    lab_options.add_argument("--analyzer-compute", default="compute1",
                             help="where the analyzer runs (compute1)")
    minimal_options = parser.add_argument_group("minimal mode")
    minimal_options.add_argument("--pattern", choices=["skipped-output", "in-port-reset"],
                                 default="in-port-reset")
    minimal_options.add_argument("--rate", type=float, default=2000, help="frames a second (2000)")
    minimal_options.add_argument("--rounds-per-batch", type=int, default=200,
                                 help="add/delete rounds per ovs-ofctl call (200)")
    args = parser.parse_args(argv)
    try:
        ovs = PrivateOvs()
    except NotPrivate as err:
        print(f"ovs-stress: {err}", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    watchdog = Watchdog(ovs)
    watchdog.start()
    started = time.monotonic()
    error = None
    try:
        details = run_lab(args, ovs, watchdog) if args.mode == "lab" else \
            run_minimal(args, ovs, watchdog)
    except Exception as err:  # still report what happened to ovs-vswitchd
        details, error = {}, f"{type(err).__name__}: {err}"
    watchdog.stop()
    time.sleep(0.5)  # let a dying ovs-vswitchd finish its log
    report = {
        "mode": args.mode, "seconds": round(time.monotonic() - started, 1),
        "ovs_vswitchd": ovs.state(),
        "failed_after_seconds": None if watchdog.failed_at is None else round(watchdog.failed_at, 1),
        "log_emergencies": ovs.emergencies(), "flow_mod_errors": ovs.flow_mod_errors()[:5],
        "error": error, **details,
    }
    ovs.keep_log(args.output)
    (args.output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    survived = report["ovs_vswitchd"] == "alive" and not report["log_emergencies"]
    log(f"ovs-vswitchd {'survived' if survived else 'DID NOT SURVIVE'}; report in {args.output}")
    check = report.get("mirror_check")
    valid = not report["flow_mod_errors"] and (check is None or check["recorded"] >= check["expected"])
    if not valid:
        log("the stress is not valid: ovs-vswitchd refused flows, or mirroring did not work")
    return 0 if survived and valid and error is None else 1


if __name__ == "__main__":
    sys.exit(main())
