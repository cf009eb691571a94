"""Each lab's own network namespace and Open vSwitch.

A lab never shares a switch or a name with anything else on the machine: `mirrorlab up` makes a
network namespace for it and starts a private ovsdb-server and ovs-vswitchd inside (userspace
datapath, restarted by their monitor if they crash). The vRouters, the fabric and the vRouter
ends of every VM link live in that namespace, so two labs (a user's and the test suite's, say)
can use the same bridge, port and VM names; a stress test or a crash in one lab's Open vSwitch
cannot hurt another; and no lab address ever appears in the machine's own namespace.

The vRouters reach the controller, which runs in the machine's namespace, over a Unix socket in
the lab's Open vSwitch run directory that only root can open.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from mirrorlab.state import LabState, process_record, process_start_time, stop_process

OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
START_TIMEOUT = 20.0
REVALIDATION_INTERVAL_MS = 100
REVALIDATION_TIMEOUT = 5.0
# The receive buffer of each packet socket ovs-vswitchd reads a port with. Open vSwitch leaves
# the kernel's default (net.core.rmem_default, 208 KiB, one setting for the whole machine that a
# namespace cannot change): ~270 small frames or ~90 full ones, a few milliseconds of traffic,
# so a moment in which the lab's two cores were busy elsewhere dropped packets on every hop.
VSWITCHD_RECEIVE_BUFFER = 4 << 20
SYS_PIDFD_GETFD = 438  # Linux 5.6, x86-64 and arm64
SO_RCVBUFFORCE = 33
_LIBC = ctypes.CDLL(None, use_errno=True)
# glibc's allocator for ovs-vswitchd (mallopt(3)'s environment variables): keep up to 256 MiB
# of freed heap, and grow it 16 MiB at a time, instead of giving memory back above 128 KiB.
# The userspace datapath allocates a buffer per packet (9 KB on the jumbo links) and frees it
# once sent; with glibc's defaults each batch shrank the heap and the next one faulted it back
# in: 40-45% of ovs-vswitchd's CPU went to brk, page faults and unmapping (perf, 20k packets/s
# mirrored across the fabric).
VSWITCHD_MALLOC = {"MALLOC_TRIM_THRESHOLD_": str(256 << 20), "MALLOC_TOP_PAD_": str(16 << 20)}


class SandboxError(RuntimeError):
    """The lab's namespace or Open vSwitch could not be made or reached."""


def _netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def _parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class Sandbox:
    """The namespace and Open vSwitch of the lab recorded in `state`."""

    def __init__(self, state: LabState):
        self.state = state

    @property
    def ovs_dir(self) -> Path:
        """Where the lab's Open vSwitch keeps its database, sockets, pid files and logs."""
        return self.state.dir / "ovs"

    @property
    def netns(self) -> str | None:
        """The name of the lab's network namespace, once made."""
        return self.state.read().get("netns")

    @property
    def openflow_socket(self) -> Path:
        """The controller's OpenFlow listening socket (Open vSwitch calls Unix sockets only
        inside its own run directory)."""
        return self.ovs_dir / "openflow.sock"

    @property
    def openflow_target(self) -> str:
        """The controller target the vRouters connect to (ovs-vsctl set-controller syntax)."""
        return f"unix:{self.openflow_socket}"

    def env(self) -> dict[str, str]:
        """Environment variables pointing ovs-vsctl, ovs-ofctl and ovs-appctl at this lab's
        Open vSwitch."""
        return {"OVS_RUNDIR": str(self.ovs_dir), "OVS_DBDIR": str(self.ovs_dir),
                "OVS_LOGDIR": str(self.ovs_dir)}

    def command(self, argv: list[str]) -> list[str]:
        """`argv` as a command run inside the lab's namespace, with the lab's Open vSwitch."""
        if not self.netns:
            raise SandboxError("the lab has no network namespace (is it up?)")
        return ["ip", "netns", "exec", self.netns, "env",
                *(f"{key}={value}" for key, value in self.env().items()), *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a command inside the lab's namespace (with `env` added to its environment) and
        return its result."""
        assignments = [f"{key}={value}" for key, value in (env or {}).items()]
        result = subprocess.run(self.command(assignments + list(argv)), capture_output=True, text=True,
                                timeout=timeout, umask=0o077)
        if check and result.returncode != 0:
            raise SandboxError(f"{' '.join(argv)} failed: {(result.stderr or result.stdout).strip()}")
        return result

    def vswitchd_pid(self) -> int | None:
        """The PID of the lab's ovs-vswitchd now (its monitor restarts it with a new one)."""
        try:
            pid = int((self.ovs_dir / "ovs-vswitchd.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if process_start_time(pid) is not None else None

    def create(self, lab_name: str) -> None:
        """Make the namespace and start Open vSwitch in it; everything is recorded first, so
        `destroy` removes it even if this fails half-way."""
        netns = self._free_netns_name(lab_name)
        with self.state.update() as record:
            record["netns"] = netns
        subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True)
        self.run("ip", "link", "set", "lo", "up")
        self.ovs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        database = self.ovs_dir / "conf.db"
        subprocess.run(["ovsdb-tool", "create", str(database), str(OVS_SCHEMA)], check=True,
                       capture_output=True, umask=0o077)
        self.run("ovsdb-server", str(database), f"--remote=punix:{self.ovs_dir / 'db.sock'}",
                 "--pidfile", "--monitor", "--detach", "--log-file", "--no-chdir")
        self._record_daemon("ovsdb-server")
        self.run("ovs-vsctl", "--no-wait", "init")
        # Revalidation rounds at least this often (ms; Open vSwitch's default is 500, and it
        # takes nothing below 100), should a change go by without starting one.
        self.run("ovs-vsctl", "--no-wait", "set", "Open_vSwitch", ".",
                 f"other_config:max-revalidator={REVALIDATION_INTERVAL_MS}")
        self.run("ovs-vswitchd", "--pidfile", "--monitor", "--detach", "--log-file", "--no-chdir",
                 env=VSWITCHD_MALLOC)
        self._record_daemon("ovs-vswitchd")
        deadline = time.monotonic() + START_TIMEOUT
        while self.run("ovs-vsctl", "--timeout=2", "show", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise SandboxError(f"the lab's Open vSwitch did not start; see {self.ovs_dir}")
            time.sleep(0.1)

    def _free_netns_name(self, lab_name: str) -> str:
        """Named after the state directory (mirrorlab, mirrorlab-e2e...), or the lab."""
        base = re.sub(r"[^a-z0-9-]", "-", self.state.dir.name.lower())[:32] or lab_name
        if not base.startswith("mirrorlab"):
            base = f"mirrorlab-{base}"
        name, n = base, 1
        while _netns_exists(name):
            n += 1
            name = f"{base}-{n}"
        return name

    def _record_daemon(self, daemon: str) -> None:
        pid = int((self.ovs_dir / f"{daemon}.pid").read_text().strip())
        monitor = _parent_pid(pid)
        with self.state.update() as record:
            record[f"{daemon}_process"] = process_record(pid)
            if monitor and monitor != 1:
                record[f"{daemon}_monitor"] = process_record(monitor)

    def destroy(self) -> list[str]:
        """Stop the lab's Open vSwitch, then anything else still running in its namespace
        (only the lab's own processes can be there), and delete the namespace; return the
        leftovers that had to be stopped."""
        record = self.state.read()
        # The monitors first, or they would restart what is stopped next.
        for kind in ("ovs-vswitchd_monitor", "ovsdb-server_monitor", "ovs-vswitchd_process",
                     "ovsdb-server_process"):
            stop_process(record.get(kind), timeout=2, sig=signal.SIGKILL)
        current = self.vswitchd_pid()  # restarted by its monitor since it was recorded
        if current is not None:
            stop_process(process_record(current), timeout=2, sig=signal.SIGKILL)
        removed = []
        netns = record.get("netns")
        if netns and _netns_exists(netns):
            pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                    removed.append(f"process {pid} in namespace {netns}")
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        return removed


def enlarge_receive_buffers(pid: int, size: int, done: set[tuple[int, str]]) -> int:
    """Give every packet socket of process `pid` (ovs-vswitchd: one per port) a receive
    buffer of `size` bytes (`SO_RCVBUFFORCE` on a copy of its descriptor, `pidfd_getfd`), but
    those in `done`, a set of (descriptor, socket) this keeps to the process's current ones;
    return how many it enlarged. Needs root; raises OSError when the process or the call is refused."""
    enlarged, present = 0, set()
    pidfd = os.pidfd_open(pid)
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed meanwhile
                continue
            key = (int(fd), target)
            present.add(key)
            if not target.startswith("socket:") or key in done:
                continue
            copy = _LIBC.syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
            if copy < 0:
                error = ctypes.get_errno()
                if error == 9:  # EBADF: closed meanwhile
                    continue
                raise OSError(error, f"pidfd_getfd of ovs-vswitchd's descriptor {fd}: {os.strerror(error)}")
            with socket.socket(fileno=copy) as sock:
                if sock.family == socket.AF_PACKET:
                    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
                    enlarged += 1
            done.add(key)
    finally:
        os.close(pidfd)
    done.intersection_update(present)
    return enlarged


class RevalidationWatch:
    """Watches the revalidation rounds of the lab's ovs-vswitchd through its control socket.

    A barrier reply only says the flow tables hold a change: the datapath keeps forwarding by
    the actions its cached flows were translated to until the revalidator threads have run.
    `next_round_end` returns at the end of the round under way, or of the next one
    (`ovs-appctl revalidator/wait`); a round that began after a change has ended by the second
    such return after it (`controller.commit.SharedRounds` shares them between requests).
    ovs-vswitchd starts a round when its flow tables change, else only every
    max-revalidator ms (100 at least); `start_round`, called once the request is sent, may
    make it start one at once. The JSON-RPC connection stays open between calls: an
    `ovs-appctl` process per call would cost milliseconds of CPU each, many times a second
    under load. Unix sockets are reached by path, so this works from any namespace."""

    def __init__(self, sandbox: Sandbox, timeout: float = REVALIDATION_TIMEOUT):
        self.sandbox = sandbox
        self.timeout = timeout
        self._lock = threading.Lock()
        self._connection: socket.socket | None = None
        self._pid: int | None = None
        self._request_id = 0

    def next_round_end(self, start_round: Callable[[], None] = lambda: None) -> None:
        """Return at the end of ovs-vswitchd's revalidation round under way or, if none is,
        of its next one; `start_round()` is called once ovs-vswitchd has the request (see the
        class). Raises `SandboxError` saying why the end could not be seen."""
        with self._lock:
            try:
                connection = self._connect()
                self._request_id += 1
                connection.sendall(json.dumps({"method": "revalidator/wait", "params": [],
                                               "id": self._request_id}).encode())
                start_round()
                reply = self._reply(connection)
            except socket.timeout:
                self._close()
                raise SandboxError(f"the lab's Open vSwitch did not revalidate its datapath flows "
                                   f"within {self.timeout:g} s") from None
            except OSError as err:
                self._close()
                raise SandboxError(f"the lab's Open vSwitch did not revalidate its datapath flows: "
                                   f"its control socket failed ({err})") from None
            if reply.get("error") is not None or reply.get("id") != self._request_id:
                self._close()
                raise SandboxError(f"the lab's Open vSwitch did not revalidate its datapath flows: "
                                   f"{reply.get('error') or f'an answer to another request: {reply}'}")

    def _connect(self) -> socket.socket:
        """The connection to the control socket of the running ovs-vswitchd (a new one after
        its monitor restarted it, with a new PID and socket)."""
        pid = self.sandbox.vswitchd_pid()
        if pid is None:
            self._close()
            raise SandboxError("the lab's Open vSwitch (ovs-vswitchd) is not running")
        if self._connection is None or pid != self._pid:
            self._close()
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.settimeout(self.timeout)
            connection.connect(str(self.sandbox.ovs_dir / f"ovs-vswitchd.{pid}.ctl"))
            self._connection, self._pid = connection, pid
        return self._connection

    def _reply(self, connection: socket.socket) -> dict:
        """One JSON-RPC message (Open vSwitch sends them back to back, with no delimiter)."""
        received = b""
        while True:
            chunk = connection.recv(4096)
            if not chunk:
                raise OSError("ovs-vswitchd closed the connection")
            received += chunk
            try:
                return json.loads(received)
            except ValueError:
                continue  # not all of it yet

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection, self._pid = None, None
