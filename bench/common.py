"""What every benchmark shares: the isolated lab it drives, small statistics, logging.

Every lab runs from its own state directory and API port (STATE_DIR, API_PORT), with
compute nodes bn1.., VMs bv1.. and subnets from 10.150.0.0 up, so it never meets a lab that
someone else runs on the same machine. `running_lab` always tears its lab down, also when a
benchmark fails.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import struct
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from mirrorlab import Lab
from mirrorlab.sandbox import Sandbox
from mirrorlab.state import LabState
from mirrorlab.supervisor import ENCAPSULATOR

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
STATE_DIR = Path(os.environ.get("MIRRORLAB_BENCH_STATE_DIR", "/run/mirrorlab-bench"))
API_PORT = int(os.environ.get("MIRRORLAB_BENCH_API_PORT", "8291"))
# Names and addresses no one else uses on this machine.
COMPUTE_PREFIX = "bn"
VM_PREFIX = "bv"
NETWORK_PREFIX = "bnet"
SECOND_OCTET = 150          # networks 10.150.0.0/22, 10.151.0.0/22...
ANALYZER_SUBNET = "10.159.0.0/24"
PCAP_GLOBAL_HEADER = 24
PCAP_RECORD = struct.Struct("<IIII")


def log(message: str) -> None:
    """A progress line on stderr, with the wall-clock time."""
    print(f"{time.strftime('%H:%M:%S')} bench: {message}", file=sys.stderr, flush=True)


# --- statistics -------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) of `values`, linearly interpolated; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float], digits: int = 4) -> dict:
    """Median, p95, min, max and count of `values`, rounded."""
    def r(v):
        return None if v is None else round(v, digits)
    return {"n": len(values), "median": r(percentile(values, 50)), "p95": r(percentile(values, 95)),
            "min": r(min(values) if values else None), "max": r(max(values) if values else None)}


def ratio(numerator: float | None, denominator: float | None, digits: int = 3) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if not numerator or not denominator:
        return None if numerator is None or not denominator else 0.0
    return round(numerator / denominator, digits)


# --- processes and files ----------------------------------------------------------------------

def run(*argv: str, timeout: float = 120, check: bool = True, env: dict | None = None,
        quiet: bool = False) -> subprocess.CompletedProcess:
    """Run a command and capture its output; raise with its output when it fails and `check`."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()[-2000:]}")
    return result


def rss_kib(pid: int | None) -> int | None:
    """Resident memory of a process in KiB (VmRSS), or None if it is gone."""
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time a process has used so far, in seconds (None if it is gone)."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ovs_vswitchd_pid() -> int | None:
    """The PID of the benchmark lab's own ovs-vswitchd (every userspace datapath of the lab)."""
    return Sandbox(LabState(STATE_DIR)).vswitchd_pid()


def pcap_times(path: Path) -> list[float]:
    """Arrival times of the complete records of a pcap file (headers only; data is skipped)."""
    times = []
    try:
        with open(path, "rb") as pcap:
            size = os.fstat(pcap.fileno()).st_size
            offset = PCAP_GLOBAL_HEADER
            while offset + PCAP_RECORD.size <= size:
                pcap.seek(offset)
                seconds, micros, caplen, _length = PCAP_RECORD.unpack(pcap.read(PCAP_RECORD.size))
                if offset + PCAP_RECORD.size + caplen > size:
                    break
                times.append(seconds + micros / 1e6)
                offset += PCAP_RECORD.size + caplen
    except FileNotFoundError:
        pass
    return times


def pcap_count(path: Path) -> int:
    """Number of complete records in a pcap file."""
    return len(pcap_times(path))


def wait_stable(read, settle: float = 1.0, timeout: float = 60.0, interval: float = 0.2):
    """Poll `read()` until its value has not changed for `settle` seconds; return it."""
    value, since = read(), time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(interval)
        current = read()
        if current != value:
            value, since = current, time.monotonic()
        elif time.monotonic() - since >= settle:
            break
    return value


def controller_log_times(path: Path, since: float, pattern: str) -> list[tuple[float, re.Match]]:
    """(epoch time, match) of the controller log lines logged after `since` that match
    `pattern` (the log's asctime is local time with milliseconds)."""
    found = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return found
    regex = re.compile(pattern)
    for line in lines:
        match = regex.search(line)
        if not match:
            continue
        try:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:
            continue
        if stamp >= since:
            found.append((stamp, match))
    return found


# --- topologies -------------------------------------------------------------------------------

def make_topology(directory: Path, name: str, vms: int, computes: int, networks: int = 5) -> Path:
    """Write a generated topology with the benchmark's own names and subnets; return its path."""
    text = run(PYTHON, str(REPO / "scripts" / "make-topology.py"), "--vms", str(vms),
               "--computes", str(computes), "--networks", str(networks), "--name", name,
               "--compute-prefix", COMPUTE_PREFIX, "--vm-prefix", VM_PREFIX,
               "--network-prefix", NETWORK_PREFIX, "--second-octet", str(SECOND_OCTET),
               "--analyzer-subnet", ANALYZER_SUBNET).stdout
    path = directory / f"{name}.yaml"
    path.write_text(text)
    return path


# --- the lab ----------------------------------------------------------------------------------

class BenchLab(Lab):
    """A `mirrorlab.Lab` in a state directory and API port of its own (the benchmark's by
    default), with what the benchmarks measure: bring-up phase times, interface counters."""

    def __init__(self, topology: Path, state_dir: Path = STATE_DIR, api_port: int = API_PORT):
        # No configuration API: the benchmarks do not use it, and 8082 may be another lab's.
        super().__init__(topology, state_dir=state_dir, api_port=api_port, config_api_port=0)
        self.up_report: dict = {}

    def up(self) -> "BenchLab":
        """Bring the lab up; `up_report` gets its wall time and the time at which each bring-up
        phase began (seconds from the start), read from its progress lines."""
        started = time.monotonic()
        phases = {}

        def phase(line: str) -> None:
            match = re.match(r"\s*\[(\d)/\d\] (.*)", line)
            if match:
                phases[match.group(1)] = {"at": round(time.monotonic() - started, 2),
                                          "what": match.group(2).strip()}
        self.on_progress = phase
        super().up()
        self.up_report = {"seconds": round(time.monotonic() - started, 2), "phases": phases}
        return self

    def counters(self, vm: str, interface: str | None = None) -> dict[str, int]:
        """The packet counters of a VM's interface (default its first), read inside the VM from
        /proc/net/dev (per network namespace; /sys/class/net would show the machine's)."""
        interface = interface or f"{vm}-eth0"
        for line in self.exec(vm, "cat", "/proc/net/dev", timeout=60, check=True).stdout.splitlines():
            name, _, fields = line.partition(":")
            if name.strip() == interface:
                values = [int(v) for v in fields.split()]
                # receive: bytes packets errs drop fifo frame compressed multicast; transmit: same
                return {"rx_packets": values[1], "rx_dropped": values[3],
                        "tx_packets": values[9], "tx_dropped": values[11]}
        raise RuntimeError(f"no interface {interface} in {vm}")

    def recorder_pid(self, analyzer_vm: str) -> int | None:
        """The PID of the recorder running in an analyzer VM, from the lab's state."""
        return self._supervised_pid(f"recorder-{analyzer_vm}")

    def encapsulator_pid(self) -> int | None:
        """The PID of the lab's mirror encapsulator, from the lab's state."""
        return self._supervised_pid(ENCAPSULATOR)

    def _supervised_pid(self, name: str) -> int | None:
        return next((r["pid"] for r in self.state.read().get("recorders", [])
                     if r.get("name") == name), None)

    def pcap_path(self, capture: dict) -> Path:
        """The pcap file the analyzer writes for `capture` (a capture JSON)."""
        return self.state.captures_dir / f"label-{capture['label']}.pcap"

    def flow_count(self, vrouter: str) -> int:
        """Number of flows installed on a vRouter's bridge (`ovs-ofctl dump-aggregate`: the
        count alone, cheap enough to poll while a 1000-VM lab reconciles)."""
        reply = self.netns("ovs-ofctl", "-O", "OpenFlow13", "dump-aggregate", vrouter).stdout
        return int(re.search(r"flow_count=(\d+)", reply).group(1))


def down_leftover_lab(state_dir: Path = STATE_DIR) -> None:
    """Tear down a lab an earlier run left in `state_dir` (the benchmark's by default)."""
    if LabState(state_dir).exists():
        log(f"a lab is recorded in {state_dir} (an earlier run's); taking it down")
        Lab.attach(state_dir).down()


@contextlib.contextmanager
def running_lab(topology: Path, report: dict | None = None, state_dir: Path = STATE_DIR,
                api_port: int = API_PORT):
    """Bring a lab up in `state_dir` with its API on `api_port` (the benchmark's by default),
    yield it, and always take it down. Records the up/down times in `report` when given."""
    lab = BenchLab(topology, state_dir, api_port)
    down_leftover_lab(state_dir)
    log(f"mirrorlab up {topology.name}")
    try:
        lab.up()
        log(f"up in {lab.up_report['seconds']}s")
        if report is not None:
            report["up"] = lab.up_report
        yield lab
    finally:
        log("mirrorlab down")
        started = time.monotonic()
        try:
            lab.down()
        except Exception as err:  # never leave it up: try once more, then report
            log(f"mirrorlab down failed ({err}); retrying")
            lab.down()
        if report is not None:
            report["down_seconds"] = round(time.monotonic() - started, 2)
