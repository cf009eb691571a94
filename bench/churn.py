"""Churn stress for Open vSwitch (`scripts/ovs-stress`, and the soak of `scripts/bench`):
change mirror flows while packets are in flight and report whether ovs-vswitchd aborted or
restarted.

It never stresses the machine's own Open vSwitch. In `lab` mode the lab runs, as every lab
does, in its own network namespace with its own ovs-vswitchd (under a monitor that restarts it
after an abort): the stress watches that one, through its pid file STATE_DIR/ovs/ovs-vswitchd.pid
(a restart shows as a new PID) and its log STATE_DIR/ovs/ovs-vswitchd.log (EMER and assertion
lines, the monitor's "died, killed (Aborted)"). In `minimal` mode `scripts/ovs-stress` starts a
private ovsdb-server and ovs-vswitchd without a monitor (so an abort leaves it dead, where the
stress sees it) in a namespace of its own and runs this module inside it.

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
ovs-vswitchd survived and how often it restarted; in lab mode also the API latency of capture
start and stop, the monitored ping's loss, the flows left behind by stopped captures and the
controller's memory. The exit code is 1 when ovs-vswitchd did not survive.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO, BenchLab, log, percentile, rss_kib, run, running_lab
from mirrorlab import ApiError, InstalledFlow, LabError
from mirrorlab.client import ApiClient

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


# --- watching an ovs-vswitchd -----------------------------------------------------------------

class OvsWatch:
    """An ovs-vswitchd that runs from `rundir` in network namespace `netns`: whether it is still
    the process it was when the watch began, and what its log said since."""

    def __init__(self, rundir: Path, netns: str):
        self.rundir = Path(rundir)
        self.log_path = self.rundir / "ovs-vswitchd.log"
        self.pid = self.read_pid()
        if self.pid is None:
            raise NotPrivate(f"no ovs-vswitchd is running from {self.rundir}")
        # The machine's ovs-vswitchd runs in the machine's network namespace; a lab's, or the
        # one scripts/ovs-stress started, in a namespace of its own.
        netns_path = Path("/run/netns") / netns
        try:
            private = os.stat(f"/proc/{self.pid}/ns/net").st_ino == netns_path.stat().st_ino
        except OSError:
            private = False
        if not private:
            raise NotPrivate(f"ovs-vswitchd {self.pid} does not run in network namespace "
                             f"{netns}: it is not a private one")
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0

    @classmethod
    def private(cls) -> "OvsWatch":
        """The private ovs-vswitchd `scripts/ovs-stress` started (named by its environment)."""
        rundir = os.environ.get(PRIVATE_OVS_ENV)
        if not rundir or os.environ.get("OVS_RUNDIR") != rundir:
            raise NotPrivate(f"run this through scripts/ovs-stress, which starts a private Open "
                             f"vSwitch ({PRIVATE_OVS_ENV} and OVS_RUNDIR must name its directory)")
        return cls(Path(rundir), os.environ.get(NETNS_ENV, "-"))

    @classmethod
    def of_lab(cls, state_dir: Path) -> "OvsWatch":
        """The ovs-vswitchd of the lab running from `state_dir` (in the lab's own namespace,
        restarted by its monitor when it aborts: a restart shows as a new PID)."""
        netns = json.loads((state_dir / "lab.json").read_text()).get("netns")
        if not netns:
            raise NotPrivate(f"the lab in {state_dir} records no network namespace")
        return cls(state_dir / "ovs", netns)

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

    def _log_lines(self) -> list[str]:
        try:
            with open(self.log_path, errors="replace") as logfile:
                logfile.seek(self.log_offset)
                return logfile.read().splitlines()
        except OSError:
            return []

    def emergencies(self) -> list[str]:
        """The log lines written since the start at EMER level, or about an abort (also the
        monitor's "pid N died, killed (Aborted), restarting")."""
        return [line for line in self._log_lines() if "|EMER|" in line or "assertion" in line
                or "Aborted" in line or "terminating with signal" in line]

    def flow_mod_errors(self) -> list[str]:
        """The log lines since the start where ovs-vswitchd refused a flow mod: a stress whose
        flows were never installed proves nothing."""
        return [line for line in self._log_lines() if "error reply to OFPT_FLOW_MOD" in line]

    def keep_log(self, output: Path) -> None:
        """Copy ovs-vswitchd's log to `output` (its directory goes when the stress ends)."""
        if self.log_path.exists():
            shutil.copyfile(self.log_path, output / "ovs-vswitchd.log")

    def report(self, watchdog: "Watchdog") -> dict:
        """What happened to ovs-vswitchd during the watch."""
        time.sleep(0.5)  # let a dying ovs-vswitchd, or its monitor, finish its log
        return {"ovs_vswitchd": self.state(), "restarts": watchdog.restarts,
                "failed_after_seconds": None if watchdog.failed_at is None
                else round(watchdog.failed_at, 1),
                "log_emergencies": self.emergencies(), "flow_mod_errors": self.flow_mod_errors()[:5]}


class Watchdog(threading.Thread):
    """Notices, within `interval` seconds, when ovs-vswitchd stops being the process it was
    (`failed` is set then), and counts its restarts (each new live PID is one)."""

    def __init__(self, ovs: OvsWatch, interval: float = 0.2):
        super().__init__(name="watchdog", daemon=True)
        self.ovs, self.interval = ovs, interval
        self.stopped, self.failed = threading.Event(), threading.Event()
        self.failed_at: float | None = None
        self.restarts = 0
        self.last_pid = ovs.pid
        self.started_at = time.monotonic()

    def look(self) -> None:
        """One look at ovs-vswitchd."""
        pid = self.ovs.read_pid()
        if pid != self.ovs.pid and self.failed_at is None:
            self.failed_at = time.monotonic() - self.started_at
            self.failed.set()
        if pid is not None and pid != self.last_pid:
            self.restarts += 1
            self.last_pid = pid

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.look()

    def stop(self) -> None:
        """End the watch (with a last look)."""
        self.stopped.set()
        self.join()
        self.look()


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


def run_minimal(args, watchdog: Watchdog) -> dict:
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
        while time.monotonic() < deadline and not watchdog.failed.is_set():
            batches += 1
            if ofctl("add-flows", VR, batch.name, check=False).returncode != 0:
                break
    stop.set()
    sender.join()
    return {"pattern": args.pattern, "frames_sent": sent[0],
            "flow_mods_sent": batches * len(rounds), "churned_flows": churned,
            "trace_without_capture": trace.splitlines()[-1:] if trace else []}


# --- lab: the real pipeline -------------------------------------------------------------------

@dataclass(frozen=True)
class ChurnSettings:
    """How a lab is churned: for how long, by how many clients, and the monitored traffic."""

    seconds: float = 60
    workers: int = 30
    ping: str = "vm1:10.1.1.12"        # VM:ADDRESS the VM pings during the churn
    ping_rate: float = 20              # pings a second
    analyzer_compute: str = "compute1"


PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")


def ping_loss(output: str) -> dict:
    """Packets sent and received, and the share lost, from ping's summary line (None when
    `output` has none: ping died before it could print one)."""
    match = PING_SUMMARY.search(output)
    if not match:
        return {"transmitted": None, "received": None, "loss": None}
    sent, received = int(match.group(1)), int(match.group(2))
    return {"transmitted": sent, "received": received,
            "loss": round(1 - received / sent, 4) if sent else None}


def flow_consistency(flows: dict[str, list[InstalledFlow]], active: set[int]) -> dict:
    """Compare the vRouters' flows (per bridge) with the captures the API lists as active:
    `leftover` are the flows owned by a capture that is not active, `captures_without_flows`
    the active captures no vRouter has a flow of."""
    leftover, owners_seen = [], set()
    for bridge, installed in flows.items():
        for flow in installed:
            if flow.capture is None:
                continue
            owners_seen.add(flow.capture)
            if flow.capture not in active:
                leftover.append(f"{bridge}: cookie={flow.cookie:#x}, table={flow.table}, "
                                f"priority={flow.priority},{flow.match} actions={flow.actions}")
    return {"active_captures": len(active), "leftover": len(leftover),
            "leftover_flows": leftover[:20],
            "captures_without_flows": sorted(active - owners_seen)}


def capture_cycle(api: ApiClient, vrouter: str, interface: str, direction: str,
                  hold: float = 0.0) -> tuple[list[tuple[str, float]], int | None, str | None]:
    """Start a capture of `interface` on `vrouter` to the default analyzer and stop it `hold`
    seconds later, through the REST API. Returns the latency of each request answered
    (("start" or "stop", seconds)), the id of the capture started (None if refused), and what
    refused a request ("start 409", "stop LabUnavailable"), if anything."""
    latencies, started_id, step = [], None, "start"
    try:
        sent = time.monotonic()
        started = api.post("/api/captures", {"vrouter": vrouter, "interface": interface,
                                             "analyzer": ANALYZER, "direction": direction})
        latencies.append(("start", time.monotonic() - sent))
        started_id = started["id"]
        time.sleep(hold)
        step, sent = "stop", time.monotonic()
        api.delete(f"/api/captures/{started_id}")
        latencies.append(("stop", time.monotonic() - sent))
    except ApiError as err:
        return latencies, started_id, f"{step} {err.status}"
    except LabError as err:
        time.sleep(0.2)  # the lab or controller is not answering: no busy loop meanwhile
        return latencies, started_id, f"{step} {type(err).__name__}"
    return latencies, started_id, None


def capture_worker(base_url: str, targets: list[tuple[str, str]], stop: threading.Event,
                   results: dict, lock: threading.Lock, seed: int) -> None:
    """Start a capture of a random interface and direction, keep it a moment, stop it; again.
    Records every request's outcome, and the API latency of the successful ones."""
    rng = random.Random(seed)
    api = ApiClient(base_url, timeout=15)
    while not stop.is_set():
        vrouter, interface = rng.choice(targets)
        latencies, _, refused = capture_cycle(api, vrouter, interface,
                                              rng.choice(["ingress", "egress", "both"]),
                                              hold=rng.uniform(0, 0.2))
        outcome = refused or "started"
        with lock:
            results["requests"][outcome] = results["requests"].get(outcome, 0) + 1
            for kind, seconds in latencies:
                results[kind].append(seconds)


def latency(values: list[float]) -> dict:
    """p50, p99 and max of request latencies, in seconds."""
    def r(v):
        return None if v is None else round(v, 4)
    return {"n": len(values), "p50": r(percentile(values, 50)), "p99": r(percentile(values, 99)),
            "max": r(max(values) if values else None)}


def mirror_check(lab: BenchLab, pinger: str, target: str) -> dict:
    """After the churn, one capture of `pinger` (both directions) while it pings `target`
    three times: the copies it should get (6) and the packets the analyzer recorded."""
    with lab.capture(pinger, analyzer=ANALYZER) as capture:
        lab.exec(pinger, "ping", "-c", "3", "-i", "0.2", target)
        try:
            recorded = capture.wait_for(packets=6, timeout=5)
        except LabError:
            recorded = capture.count()
    return {"expected": 6, "recorded": recorded}


def vrouter_flows(lab: BenchLab) -> dict:
    """Every flow of every vRouter of the lab, as consistent with the API's captures: the
    captures are listed before and after the dump, and only those active both times count."""
    def active():
        return {c.id for c in lab.captures(state="active")}
    before = active()
    flows = {c.vrouter: lab.flows(c.name) for c in lab.topology.computes}
    return flow_consistency(flows, before & active())


def after_churn(check, *args) -> dict:
    """Run one of the checks made after the churn; its error instead of its result when it
    fails (ovs-vswitchd or the controller may not have survived), so the report is kept."""
    try:
        return check(*args)
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}"[-2000:]}


def churn_lab(lab: BenchLab, settings: ChurnSettings) -> dict:
    """The incident of issue 8 on a running lab: `settings.workers` clients start and stop
    captures for `settings.seconds` while a VM pings, with the lab's own ovs-vswitchd watched.
    Returns what happened to ovs-vswitchd, the API latencies, the ping loss, the flows left
    behind, and the controller's memory before and after."""
    status = lab.status()
    targets = [(vm["compute"], i["vrouter_port"]) for vm in status["vms"] for i in vm["interfaces"]]
    lab.create_analyzer(ANALYZER, compute=settings.analyzer_compute)
    controller_pid = status["controller"]["pid"]
    rss_before = rss_kib(controller_pid)
    ovs = OvsWatch.of_lab(lab.state_dir)
    watchdog = Watchdog(ovs)
    watchdog.start()
    pinger, target = settings.ping.split(":")
    ping = lab.popen(pinger, "ping", "-q", "-i", str(1 / settings.ping_rate), target,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop, lock = threading.Event(), threading.Lock()
    results: dict = {"requests": {}, "start": [], "stop": []}
    workers = [threading.Thread(target=capture_worker, daemon=True,
                                args=(lab.api_url, targets, stop, results, lock, seed))
               for seed in range(settings.workers)]
    log(f"{settings.workers} clients start and stop captures for {settings.seconds}s; "
        f"{pinger} pings {target} {settings.ping_rate}/s; watching ovs-vswitchd {ovs.pid}")
    started = time.monotonic()
    for worker in workers:
        worker.start()
    time.sleep(settings.seconds)
    stop.set()
    for worker in workers:
        worker.join(timeout=90)
    churned = time.monotonic() - started
    ping.send_signal(signal.SIGINT)  # ping prints its summary on SIGINT
    ping_output = ping.communicate(timeout=30)[0].strip()
    flows, check = after_churn(vrouter_flows, lab), after_churn(mirror_check, lab, pinger, target)
    watchdog.stop()
    succeeded = len(results["start"]) + len(results["stop"])
    report = {
        **ovs.report(watchdog),
        "churn_seconds": round(churned, 1), "workers": settings.workers,
        "api_latency": {"start": latency(results["start"]), "stop": latency(results["stop"])},
        "operations_per_second": round(succeeded / churned, 1),
        "requests": results["requests"],
        "ping": {"what": f"{pinger} -> {target} at {settings.ping_rate}/s",
                 "summary": ping_output.splitlines()[-2:], **ping_loss(ping_output)},
        "flows_after_churn": flows, "mirror_check": check,
        "controller_rss_kib": {"before": rss_before, "after": rss_kib(controller_pid)},
        "targets": [f"{c}/{i}" for c, i in targets],
    }
    return report


def run_lab(args) -> dict:
    """`scripts/ovs-stress lab`: the default lab in the stress's own state directory, churned."""
    settings = ChurnSettings(args.seconds, args.workers, args.ping, args.ping_rate,
                             args.analyzer_compute)
    log(f"mirrorlab up {args.topology.name} (state {STATE_DIR}, API port {API_PORT})")
    with running_lab(args.topology, state_dir=STATE_DIR, api_port=API_PORT) as lab:
        try:
            return churn_lab(lab, settings)
        finally:
            for log_file in [*STATE_DIR.glob("*.log"), STATE_DIR / "ovs" / "ovs-vswitchd.log"]:
                if log_file.exists():
                    shutil.copyfile(log_file, args.output / log_file.name)


# --- entry point ------------------------------------------------------------------------------

def survived(report: dict) -> bool:
    """Whether ovs-vswitchd went through the stress as the same process, without an abort."""
    return report.get("ovs_vswitchd") == "alive" and not report.get("log_emergencies")


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
    args.output.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report: dict = {"mode": args.mode, "error": None}
    try:
        if args.mode == "lab":
            report.update(run_lab(args))
        else:
            ovs = OvsWatch.private()
            watchdog = Watchdog(ovs)
            watchdog.start()
            try:
                details = run_minimal(args, watchdog)
            finally:
                watchdog.stop()
                report.update(ovs.report(watchdog))
                ovs.keep_log(args.output)
            report.update(details)
    except NotPrivate as err:
        print(f"ovs-stress: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # still report what happened to ovs-vswitchd
        report["error"] = f"{type(err).__name__}: {err}"
    report["seconds"] = round(time.monotonic() - started, 1)
    (args.output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    log(f"ovs-vswitchd {'survived' if survived(report) else 'DID NOT SURVIVE'} "
        f"({report.get('restarts')} restarts); report in {args.output}")
    check = report.get("mirror_check")
    valid = not report.get("flow_mod_errors") and (check is None or check.get("recorded", 0) >= 6)
    if not valid:
        log("the stress is not valid: ovs-vswitchd refused flows, or mirroring did not work")
    return 0 if survived(report) and valid and report["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
