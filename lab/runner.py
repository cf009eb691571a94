"""Runs a validated `Scenario` on a lab of its own, through the `Lab` API, and keeps what it saw.

Each run brings up its own lab (its own state directory and API port, so it coexists with a
lab the user runs), runs the steps in order while printing a progress line for each, keeps
every capture's pcap, writes `report.md` and `junit.xml` into the output folder, and tears the
lab down. An expectation that does not hold fails the run and the steps go on; a step that
cannot be carried out (a fault that cannot be injected, traffic that cannot start) stops it.
"""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from mirrorlab import Lab, LabError, faults
from mirrorlab.client import free_port
from mirrorlab.controller.packettree import DECODE_AS
from mirrorlab.pcap import complete_end
from mirrorlab.scenario import (
    DEFAULT_ANALYZER, Craft, CreateAnalyzer, ExpectAnalyzer, ExpectFlows, ExpectLoss, ExpectPackets,
    ExpectState, Fault, Iperf3, Mark, Ping, Probe, Scenario, ScenarioError, Show, ShowReceived,
    StartCapture, StopCapture, Wait, WritePolicy, fill_placeholders, target_address,
)
from mirrorlab.scenarioreport import (
    ERROR, FAILED, PASSED, SKIPPED, Outcome, RunResult, describe, junit, markdown,
)

DEFAULT_STATE_DIR = Path("/run/mirrorlab-scn")
POLL_SECONDS = 0.5
# Frames are counted once the analyzer has recorded nothing new for this long, so a copy on
# its way (or a late duplicate) is counted too.
SETTLE_SECONDS = 0.5
PING_LINE = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
# A classic pcap file with no packet: tshark compiles a display filter against it.
EMPTY_PCAP = bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000")
DIRECTION = {"0x00000002": "from", "0x00000001": "to"}

# Runs in the target VM: counts what arrives on a port, says "ready" once it listens, prints
# the count when nothing more comes.
PROBE_LISTENER = r"""
import socket, sys
protocol, port, expected = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
server = socket.socket(socket.AF_INET6 if ":" in sys.argv[4] else socket.AF_INET, kind)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[4], port))
if protocol == "tcp":
    server.listen(64)
print("ready", flush=True)
server.settimeout(3.0)
received = 0
try:
    while received < expected:
        if protocol == "udp":
            server.recvfrom(65535)
        else:
            connection, _ = server.accept()
            connection.close()
        received += 1
        server.settimeout(1.0)
except socket.timeout:
    pass
print(received, flush=True)
"""
# Runs in the source VM: sends the probes, prints how many left.
PROBE_SENDER = r"""
import socket, sys, time
protocol, host, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
sent = 0
for n in range(count):
    try:
        if protocol == "udp":
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.sendto(b"mirrorlab probe %d" % n, (host, port))
        else:
            with socket.create_connection((host, port), timeout=1.0) as s:
                s.sendall(b"mirrorlab probe %d" % n)
        sent += 1
    except OSError:
        pass
    time.sleep(0.05)
print(sent, flush=True)
"""
# Runs in the source VM: sends the frames a scapy expression builds.
SCAPY_SENDER = ("import sys\nfrom scapy.all import *\n"
                "sendp(eval(sys.argv[1]), iface=sys.argv[2], count=int(sys.argv[3]), verbose=False)\n")


class StepError(RuntimeError):
    """A step that could not be carried out; the run stops there."""


def check_filters(scenario: Scenario) -> None:
    """Compile every display filter of `scenario` with tshark before any lab starts; raise
    `ScenarioError` naming each bad one at file:line."""
    problems = []
    with tempfile.NamedTemporaryFile(suffix=".pcap") as empty:
        empty.write(EMPTY_PCAP)
        empty.flush()
        for step in scenario.steps:
            display_filter = getattr(step, "filter", None)
            if not display_filter:
                continue
            result = subprocess.run(["tshark", "-n", "-r", empty.name, "-Y", display_filter],
                                    capture_output=True, text=True, timeout=60)
            if result.returncode != 0:
                reason = " ".join(line for line in result.stderr.splitlines()
                                  if not line.startswith("Running as user"))
                problems.append(f"{scenario.source}:{step.line}: filter: {display_filter!r} is not a "
                                f"tshark display filter: {reason.removeprefix('tshark: ')}")
    if problems:
        raise ScenarioError(problems)


def run(scenario: Scenario, output: Path, state_dir: Path = DEFAULT_STATE_DIR,
        api_port: int | None = None, progress: Callable[[str], None] = print) -> RunResult:
    """Run `scenario` on a lab of its own (state directory `state_dir`, API on `api_port`, a
    free one when None), report progress line by line to `progress`, and leave `report.md`,
    `junit.xml`, the pcaps (`pcaps/`) and the lab's logs (`logs/`) in `output`."""
    check_filters(scenario)
    output.mkdir(parents=True, exist_ok=True)
    result = RunResult(scenario)
    started = time.monotonic()
    progress(f"scenario {scenario.name}: {scenario.title}")
    if scenario.question:
        progress(f"question: {scenario.question.strip()}")
    lab = Lab(scenario.topology, state_dir=state_dir, api_port=api_port or free_port(),
              config_api_port=free_port(),
              on_progress=lambda line: progress(f"  lab: {line.strip()}"))
    try:
        progress(f"bringing up a lab of '{scenario.topology.name}' in {state_dir}")
        lab.up()
    except LabError as err:
        result.error = f"the lab did not come up: {err}"
        progress(f"ERROR: {result.error}")
    else:
        steps = _Steps(lab, scenario, output / "pcaps", progress)
        try:
            steps.run_all(result, started)
        finally:
            steps.finish()
            result.pcaps = steps.keep_pcaps()
            _keep_logs(lab.state_dir, output / "logs")
            progress("tearing the lab down")
            try:
                lab.down()
            except LabError as err:
                progress(f"ERROR: tearing the lab down: {err}")
                result.error = result.error or f"tearing the lab down: {err}"
    result.seconds = time.monotonic() - started
    (output / "report.md").write_text(markdown(result))
    (output / "junit.xml").write_text(junit(result))
    if scenario.answer:
        progress(f"answer: {scenario.answer.strip()}")
    held = sum(o.status == PASSED for o in result.outcomes if o.step in scenario.expectations)
    progress(f"scenario {scenario.name}: {'PASSED' if result.passed else 'FAILED'} "
             f"({held} of {len(scenario.expectations)} expectations held); "
             f"report in {output / 'report.md'}")
    return result


def _keep_logs(state_dir: Path, destination: Path) -> None:
    destination.mkdir(parents=True, exist_ok=True)
    for log in Path(state_dir).glob("*.log"):
        shutil.copyfile(log, destination / log.name)


class _Steps:
    """The steps of one run on one lab, and what they leave for later steps: captures and
    traffic results by name."""

    def __init__(self, lab: Lab, scenario: Scenario, pcaps: Path, progress: Callable[[str], None]):
        self.lab = lab
        self.scenario = scenario
        self.pcaps = pcaps
        self.progress = progress
        self.captures: dict = {}         # name -> Capture
        self.traffic: dict[str, tuple[int, int]] = {}   # name -> (sent, received)
        self.background: dict[str, Callable[[], tuple[int, int]]] = {}
        self.pending: list[subprocess.Popen] = []
        self.marks: dict[str, int] = {}          # name -> frames its analyzer had received
        self.analyzer_pcaps: set[str] = set()    # analyzers whose raw capture was read

    def run_all(self, result: RunResult, started: float) -> None:
        """Run every step in order, recording an outcome for each."""
        total = len(self.scenario.steps)
        stopped = None
        for number, step in enumerate(self.scenario.steps, 1):
            head = f"[{time.monotonic() - started:6.1f}s] {number}/{total} line {step.line}: {describe(step)}"
            if stopped is not None:
                result.outcomes.append(Outcome(step, SKIPPED, f"not run: {stopped}"))
                continue
            self.progress(head)
            began = time.monotonic()
            try:
                passed, detail, evidence = self.run_step(step)
                status = PASSED if passed else FAILED
            except (StepError, LabError, faults.FaultError, subprocess.TimeoutExpired, OSError) as err:
                status, detail, evidence = ERROR, str(err), ()
                stopped = f"line {step.line} failed"
                result.error = f"line {step.line}: {describe(step)}: {err}"
            outcome = Outcome(step, status, detail, time.monotonic() - began, tuple(evidence))
            result.outcomes.append(outcome)
            mark = {PASSED: "ok", FAILED: "FAILED", ERROR: "ERROR"}[status]
            self.progress(f"         {mark}{': ' + detail if detail else ''}")
            for line in evidence:
                self.progress(f"           {line}")

    def run_step(self, step) -> tuple[bool, str, list[str]]:
        """Carry out `step`: whether it passed, what was seen, and evidence lines."""
        answer = getattr(self, HANDLERS[type(step)])(step)
        return answer if isinstance(answer, tuple) else (True, answer or "", [])

    # --- captures and analyzers

    def start_capture(self, step: StartCapture) -> str:
        """Start the capture and keep it under its name."""
        if step.of_analyzer:
            analyzer = self._analyzer(step.of_analyzer)
            vrouter, interface = analyzer["compute"], f"tap-{analyzer['vm']}-0"
        else:
            port = self.lab.topology.vm(step.vm).interfaces[step.index]
            vrouter, interface = port.compute, port.port_name
        capture = self.lab.capture(vrouter=vrouter, interface=interface, direction=step.direction,
                                   analyzer=step.analyzer, limit_bytes=step.limit_bytes)
        self.captures[step.name] = capture
        return f"capture {capture.id} on {vrouter}/{interface}, {capture.state}"

    def _analyzer(self, name: str) -> dict:
        analyzers = {a["name"]: a for a in self.lab.analyzers}
        if name not in analyzers:
            raise StepError(f"analyzer '{name}' does not run (it starts with the first capture "
                            f"or policy rule mirroring to it"
                            f"{'' if name == DEFAULT_ANALYZER else ', or an analyzer step'})")
        return analyzers[name]

    def stop_capture(self, step: StopCapture) -> str:
        """Stop the capture (its recorded frames stay)."""
        capture = self.captures[step.capture]
        capture.stop()
        capture.refresh()
        return f"capture {capture.id}: {capture.state}, {capture.info.get('packets')} packets"

    def create_analyzer(self, step: CreateAnalyzer) -> str:
        """Launch an analyzer instance."""
        analyzer = self.lab.create_analyzer(step.name, network=step.network, compute=step.compute)
        return f"analyzer {step.name}: vm {analyzer['vm']} on {analyzer['compute']}"

    # --- traffic

    def ping(self, step: Ping) -> str:
        """Ping from a VM; keep (sent, received) under the step's name."""
        target = (target_address(self.lab.topology, step.target, step.ipv6) if step.target
                  else self._analyzer(step.target_analyzer)["ip"])
        argv = ["ping", *(["-6"] if step.ipv6 else []), "-c", str(step.count), "-i", str(step.interval),
                "-s", str(step.size), "-W", "1", "-q", target]
        vm = step.source.vm if step.source else self._analyzer(step.source_analyzer)["vm"]
        if step.background:
            process = self.lab.popen(vm, *argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
            self.pending.append(process)
            self.background[step.name or f"line-{step.line}"] = lambda: _ping_counts(
                process.communicate(timeout=step.count * step.interval + 30)[0])
            return f"started in {vm}"
        result = self.lab.exec(vm, *argv, timeout=step.count * step.interval + 30)
        sent, received = _ping_counts(result.stdout)
        if step.name:
            self.traffic[step.name] = (sent, received)
        return f"{received}/{sent} replies"

    def iperf3(self, step: Iperf3) -> str:
        """iperf3 between two VMs (the server runs for this one test)."""
        target_vm = self._vm_at(step.target)
        address = target_address(self.lab.topology, step.target)
        server = self.lab.popen(target_vm, "iperf3", "-s", "-1", "-p", "5201", "--forceflush",
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.pending.append(server)
        try:
            _wait_for_line(server, "Server listening", 15,
                           f"the iperf3 server in {target_vm} did not start")
            argv = ["iperf3", "-c", address, "-p", "5201", "-t", f"{step.seconds:g}", "-J",
                    "--connect-timeout", "3000"]
            if step.udp:
                argv += ["-u", "-b", step.bitrate or "1M"]
            elif step.bitrate:
                argv += ["-b", step.bitrate]
            result = self.lab.exec(step.source.vm, *argv, timeout=step.seconds + 30)
            report = json.loads(result.stdout or "{}")
        finally:
            if server.poll() is None:  # a server with -1 ends after its one test
                time.sleep(0.2)
                server.kill()
            server.wait()
        if "error" in report or result.returncode != 0:
            raise StepError(f"iperf3 failed: {report.get('error') or result.stderr.strip()}")
        summary = report["end"]["sum"] if step.udp else report["end"]["sum_received"]
        if step.udp:
            sent, lost = summary["packets"], summary["lost_packets"]
            if step.name:
                self.traffic[step.name] = (sent, sent - lost)
            return f"{summary['bits_per_second'] / 1e6:.2f} Mbit/s, {summary['lost_percent']:.1f}% lost"
        if step.name:
            self.traffic[step.name] = (1, 1)
        return f"{summary['bits_per_second'] / 1e6:.2f} Mbit/s received"

    def _vm_at(self, target: str) -> str:
        """The VM that holds address (or is named) `target`."""
        topology = self.lab.topology
        if topology.has("vm", target):
            return target
        for interface in topology.interfaces():
            if target in (str(interface.ip), str(interface.ip6)):
                return interface.vm
        raise StepError(f"no VM of the lab has address {target}")

    def probe(self, step: Probe) -> str:
        """UDP datagrams or TCP connections, counted by a listener in the target VM."""
        target_vm = self._vm_at(step.target)
        address = target_address(self.lab.topology, step.target)
        listener = self.lab.popen(target_vm, sys.executable, "-c", PROBE_LISTENER, step.protocol,
                                  str(step.port), str(step.count), address,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pending.append(listener)
        _wait_for_line(listener, "ready", 15, f"the {step.protocol} listener in {target_vm} did not start")
        sender = self.lab.exec(step.source.vm, sys.executable, "-c", PROBE_SENDER, step.protocol,
                               address, str(step.port), str(step.count), timeout=step.count * 2 + 30)
        if sender.returncode != 0:
            listener.kill()
            raise StepError(f"the probe sender failed: {sender.stderr.strip()}")
        received = int(listener.communicate(timeout=30)[0].strip() or 0)
        if step.name:
            self.traffic[step.name] = (step.count, received)
        return f"{received}/{step.count} arrived ({int(sender.stdout.strip())} sent)"

    def craft(self, step: Craft) -> str:
        """Send the frames a scapy expression builds, from the source VM's interface."""
        expression = fill_placeholders(step.packet, self.lab.topology)
        interface = self.lab.topology.vm(step.source.vm).interfaces[step.source.index].name
        result = self.lab.exec(step.source.vm, sys.executable, "-c", SCAPY_SENDER, expression,
                               interface, str(step.count), timeout=120)
        if result.returncode != 0:
            raise StepError(f"scapy failed: {result.stderr.strip().splitlines()[-1:]}")
        return f"sent {step.count} from {interface}"

    # --- faults and waits

    def fault(self, step: Fault) -> str:
        """Inject or undo a fault (see `mirrorlab.faults`)."""
        action = step.action.replace("-", "_")
        if step.action in ("controller-kill", "controller-restart", "controller-stop", "controller-start"):
            getattr(faults, action)(self.lab)
        elif step.action in ("interface-down", "interface-up"):
            getattr(faults, action)(self.lab, step.target, step.index)
        elif step.action == "impair":
            faults.impair(self.lab, step.target, step.index, loss=step.loss, rate=step.rate)
        elif step.action == "clear":
            faults.clear(self.lab, step.target, step.index)
        elif step.action == "recorder-kill":
            return f"killed pid {faults.recorder_kill(self.lab, step.target)}"
        else:
            getattr(faults, action)(self.lab, step.target)
        return ""

    def wait(self, step: Wait) -> str:
        """Sleep, or wait for packets in a capture or a vRouter's connection state."""
        if step.capture:
            capture = self.captures[step.capture]
            capture.wait_for(packets=step.packets, timeout=step.seconds)
            return f"{capture.info.get('packets')} packets"
        if step.vrouter:
            deadline = time.monotonic() + step.seconds
            while self.lab.api.get(f"/api/vrouters/{step.vrouter}")["connected"] != step.connected:
                if time.monotonic() > deadline:
                    raise StepError(f"vRouter {step.vrouter} is still "
                                    f"{'dis' if step.connected else ''}connected after {step.seconds:g}s")
                time.sleep(0.2)
            return ""
        time.sleep(step.seconds)
        return ""

    # --- network policies (the configuration API)

    def write_policy(self, step: WritePolicy) -> str:
        """Write the policy's rules, reorder them, attach and detach it, as a Contrail client
        would (`lab.config_api`)."""
        config, topology = self.lab.config_api, self.lab.topology
        project = list(topology.project_fq_name)
        policy = project + [step.name]
        if step.rules is not None:
            config.write_policy(policy, [rule.policy_rule(topology) for rule in step.rules])
        if step.order is not None:
            rules = config.policy_rules(policy)
            if len(rules) != len(step.order):
                raise StepError(f"policy {step.name} has {len(rules)} rules, the order lists "
                                f"{len(step.order)}")
            config.write_policy(policy, [rules[position - 1] for position in step.order])
        for attachment in step.attach:
            config.attach_policy(project + [attachment.network], policy, attachment.sequence)
        for network in step.detach:
            config.detach_policy(project + [network], policy)
        rules = config.policy_rules(policy)
        return f"{':'.join(policy)}: {len(rules)} rule{'' if len(rules) == 1 else 's'}"

    def mark(self, step: Mark) -> str:
        """Note how many frames the analyzer's interface has received."""
        _path, frames = self._analyzer_received(step.analyzer, time.monotonic() + 10)
        self.marks[step.name] = frames
        return f"{frames} frames received so far"

    def _analyzer_received(self, name: str, deadline: float) -> tuple[Path, int]:
        """Analyzer `name`'s raw capture, downloaded into the pcaps folder once it has received
        nothing new for SETTLE_SECONDS (or at `deadline`), and how many frames it holds."""
        self._analyzer(name)  # says why when it does not run
        self.pcaps.mkdir(parents=True, exist_ok=True)
        path = self.pcaps / f"analyzer-{name}.pcap"
        self.analyzer_pcaps.add(name)
        frames = None
        while True:
            self.lab.analyzer_pcap(name, path)
            with open(path, "rb") as pcap:
                now = complete_end(pcap)[1]
            if now == frames or time.monotonic() >= deadline:
                return path, now
            frames = now
            time.sleep(SETTLE_SECONDS)

    def _received(self, step: ExpectAnalyzer | ShowReceived, deadline: float,
                  fields: tuple[str, ...]) -> tuple[list[list[str]], int, Path]:
        """The `fields` of each frame the step's analyzer received between its marks that its
        filter matches (tshark decoding the Juniper header and VXLAN, as the packet view does),
        how many frames it received between them, and its raw capture."""
        since = self.marks[step.since] if step.since else 0
        path, total = self._analyzer_received(step.analyzer, deadline)
        until = self.marks[step.until] if step.until else total
        span = f"frame.number > {since} && frame.number <= {until}"
        display_filter = f"{span} && ({step.filter})" if step.filter else span
        return _tshark_fields(path, display_filter, fields, DECODE_AS), until - since, path

    def expect_analyzer(self, step: ExpectAnalyzer):
        """Count the frames the analyzer received between the marks that match the display
        filter, with tshark decoding the Juniper header."""
        deadline = time.monotonic() + step.within
        while True:
            frames, received, path = self._received(step, deadline, ("frame.number",))
            count = len(frames)
            if step.count.holds(count):
                return True, f"{count} packets of the {received} frames received ({path.name})", []
            grown_past = step.count.maximum is not None and count > step.count.maximum
            if grown_past or step.until or time.monotonic() > deadline:
                return False, f"{count} packets, expected {step.count}", []
            time.sleep(POLL_SECONDS)

    # --- expectations and evidence

    def expect_packets(self, step: ExpectPackets):
        """Count the capture's frames that match the display filter, with tshark."""
        capture = self.captures[step.capture]
        deadline = time.monotonic() + step.within
        while True:
            self._settle(capture, deadline)
            count = len(self._frames(step.capture, step.filter))
            if step.count.holds(count):
                return True, f"{count} packets (capture {capture.id})", []
            grown_past = step.count.maximum is not None and count > step.count.maximum
            if grown_past or time.monotonic() > deadline:
                return False, f"{count} packets, expected {step.count}", []
            time.sleep(POLL_SECONDS)

    def _settle(self, capture, deadline: float) -> None:
        """Wait until capture's analyzer has recorded nothing new for SETTLE_SECONDS (copies
        still on their way would make a count too low, or hide a late duplicate), or until
        `deadline`."""
        count = capture.refresh()["packets"]
        while time.monotonic() < deadline:
            time.sleep(SETTLE_SECONDS)
            now = capture.refresh()["packets"]
            if now == count:
                return
            count = now

    def expect_loss(self, step: ExpectLoss):
        """Check a traffic step's loss (waiting for it if it runs in the background)."""
        if step.traffic in self.background:
            self.traffic[step.traffic] = self.background.pop(step.traffic)()
        sent, received = self.traffic[step.traffic]
        loss = 100.0 * (sent - received) / sent if sent else 100.0
        seen = f"{loss:.0f}% lost ({received}/{sent})"
        return (True, seen, []) if step.loss.holds(loss) else (False, f"{seen}, expected {step.loss}%", [])

    def expect_state(self, step: ExpectState):
        """Check that the capture reaches a state."""
        capture = self.captures[step.capture]
        deadline = time.monotonic() + step.within
        while True:
            capture.refresh()
            if capture.state == step.state:
                return True, capture.state, []
            if time.monotonic() > deadline:
                reason = capture.info.get("problem") or capture.info.get("stop_reason")
                return False, f"{capture.state}{f' ({reason})' if reason else ''}, expected {step.state}", []
            time.sleep(POLL_SECONDS)

    def expect_flows(self, step: ExpectFlows):
        """Count the capture's flows on a vRouter, by their cookie."""
        capture_id = self.captures[step.capture].id
        deadline = time.monotonic() + step.within
        while True:
            count = sum(flow.capture == capture_id for flow in self.lab.flows(step.vrouter))
            if step.count.holds(count):
                return True, f"{count} flows", []
            if time.monotonic() > deadline:
                return False, f"{count} flows, expected {step.count}", []
            time.sleep(POLL_SECONDS)

    def show(self, step: Show):
        """The frames the filter matches, as evidence lines."""
        capture = self.captures[step.capture]
        self._settle(capture, time.monotonic() + 10)
        vm = capture.info.get("vm") or "the VM"
        lines = [f"{frame[0]:>4} {DIRECTION.get(frame[1], '?'):>4} {vm:<8} {frame[2]} -> {frame[3]} "
                 f"{frame[4]} {frame[5]}" for frame in self._frames(step.capture, step.filter)]
        return True, f"{len(lines)} packets", lines

    def show_received(self, step: ShowReceived):
        """The frames the analyzer received that the filter matches, as evidence lines: where
        each came from (the mirroring vRouter's address and UDP source port), the Juniper
        header's VN, and the frame inside."""
        frames, _received, _path = self._received(step, time.monotonic() + 10, (
            "frame.number", "ip.src", "ip.dst", "udp.srcport", "juniper.vn.src", "juniper.vn.dst",
            "_ws.col.Info"))
        lines = []
        for number, sources, destinations, ports, vn_src, vn_dst, info in (
                frame + [""] * (7 - len(frame)) for frame in frames):
            outer, *inner = sources.split(",")
            vn = f"vn.src {vn_src}" if vn_src else f"vn.dst {vn_dst}" if vn_dst else "no VN"
            inside = f"{inner[-1]} -> {destinations.split(',')[-1]} " if inner else ""
            lines.append(f"{number:>4} from {outer} port {ports.split(',')[0]}, {vn}: {inside}{info}")
        return True, f"{len(lines)} packets", lines

    def _frames(self, name: str, display_filter: str | None) -> list[list[str]]:
        """Capture `name`'s recorded frames through tshark (`display_filter` applied): number,
        direction flags, source, destination, protocol, summary."""
        return _tshark_fields(self._pcap(name), display_filter, (
            "frame.number", "frame.packet_flags_direction", "_ws.col.Source",
            "_ws.col.Destination", "_ws.col.Protocol", "_ws.col.Info"))

    def _pcap(self, name: str) -> Path:
        """Capture `name`'s pcapng, downloaded now into the pcaps folder."""
        self.pcaps.mkdir(parents=True, exist_ok=True)
        path = self.pcaps / f"{name}.pcapng"
        self.captures[name].pcap(path)
        return path

    # --- the end

    def finish(self) -> None:
        """Reap background traffic still running."""
        for process in self.pending:
            if process.poll() is None:
                process.kill()
            process.wait()

    def keep_pcaps(self) -> list[Path]:
        """Download every capture's final pcapng; the paths kept."""
        kept = []
        for name in self.captures:
            try:
                kept.append(self._pcap(name))
            except LabError as err:
                self.progress(f"could not keep the pcap of capture {name}: {err}")
        for name in sorted(self.analyzer_pcaps):
            path = self.pcaps / f"analyzer-{name}.pcap"
            try:
                kept.append(self.lab.analyzer_pcap(name, path))
            except LabError as err:
                self.progress(f"could not keep what analyzer {name} received: {err}")
        return kept


# The _Steps method that carries out each kind of step.
HANDLERS = {StartCapture: "start_capture", StopCapture: "stop_capture",
            CreateAnalyzer: "create_analyzer", Ping: "ping", Iperf3: "iperf3", Probe: "probe",
            Craft: "craft", Fault: "fault", Wait: "wait", ExpectPackets: "expect_packets",
            ExpectLoss: "expect_loss", ExpectState: "expect_state", ExpectFlows: "expect_flows",
            WritePolicy: "write_policy", Mark: "mark", ExpectAnalyzer: "expect_analyzer",
            Show: "show", ShowReceived: "show_received"}


def _tshark_fields(path: Path, display_filter: str | None, fields: tuple[str, ...],
                   decode: tuple[str, ...] = ()) -> list[list[str]]:
    """The `fields` of each frame of the pcap at `path` that `display_filter` matches (all
    without one), read by tshark with the `decode` rules (-d ...)."""
    result = subprocess.run(
        ["tshark", "-n", "-r", str(path), *decode, *(["-Y", display_filter] if display_filter else []),
         "-T", "fields", "-E", "separator=\t", *[arg for field in fields for arg in ("-e", field)]],
        capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise StepError(f"tshark could not read {path}: {result.stderr.strip()}")
    return [line.split("\t") for line in result.stdout.splitlines() if line.strip()]



def _wait_for_line(process: subprocess.Popen, marker: str, seconds: float, failure: str) -> None:
    """Read `process`'s output until `marker` shows, or kill it and fail after `seconds`.

    Reads the pipe itself, not Python's buffered file, so select never waits on output that
    has already arrived."""
    deadline = time.monotonic() + seconds
    fd = process.stdout.fileno()
    seen = b""
    while marker.encode() not in seen:
        remaining = deadline - time.monotonic()
        chunk = os.read(fd, 4096) if remaining > 0 and select.select([fd], [], [], remaining)[0] else b""
        if not chunk:
            process.kill()
            _, errors = process.communicate()
            raise StepError(f"{failure}: {(errors or seen.decode(errors='replace')).strip() or 'no answer'}")
        seen += chunk

def _ping_counts(output: str) -> tuple[int, int]:
    """(sent, received) from ping's summary line."""
    match = PING_LINE.search(output)
    if match is None:
        raise StepError(f"ping printed no summary: {output.strip()[-200:]}")
    return int(match.group(1)), int(match.group(2))
