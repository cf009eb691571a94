"""`Lab`: the one driver of a mirrorlab lab, for programs, tests and the `mirrorlab` command.

    from mirrorlab import Lab

    with Lab("minimal", state_dir="/run/ml-try", api_port=8401) as lab:
        with lab.capture("vm1") as capture:
            lab.exec("vm1", "ping", "-c", "3", "10.1.1.4", check=True)
            capture.wait_for(packets=6, filter="icmp")
            capture.pcap("vm1.pcapng")

A lab is the processes recorded in its state directory (see `mirrorlab.state`): its own
network namespace and Open vSwitch, the controller (os-ken and the REST API) and the lab
process (Mininet VMs). `Lab(...)` describes one to bring up; `Lab.attach()` drives the one
recorded in a state directory. Everything about captures and analyzers goes through the
controller's REST API, as the CLI and the web UI do.
"""
from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mirrorlab import topofile
from mirrorlab.client import ApiClient, query, segment
from mirrorlab.controller.flowmodel import owner_of_cookie, capture_of_cookie
from mirrorlab.controller.rest import is_loopback, is_wildcard
from mirrorlab.errors import ApiUnreachable, LabError, UsageError
from mirrorlab.health import lab_problems
from mirrorlab.recorder import DEFAULT_LIMIT_BYTES, DEFAULT_MIN_FREE_BYTES
from mirrorlab.sandbox import Sandbox, SandboxError
from mirrorlab.state import LabState, private_file, process_alive, process_record, stop_process
from mirrorlab.state import state_dir as default_state_dir
from mirrorlab.vncclient import ConfigApiClient
from mirrorlab.topology import Topology

TOKEN_ENV = "MIRRORLAB_API_TOKEN"
UP_TIMEOUT = 600.0
CONTROLLER_START_TIMEOUT = 30.0
NOT_RUNNING = "no lab is running; start one with `mirrorlab up`"


@dataclass(frozen=True)
class ExecResult:
    """What a command run in the lab returned: its exit code and its output (text)."""

    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class InstalledFlow:
    """A flow installed on a vRouter, as `ovs-ofctl dump-flows` lists it. Two flows are equal
    when they are the same flow (table, priority, cookie, match, actions), whatever their
    counters say."""

    table: int
    priority: int
    cookie: int
    match: str
    actions: str
    packets: int = field(default=0, compare=False)
    bytes: int = field(default=0, compare=False)

    @property
    def owner(self) -> str | None:
        """Who installed it: "base" (the forwarding pipeline), "capture", or None for a flow
        the controller never writes (someone else's)."""
        return owner_of_cookie(self.cookie)

    @property
    def capture(self) -> int | None:
        """The id of the capture the flow belongs to, None for any other flow."""
        return capture_of_cookie(self.cookie)

    def sort_key(self) -> tuple:
        """The order `Lab.flows` lists flows in: by table, highest priority first."""
        return (self.table, -self.priority, self.match, self.cookie, self.actions)


# ovs-ofctl prints these as "key=value, " before the priority and the match.
_FLOW_FIELDS = re.compile(r"(\w+)=([^,\s]*),\s")


def parse_flows(dump: str) -> list[InstalledFlow]:
    """The flows of `ovs-ofctl -O OpenFlow13 dump-flows` output (with or without --no-stats),
    in `InstalledFlow.sort_key` order; other lines (a reply header) are skipped."""
    flows = []
    for line in dump.splitlines():
        head, found, actions = (" " + line.strip()).partition(" actions=")
        if not found:
            continue
        head = head.strip() + " "  # so the last "key=value," before the match ends like the others
        fields, position = {}, 0
        while match := _FLOW_FIELDS.match(head, position):
            fields[match.group(1)] = match.group(2)
            position = match.end()
        rest = head[position:].strip().split(",") if head[position:].strip() else []
        if rest and rest[0].startswith("priority="):
            fields["priority"] = rest.pop(0).partition("=")[2]
        flows.append(InstalledFlow(
            table=int(fields.get("table", 0)), priority=int(fields.get("priority", 32768)),
            cookie=int(fields.get("cookie", "0"), 0), match=",".join(rest), actions=actions,
            packets=int(fields.get("n_packets", 0)), bytes=int(fields.get("n_bytes", 0))))
    return sorted(flows, key=InstalledFlow.sort_key)


def api_url_of(host: str, port: int) -> str:
    """Where an API listening on `host`:`port` answers this machine (loopback for a wildcard)."""
    host = "127.0.0.1" if is_wildcard(host) else host
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


class Lab:
    """A lab: its topology, its state directory and the settings of its controller. Create one
    to bring up (`up()`, or `with Lab(...) as lab:`), or `Lab.attach()` to a running one.

    `topology`: "default" (or another shipped topology's name), a topology file's path, or a
    `Topology`. `state_dir`: where the lab records itself ($MIRRORLAB_STATE_DIR, else
    /run/mirrorlab); two labs on one machine need different state directories and API ports.
    `api_token`: a bearer token the REST API demands (needed for an `api_host` that is not
    loopback). `lease_seconds`: how long a capture the web UI opened outlives its page.
    `config_api_port`: where the controller serves Contrail's configuration API (0: not at all).
    `capture_limit` and `min_free_disk` (bytes): the most a capture records, and the free space
    below which captures stop. `allowed_hosts`: host names the API answers to besides loopback
    and `api_host`. `on_progress(line)` receives each bring-up progress line."""

    def __init__(self, topology: str | Path | Topology = "default", *,
                 state_dir: str | Path | None = None, api_port: int = 8080,
                 config_api_port: int = 8082, api_host: str = "127.0.0.1", api_token: str | None = None,
                 lease_seconds: float = 5.0, capture_limit: int = DEFAULT_LIMIT_BYTES,
                 min_free_disk: int = DEFAULT_MIN_FREE_BYTES, allowed_hosts=(),
                 on_progress: Callable[[str], None] | None = None):
        if not (is_loopback(api_host) or api_token):
            raise UsageError(f"the API host {api_host} is not loopback: give the API a token "
                             f"(api_token)")
        self._topology, self.topology_file = topofile.resolve(topology)
        self.state = LabState(Path(state_dir) if state_dir else default_state_dir())
        self.settings = {"api_host": api_host, "api_port": int(api_port),
                         "config_api_port": int(config_api_port),
                         "allowed_hosts": list(allowed_hosts), "lease_seconds": lease_seconds,
                         "capture_limit_bytes": capture_limit, "min_free_bytes": min_free_disk}
        self.api_token = api_token
        self.on_progress = on_progress
        self.controller = Controller(self)

    @classmethod
    def attach(cls, state_dir: str | Path | None = None) -> "Lab":
        """The lab recorded in `state_dir` ($MIRRORLAB_STATE_DIR, else /run/mirrorlab), to
        drive or take down. Raises `LabError` when none is recorded there."""
        state = LabState(Path(state_dir) if state_dir else default_state_dir())
        record = state.read()
        if not record:
            raise LabError(NOT_RUNNING)
        lab = cls.__new__(cls)
        lab._topology, lab.topology_file = None, None
        if record.get("topology") and Path(record["topology"]).exists():
            lab.topology_file = Path(record["topology"])
        lab.state = state
        lab.settings = {"api_host": record.get("api_host", "127.0.0.1"),
                        "api_port": record.get("api_port", 8080),
                        "config_api_port": record.get("config_api_port", 8082),
                        "allowed_hosts": record.get("allowed_hosts", []),
                        "lease_seconds": record.get("lease_seconds", 5.0),
                        "capture_limit_bytes": record.get("capture_limit_bytes", DEFAULT_LIMIT_BYTES),
                        "min_free_bytes": record.get("min_free_bytes", DEFAULT_MIN_FREE_BYTES)}
        lab.api_token = record.get("api_token") or os.environ.get(TOKEN_ENV) or None
        lab.on_progress = None
        lab.controller = Controller(lab)
        return lab

    # --- what it is -------------------------------------------------------------------------

    @property
    def topology(self) -> Topology:
        """The lab's validated topology (for an attached lab: the copy its processes load)."""
        if self._topology is None:
            self._topology = topofile.load(self.state.topology_path)
        return self._topology

    @property
    def state_dir(self) -> Path:
        """The lab's state directory."""
        return self.state.dir

    @property
    def api_url(self) -> str:
        """The base URL of the controller's REST API and web UI (http://host:port)."""
        return api_url_of(self.settings["api_host"], self.settings["api_port"])

    @property
    def api(self) -> ApiClient:
        """The client of the controller's REST API: get/post/put/delete(path, body) -> JSON,
        download(path, destination); a refusal raises `ApiError` (status, message)."""
        return self._client()

    @property
    def config_api(self) -> ConfigApiClient:
        """The client of the lab's Contrail configuration API (network policies, as vnc_api
        writes them); `LabError` when the lab serves none (`config_api_port` 0)."""
        port = self.settings["config_api_port"]
        if not port:
            raise LabError("this lab serves no configuration API (it was started with "
                           "config_api_port 0)")
        return ConfigApiClient(api_url_of(self.settings["api_host"], port), self.api_token)

    def _client(self) -> ApiClient:
        # The driver's own calls use this, never `self.api`, so a subclass may give `api`
        # another meaning (the end-to-end tests' raw HTTP).
        return ApiClient(self.api_url, self.api_token)

    @property
    def running(self) -> bool:
        """Whether the lab process (the VMs) runs."""
        return process_alive(self.state.read().get("lab_process"))

    # --- bring-up and tear-down -------------------------------------------------------------

    def up(self) -> "Lab":
        """Bring the lab up: its namespace and Open vSwitch, the controller, then the VMs, and
        wait until every VM reaches its peers. A lab left in the state directory by a crash is
        taken down first. On failure everything is taken down again (the process logs stay in
        the state directory) and `LabError` says what failed."""
        record = self.state.read()
        if process_alive(record.get("lab_process")):
            raise LabError(f"a lab is running already ({record.get('topology')}); "
                           f"run `mirrorlab down` first")
        if self.state.exists():
            self._take_down()  # the remains of a lab that crashed
        self.state.clear()
        self.state.ensure_dir()
        # Every process of the lab loads this copy, so editing the file later cannot make the
        # controller reconcile to a lab that was never built.
        with private_file(self.state.topology_path, "w") as copy:
            copy.write(self.topology_file.read_text() if self.topology_file
                       else topofile.dump(self.topology))
        with self.state.update() as current:
            current.update(topology=str(self.topology_file or self.state.topology_path),
                           **self.settings)
            if self.api_token:
                current["api_token"] = self.api_token
        _allow_open_files()
        sandbox = Sandbox(self.state)
        try:
            self._progress("      making the lab's network namespace and starting its Open vSwitch")
            sandbox.create(self.topology.name)
            self._progress("      starting the controller (os-ken)")
            self.controller.start()
        except (LabError, SandboxError, subprocess.CalledProcessError) as err:
            self._take_down(keep_logs=True)
            raise LabError(f"bring-up failed: {err}; logs stay in {self.state.dir}/*.log") from None
        lab_process = self._spawn(sandbox.command([sys.executable, "-m", "mirrorlab.netlab",
                                                   "--topology", str(self.state.topology_path)]),
                                  "lab.log")
        with self.state.update() as current:
            current["lab_process"] = lab_process
        outcome = self._follow_progress(lab_process)
        if outcome != "READY":
            self._take_down(keep_logs=True)
            raise LabError(f"bring-up failed ({outcome.lower()}); the lab is taken down, "
                           f"its logs stay in {self.state.dir}/*.log")
        return self

    def down(self) -> list[str]:
        """Tear the lab down, exactly what it recorded; return the leftovers of a crashed lab
        that had to be stopped (empty after a clean run). Nothing recorded: nothing to do."""
        if not self.state.exists():
            return []
        return self._take_down()

    def _take_down(self, keep_logs: bool = False) -> list[str]:
        record = self.state.read()
        stop_process(record.get("lab_process"), timeout=120)
        self.controller.stop()
        removed = self.state.sweep() + Sandbox(self.state).destroy()
        self.state.clear(keep_logs=keep_logs)
        return removed

    def __enter__(self) -> "Lab":
        return self.up()

    def __exit__(self, *exc_info) -> None:
        self.down()

    def _progress(self, line: str) -> None:
        if self.on_progress is not None:
            self.on_progress(line)

    def _follow_progress(self, lab_process: dict) -> str:
        """Pass the lab process's progress lines on until READY, FAILED or a timeout."""
        deadline = time.monotonic() + UP_TIMEOUT
        seen = 0
        path = self.state.progress_path
        while time.monotonic() < deadline:
            lines = path.read_text().splitlines() if path.exists() else []
            for line in lines[seen:]:
                if line == "READY":
                    return line
                self._progress(line)
                if line.startswith("FAILED"):
                    return "FAILED"
            seen = len(lines)
            if not process_alive(lab_process):
                return "FAILED"
            time.sleep(0.1)
        return "TIMEOUT"

    def _spawn(self, argv: list[str], log_name: str) -> dict:
        """Start a process of the lab, logging to `log_name` in the state directory."""
        return spawn(self.state, argv, log_name, token=self.api_token)

    # --- what runs ------------------------------------------------------------------------

    def status(self) -> dict:
        """The lab as `mirrorlab status --json` prints it: its processes, problems (the lab's,
        and stored network policies the controller could not apply), compute
        nodes (and whether each vRouter is connected), networks, VMs and analyzers."""
        record = self.state.read()
        if not record:
            raise LabError(NOT_RUNNING)
        topology = self.topology
        controller, lab = record.get("controller_process"), record.get("lab_process")
        vrouters, analyzer_list, controller_problems = {}, [], []
        if process_alive(controller):
            try:
                vrouters = {v["name"]: v for v in self._client().get("/api/vrouters")}
                analyzer_list = self._client().get("/api/analyzers")
                policy_problem = self._client().policies().get("problem")
                controller_problems = [policy_problem] if policy_problem else []
            except LabError:
                pass  # a controller that does not answer shows as vRouters not connected
        vms = [{"name": vm.name, "compute": vm.compute, "interfaces": [{
                   "name": i.name, "vm": vm.name, "network": i.network, "ip": str(i.ip),
                   "ip6": str(i.ip6) if i.ip6 else None, "mac": i.mac,
                   "vrouter_port": i.port_name, "ofport": i.ofport} for i in vm.interfaces]}
               for vm in topology.vms]
        return {
            "topology": record["topology"], "name": topology.name,
            "problems": lab_problems(self.state) + controller_problems,
            "lab": {"pid": lab["pid"] if lab else None, "running": process_alive(lab),
                    "netns": record.get("netns")},
            "controller": {"pid": controller["pid"] if controller else None,
                           "running": process_alive(controller),
                           "openflow": Sandbox(self.state).openflow_target,
                           "api": self.api_url},
            "computes": [{"name": c.name, "vrouter": c.vrouter,
                          "fabric_ip": str(topology.fabric_ip(c)),
                          "connected": vrouters.get(c.name, {}).get("connected", False)}
                         for c in topology.computes],
            "networks": [{"name": n.name, "subnet": str(n.subnet),
                          "subnet6": str(n.subnet6) if n.subnet6 else None, "label": n.label}
                         for n in topology.networks],
            "vms": vms,
            "analyzers": analyzer_list,
        }

    # --- commands in VMs and in the lab's namespace ------------------------------------------

    def exec_command(self, vm: str, *argv: str) -> list[str]:
        """`argv` as a command line that runs inside `vm` (its network namespace). Raises
        `UsageError` for a VM the lab does not run, `LabError` for one that died."""
        hosts = self.state.read().get("hosts", [])
        host = next((h for h in hosts if h.get("name") == vm), None)
        if host is None:
            known = ", ".join(h["name"] for h in hosts)
            raise UsageError(f"unknown vm '{vm}' (running: {known or 'none'})")
        if not process_alive(host):
            raise LabError(f"vm '{vm}' is not running")
        return ["nsenter", "--target", str(host["pid"]), "--net", "--", *argv]

    def exec(self, vm: str, *argv: str, timeout: float = 120, check: bool = False,
             input: str | None = None) -> ExecResult:
        """Run `argv` inside `vm` and wait for it: its exit code and output. With `check`, a
        non-zero exit raises `LabError` with the output."""
        return _run(self.exec_command(vm, *argv), f"{vm}: {' '.join(argv)}", timeout, check, input)

    def popen(self, vm: str, *argv: str, **popen_kwargs) -> subprocess.Popen:
        """Start `argv` inside `vm` without waiting (`subprocess.Popen` arguments pass on)."""
        return subprocess.Popen(self.exec_command(vm, *argv), **popen_kwargs)

    def netns_command(self, *argv: str) -> list[str]:
        """`argv` as a command line that runs in the lab's namespace (its vRouters and
        fabric), with ovs-vsctl, ovs-ofctl and ovs-appctl pointed at the lab's Open vSwitch."""
        if not self.state.exists():
            raise LabError(NOT_RUNNING)
        try:
            return Sandbox(self.state).command(list(argv))
        except SandboxError as err:
            raise LabError(str(err)) from None

    def netns(self, *argv: str, timeout: float = 120, check: bool = True) -> ExecResult:
        """Run `argv` in the lab's namespace and wait for it (see `netns_command`). With
        `check` (the default), a non-zero exit raises `LabError` with the output."""
        return _run(self.netns_command(*argv), " ".join(argv), timeout, check, None)

    def flows(self, vrouter: str) -> list[InstalledFlow]:
        """The flows installed on a vRouter (named by its compute node, "compute1", or its
        bridge, "vr-compute1"), decoded, with their counters."""
        bridge = (self.topology.compute(vrouter).vrouter if self.topology.has("compute", vrouter)
                  else vrouter)
        return parse_flows(self.netns("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge).stdout)

    # --- captures and analyzers (the REST API) -----------------------------------------------

    def capture(self, vm: str | None = None, *, vrouter: str | None = None,
                interface: str | None = None, direction: str = "both",
                analyzer: str | None = None, mirror_to: str | None = None,
                limit_bytes: int | None = None, origin: str = "api") -> "Capture":
        """Start mirroring an interface to an analyzer: `vm`'s first interface (on `vrouter`
        if given), or `interface` (a vRouter port such as tap-vm1-0) on `vrouter`.
        `direction`: "ingress" (what the VM sends), "egress" (what it receives) or "both".
        `analyzer`: an analyzer instance (default: the lab's default analyzer); `mirror_to`
        is passed to the API as given. `limit_bytes`: the most the pcap file holds."""
        body = {"vm": vm, "vrouter": vrouter, "interface": interface, "direction": direction,
                "analyzer": analyzer, "mirror_to": mirror_to, "limit_bytes": limit_bytes,
                "origin": origin}
        return Capture(self, self._client().post("/api/captures", body))

    def captures(self, state: str | None = None) -> list["Capture"]:
        """The lab's captures, newest first; `state`: "active", "stopped" or "failed"."""
        return [Capture(self, info)
                for info in self._client().get("/api/captures" + query(state=state))]

    @property
    def analyzers(self) -> list[dict]:
        """The analyzer instances (name, vm, compute, network, ip, captures, recorder)."""
        return self._client().get("/api/analyzers")

    def create_analyzer(self, name: str, network: str | None = None,
                        compute: str | None = None) -> dict:
        """Launch an analyzer instance (a VM that records what captures mirror to it)."""
        return self._client().post("/api/analyzers",
                                   {"name": name, "network": network, "compute": compute})

    def delete_analyzer(self, name: str) -> dict:
        """Remove an analyzer instance that no active capture uses."""
        return self._client().delete(f"/api/analyzers/{segment(name)}")

    def policies(self) -> dict:
        """The network policies written through the configuration API: `policies` (each with
        its `rules` in order and the `networks` it is attached to, in sequence), `connections`
        (network pairs the applied policies pass traffic between) and `mirrors` (network pairs
        whose traffic they copy to an analyzer)."""
        return self._client().policies()

    def analyzer_pcap(self, name: str, path: str | Path) -> Path:
        """Save everything analyzer `name`'s interface received, headers and all (what an
        engineer compares with a customer's capture), as a pcap file at `path`."""
        return self._client().download(f"/api/analyzers/{segment(name)}/pcap", path)

    def __repr__(self) -> str:
        return f"Lab({self.topology_file or '<topology>'}, state_dir={str(self.state.dir)!r}, api={self.api_url})"


class Capture:
    """A capture of the lab (a mirrored interface and what its analyzer recorded); a context
    manager that stops it on exit."""

    def __init__(self, lab: Lab, info: dict):
        self.lab = lab
        self.id: int = info["id"]
        self.info = info

    @property
    def state(self) -> str:
        """"active", "stopped" or "failed", as last read (see `refresh`)."""
        return self.info["state"]

    def refresh(self) -> dict:
        """Read the capture's current state and counters from the API into `info`."""
        self.info = self.lab._client().get(f"/api/captures/{self.id}")
        return self.info

    def packets(self, filter: str | None = None, after: int = 0, limit: int = 1000) -> list[dict]:
        """The recorded packets after packet number `after`, at most `limit` (1-1000), decoded
        (index, time, direction, source, destination, protocol, length, summary); `filter`
        is a display filter such as "icmp and host 10.1.1.12"."""
        return self._page(filter, after, limit)["packets"]

    def count(self, filter: str | None = None) -> int:
        """How many recorded packets `filter` matches (all recorded packets without one)."""
        if filter is None:
            return self._page(None, 0, 1)["total"]
        matched, after = 0, 0
        while True:
            page = self._page(filter, after, 1000)
            matched += len(page["packets"])
            if page["next_after"] <= after or page["next_after"] >= page["total"]:
                return matched
            after = page["next_after"]

    def _page(self, filter: str | None, after: int, limit: int) -> dict:
        return self.lab._client().get(f"/api/captures/{self.id}/packets"
                                      + query(after=after, limit=limit, filter=filter))

    def wait_for(self, packets: int, timeout: float = 10.0, filter: str | None = None) -> int:
        """Wait until the analyzer has recorded at least `packets` packets (that `filter`
        matches); return how many it has. Raises `LabError` after `timeout` seconds, or at
        once if the capture stops first."""
        deadline = time.monotonic() + timeout
        matching = f" matching {filter!r}" if filter else ""
        while True:
            seen = self.count(filter)
            if seen >= packets:
                return seen
            if time.monotonic() > deadline:
                raise LabError(f"capture {self.id}: {seen} packets{matching} after {timeout}s, "
                               f"not {packets}")
            if self.refresh()["state"] != "active":
                seen = self.count(filter)  # what arrived before it stopped
                if seen >= packets:
                    return seen
                raise LabError(f"capture {self.id} is {self.state} "
                               f"({self.info.get('stop_reason') or self.info.get('problem')}) "
                               f"with {seen} packets{matching}, not {packets}")
            time.sleep(0.2)

    def pcap(self, path: str | Path, classic: bool = False) -> Path:
        """Save what the analyzer recorded to `path`: pcapng with each packet's direction, or
        with `classic` a plain pcap file. Returns the path."""
        file_format = "pcap" if classic else "pcapng"
        return self.lab._client().download(f"/api/captures/{self.id}/pcap?format={file_format}", path)

    def stop(self) -> dict:
        """Stop the capture (its mirror flows go, the recorded packets stay); returns the
        capture as the API reports it (`already_stopped` says if it was)."""
        self.info = self.lab._client().delete(f"/api/captures/{self.id}")
        return self.info

    def __enter__(self) -> "Capture":
        return self

    def __exit__(self, exc_type, *_) -> None:
        try:
            self.stop()
        except ApiUnreachable:
            if exc_type is None:  # the test's own error says more than this one
                raise

    def __repr__(self) -> str:
        return f"Capture({self.id}, {self.info.get('vm') or self.info.get('interface')}, {self.state})"


class Controller:
    """The controller process (os-ken and the REST API) of a lab."""

    def __init__(self, lab: Lab):
        self.lab = lab

    @property
    def _record(self) -> dict | None:
        return self.lab.state.read().get("controller_process")

    @property
    def running(self) -> bool:
        """Whether the controller process runs."""
        return process_alive(self._record)

    @property
    def pid(self) -> int | None:
        """The PID of the running controller, None when it is not running."""
        record = self._record
        return record["pid"] if process_alive(record) else None

    def start(self) -> int:
        """Start the controller and wait until its API answers; return its PID."""
        state = self.lab.state
        if self.running:
            raise LabError(f"the controller runs already (pid {self.pid})")
        settings = self.lab.settings
        allowed = [arg for host in settings["allowed_hosts"] for arg in ("--allowed-host", host)]
        process = self.lab._spawn([sys.executable, "-m", "mirrorlab.controller.main",
                                   "--topology", str(state.topology_path),
                                   "--openflow-socket", str(Sandbox(state).openflow_socket),
                                   "--api-host", settings["api_host"],
                                   "--api-port", str(settings["api_port"]), *allowed,
                                   "--config-api-port", str(settings["config_api_port"]),
                                   "--lease-seconds", str(settings["lease_seconds"]),
                                   "--capture-limit-bytes", str(settings["capture_limit_bytes"]),
                                   "--min-free-bytes", str(settings["min_free_bytes"])],
                                  "controller.log")
        with state.update() as current:
            current["controller_process"] = process
        deadline = time.monotonic() + CONTROLLER_START_TIMEOUT
        while time.monotonic() < deadline:
            if not process_alive(process):
                raise LabError(f"the controller exited at start; see {state.dir / 'controller.log'}")
            try:
                self.lab._client().get("/api/vrouters")
                return process["pid"]
            except LabError:
                time.sleep(0.2)
        stop_process(process)
        raise LabError(f"the controller's API did not come up; see {state.dir / 'controller.log'}")

    def stop(self) -> bool:
        """Stop the controller (SIGTERM, then SIGKILL); return whether it was running."""
        record = self._record
        running = process_alive(record)
        stop_process(record)
        return running

    def restart(self) -> int:
        """Stop the controller if it runs, start it again; return its new PID."""
        self.stop()
        return self.start()

    def kill(self) -> None:
        """Kill the controller with SIGKILL, as a crash would (no clean shutdown), and wait
        until it is gone. The vRouters keep their flows; `start()` brings it back."""
        record = self._record
        if not process_alive(record):
            raise LabError("the controller is not running")
        stop_process(record, timeout=0, sig=signal.SIGKILL)


def _allow_open_files() -> None:
    """Raise this process's soft limit of open files to its hard limit, for the lab's processes
    to inherit: at 1000 VMs the lab's ovs-vswitchd holds ~1,400 (a socket per port) and the lab
    process ~2,100 (a pty pair per VM), and the usual soft limit is 1,024 (at 512, a 600-VM lab
    failed: ovs-vswitchd could not accept a connection)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def spawn(state: LabState, argv: list[str], log_name: str, token: str | None = None) -> dict:
    """Start a process of the lab recorded in `state`, in its own session, logging to
    `log_name` in the state directory; return its process record."""
    # umask 077: what the lab's processes write (store, pcaps, logs) is the owner's alone. The
    # API token goes by the environment, which other users cannot read as they can argv.
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    env["MIRRORLAB_STATE_DIR"] = str(state.dir)
    if token:
        env[TOKEN_ENV] = token
    with private_file(state.dir / log_name) as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                   umask=0o077)
    return process_record(process.pid)


def _run(argv: list[str], what: str, timeout: float, check: bool, input: str | None) -> ExecResult:
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                   input=input, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise LabError(f"{what}: still running after {timeout}s") from None
    result = ExecResult(completed.returncode, completed.stdout, completed.stderr)
    if check and result.returncode != 0:
        raise LabError(f"{what}: exit code {result.returncode}: "
                       f"{(result.stderr or result.stdout).strip()[-2000:]}")
    return result
