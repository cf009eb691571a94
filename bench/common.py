"""What every benchmark shares: the isolated lab it drives, small statistics, logging.

Every lab runs from its own state directory and API port (STATE_DIR, API_PORT), with
compute nodes bn1.., VMs bv1.. and subnets from 10.150.0.0 up, so it never meets a lab that
someone else runs on the same machine. `running_lab` always tears its lab down, also when a
benchmark fails.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import struct
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

from mirrorlab.sandbox import Sandbox
from mirrorlab.state import LabState

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

class BenchLab:
    """One lab in a state directory and API port of its own (the benchmark's by default), driven
    through the CLI and the REST API as a user would."""

    def __init__(self, topology: Path, state_dir: Path = STATE_DIR, api_port: int = API_PORT):
        self.topology = topology
        self.state_dir, self.api_port = state_dir, api_port
        self.base_url = f"http://127.0.0.1:{api_port}"
        self.env = {**os.environ, "MIRRORLAB_STATE_DIR": str(state_dir), "PYTHONUNBUFFERED": "1"}
        self.http = httpx.Client(base_url=self.base_url, timeout=120)
        self.up_report: dict = {}

    # CLI ---------------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        """`mirrorlab ARGS` against this lab."""
        return run(PYTHON, "-m", "mirrorlab.cli", *args, timeout=timeout, check=check, env=self.env)

    def up(self) -> dict:
        """`mirrorlab up`; returns its wall time and the time at which each bring-up phase began
        (seconds from the start), read from its progress output."""
        started = time.monotonic()
        process = subprocess.Popen([PYTHON, "-m", "mirrorlab.cli", "up", str(self.topology),
                                    "--api-port", str(self.api_port), "--config-api-port", "0"],
                                   env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, cwd=REPO)
        phases, output = {}, []
        for line in process.stdout:
            output.append(line.rstrip())
            match = re.match(r"\s*\[(\d)/\d\] (.*)", line)
            if match:
                phases[match.group(1)] = {"at": round(time.monotonic() - started, 2),
                                          "what": match.group(2).strip()}
        code = process.wait()
        seconds = time.monotonic() - started
        if code != 0:
            raise RuntimeError(f"mirrorlab up exited {code}:\n" + "\n".join(output[-30:]))
        self.up_report = {"seconds": round(seconds, 2), "phases": phases}
        return self.up_report

    def down(self) -> float:
        """`mirrorlab down`; returns its wall time."""
        started = time.monotonic()
        self.cli("down", timeout=600)
        return round(time.monotonic() - started, 2)

    def status(self) -> dict:
        """`mirrorlab status --json`."""
        return json.loads(self.cli("status", "--json", timeout=60).stdout)

    def exec(self, vm: str, argv: list[str], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command inside a VM (`mirrorlab exec VM -- ARGV`)."""
        return self.cli("exec", vm, "--", *argv, timeout=timeout, check=check)

    def popen(self, vm: str, argv: list[str]) -> subprocess.Popen:
        """Start a command inside a VM without waiting. `mirrorlab exec` execs nsenter, which
        execs the command, so the returned process is the command itself."""
        return subprocess.Popen([PYTHON, "-m", "mirrorlab.cli", "exec", vm, "--", *argv], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)

    def counters(self, vm: str, interface: str | None = None) -> dict[str, int]:
        """The packet counters of a VM's interface (default its first), read inside the VM from
        /proc/net/dev (per network namespace; /sys/class/net would show the machine's)."""
        interface = interface or f"{vm}-eth0"
        for line in self.exec(vm, ["cat", "/proc/net/dev"], timeout=60).stdout.splitlines():
            name, _, fields = line.partition(":")
            if name.strip() == interface:
                values = [int(v) for v in fields.split()]
                # receive: bytes packets errs drop fifo frame compressed multicast; transmit: same
                return {"rx_packets": values[1], "rx_dropped": values[3],
                        "tx_packets": values[9], "tx_dropped": values[11]}
        raise RuntimeError(f"no interface {interface} in {vm}")

    # REST API ----------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs) -> dict | list:
        """A request to the controller's REST API; its JSON, or an error with the body."""
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def recorder_pid(self, analyzer_vm: str) -> int | None:
        """The PID of the recorder running in an analyzer VM, from the lab's state."""
        record = json.loads((self.state_dir / "lab.json").read_text())
        return next((r["pid"] for r in record.get("recorders", [])
                     if r.get("name") == f"recorder-{analyzer_vm}"), None)

    def pcap_path(self, capture: dict) -> Path:
        """The pcap file the analyzer writes for `capture` (a capture JSON)."""
        return self.state_dir / "captures" / f"label-{capture['label']}.pcap"

    # vRouters ----------------------------------------------------------------------------
    def vrouters(self) -> list[str]:
        """The vRouter bridges of this lab."""
        return [c["vrouter"] for c in self.status()["computes"]]

    def flow_count(self, bridge: str) -> int:
        """Number of flows `ovs-ofctl -O OpenFlow13 dump-flows` lists on a bridge."""
        output = self.cli("netns", "--", "ovs-ofctl", "-O", "OpenFlow13", "--no-stats",
                          "dump-flows", bridge, timeout=60).stdout
        return sum(1 for line in output.splitlines() if "actions=" in line)


def down_leftover_lab(state_dir: Path = STATE_DIR) -> None:
    """Tear down a lab an earlier run left in `state_dir` (the benchmark's by default)."""
    if (state_dir / "lab.json").exists():
        log(f"a lab is recorded in {state_dir} (an earlier run's); taking it down")
        env = {**os.environ, "MIRRORLAB_STATE_DIR": str(state_dir)}
        run(PYTHON, "-m", "mirrorlab.cli", "down", timeout=600, check=False, env=env)


@contextlib.contextmanager
def running_lab(topology: Path, report: dict | None = None, state_dir: Path = STATE_DIR,
                api_port: int = API_PORT):
    """Bring a lab up in `state_dir` with its API on `api_port` (the benchmark's by default),
    yield it, and always take it down. Records the up/down times in `report` when given."""
    lab = BenchLab(topology, state_dir, api_port)
    down_leftover_lab(state_dir)
    log(f"mirrorlab up {topology.name}")
    try:
        up = lab.up()
        log(f"up in {up['seconds']}s")
        if report is not None:
            report["up"] = up
        yield lab
    finally:
        log("mirrorlab down")
        try:
            seconds = lab.down()
            if report is not None:
                report["down_seconds"] = seconds
        except Exception as err:  # never leave it up: try once more, then report
            log(f"mirrorlab down failed ({err}); retrying")
            lab.cli("down", timeout=600, check=False)
        lab.http.close()
