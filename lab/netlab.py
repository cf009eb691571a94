"""The lab process: brings a `Topology` up in Mininet and keeps it running.

vRouters are Open vSwitch bridges in the userspace datapath (this machine has no OVS kernel
module), in secure fail mode, speaking OpenFlow 1.3 to the controller. The fabric is a plain
learning OVS bridge joining every vRouter's uplink. Guest and analyzer VMs are Mininet hosts.

Run by `mirrorlab up` inside the lab's own network namespace, with the lab's own Open vSwitch
(`lab.sandbox`); it records the processes it starts in the lab state, answers a control socket
(used by the controller to add analyzer VMs), and tears the lab down on SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mininet.link import Intf, Link
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import Host, OVSBridge, OVSSwitch

from mirrorlab import topofile
from mirrorlab.sandbox import VSWITCHD_RECEIVE_BUFFER, Sandbox, enlarge_receive_buffers
from mirrorlab.state import LabState, process_record
from mirrorlab.supervisor import ENCAPSULATOR, RecorderSupervisor
from mirrorlab.topology import ENCAP_PORT, FABRIC_PORT, VM, FabricAnalyzer, Topology, vm_from_dict

LOG = logging.getLogger("mirrorlab.lab")
# Overlay frames carry 18 extra bytes and mirrored copies 18 more (and their Juniper header
# some 50): the fabric, encapsulator and analyzer links get jumbo MTUs so no full-size guest
# frame is ever dropped on the way.
JUMBO_MTU = 9000
READY_TIMEOUT = 90.0
LINK_UP_TIMEOUT = 10.0  # seconds for Open vSwitch to see a new VM port up
# How soon a vRouter calls the controller again after losing it (ms; Open vSwitch's least):
# a restarted controller gets its vRouters back within a second.
RECONNECT_MS = 1000
# Host shells started at a time: a start mostly waits (for a new namespace, bash, its prompt),
# so a few at once overlap the waits; more would only queue for the CPUs.
HOST_START_WORKERS = 8
# Hosts running their set-up line at a time (each line runs a few ip/ethtool processes).
SETUP_WINDOW = 32
# The reachability check: seconds between a VM's pings of a peer it does not reach yet, and how
# many VMs ping at a time (until the controller has programmed the vRouters, every ping fails
# and is tried again: a thousand VMs retrying at once starved the controller of CPU).
PING_PAUSE = 0.2
REACHABILITY_WINDOW = 64
# Tear-down waits for the kernel to delete the VMs' links, but not once none went for this long:
# a process someone started in a VM keeps its namespace, and the links, until the lab's goes.
LINKS_GONE_STALL = 2.0
# The userspace datapath cannot finish checksums or segment TCP for a veth.
OFFLOADS_OFF = ("tx", "off", "tso", "off", "gso", "off")


def _run(*args: str, input: str | None = None) -> None:
    result = subprocess.run(args, capture_output=True, text=True, input=input)
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {(result.stderr or result.stdout).strip()}")


def _purge_datapath_flows() -> None:
    """Drop the datapath's cached flows, so the next packets take the bridges' current
    configuration: after a mirror was removed, a new one's VLAN traffic otherwise keeps the
    cached mirror-less actions while it flows (seen with Open vSwitch 3.1's userspace datapath:
    a second NIC-assisted capture got no copies)."""
    _run("ovs-appctl", "revalidator/purge")


def _quiet_bridge_ends(links: list[str]) -> None:
    """Keep the lab namespace's own IPv6 off links whose end there belongs to a bridge: their
    router solicitations would otherwise reach the VM or the fabric behind the bridge."""
    if links:
        _run("sysctl", "-qw", *(f"net.ipv6.conf.{link}.disable_ipv6=1" for link in links))


def _links_present(names: set[str]) -> set[str]:
    """Which of the links `names` exist in the lab's namespace (the one this process runs in)."""
    return names & set(os.listdir("/sys/class/net"))


class LabHost(Host):
    """A Mininet host (a VM or a fabric analyzer) that the lab configures itself, loopback
    included, with one shell line per host (`LabNetwork._setup`), all hosts at once: Mininet's
    own configuration is one `ifconfig lo up` round trip per host, one host after another."""

    def config(self, **_params) -> dict:
        """Nothing: see the class."""
        return {}


class PreparedIntf(Intf):
    """A Mininet interface whose device `LinkBatch` made and configured: Mininet only keeps
    track of it (its own configuration runs several commands per interface, one at a time)."""

    def config(self, **_params) -> dict:
        """Nothing: see the class."""
        return {}


class PreparedLink(Link):
    """A Mininet link whose veth pair `LinkBatch` makes, together with every other pair."""

    def __init__(self, node1, node2, **params):
        params["intf"] = PreparedIntf
        super().__init__(node1, node2, **params)

    def makeIntfPair(self, *_args, **_kwargs) -> None:
        """Nothing: `LinkBatch` makes the pair."""


class LinkBatch:
    """veth pairs made and configured together, with a handful of commands whatever their
    number: one `ip -batch` creates them all (MTU and MAC addresses included, a VM's end
    straight in the VM's namespace), one `sysctl` quiets every end in the lab's namespace
    (see `_quiet_bridge_ends`), `ethtool` turns offloads off where asked, one `ip -batch`
    sets the lab's ends up. The VM's end is set up by the VM's own set-up line."""

    def __init__(self):
        self.creates: list[str] = []
        self.lab_ends: list[str] = []
        self.offloads_off: list[str] = []

    def add(self, name: str, peer: str, mtu: int, *, mac: str | None = None,
            peer_mac: str | None = None, peer_host: Host | None = None,
            offloads_off: tuple[str, ...] = ()) -> None:
        """A veth pair: `name` in the lab's namespace, `peer` in `peer_host`'s (or the lab's
        too, without one); `offloads_off` names the lab-namespace ends to turn offloads off on."""
        address = f" address {mac}" if mac else ""
        peer_address = f" address {peer_mac}" if peer_mac else ""
        where = f" netns {peer_host.pid}" if peer_host is not None else ""
        self.creates.append(f"link add name {name}{address} mtu {mtu} type veth "
                            f"peer name {peer}{peer_address} mtu {mtu}{where}")
        self.lab_ends += [name] if peer_host is not None else [name, peer]
        self.offloads_off += offloads_off

    def add_link(self, link: Link, mtu: int, offloads_off: bool = False) -> None:
        """The veth pair of a `PreparedLink` (its second end is a switch's, in the lab's
        namespace), with the MAC addresses Mininet recorded for it."""
        lab_end, far_end = link.intf2, link.intf1
        host = far_end.node if far_end.node.inNamespace else None
        self.add(lab_end.name, far_end.name, mtu, mac=lab_end.mac, peer_mac=far_end.mac,
                 peer_host=host, offloads_off=(lab_end.name,) if offloads_off else ())

    def run(self) -> None:
        """Make and configure every pair added; raises `RuntimeError` naming what failed."""
        if not self.creates:
            return
        _run("ip", "-batch", "-", input="\n".join(self.creates) + "\n")
        _quiet_bridge_ends(self.lab_ends)
        if self.offloads_off:
            _run("xargs", "-r", "-I{}", "ethtool", "-K", "{}", *OFFLOADS_OFF,
                 input="\n".join(self.offloads_off) + "\n")
        _run("ip", "-batch", "-", input="".join(f"link set dev {name} up\n" for name in self.lab_ends))


def run_in_hosts(commands: list[tuple[Host, str]], window: int) -> list[str]:
    """Run one shell line in each host, `window` hosts at a time, through the hosts' own
    shells (Mininet's sendCmd/waitOutput: no new process per command); return the outputs in
    order. A host appears at most once."""
    outputs: list[str] = [""] * len(commands)
    running: deque[int] = deque()
    for index, (host, line) in enumerate(commands):
        if len(running) >= window:
            done = running.popleft()
            outputs[done] = commands[done][0].waitOutput()
        host.sendCmd(line)
        running.append(index)
    while running:
        done = running.popleft()
        outputs[done] = commands[done][0].waitOutput()
    return outputs


class LabNetwork:
    """A topology brought up in Mininet, with every created resource recorded in `state`."""

    def __init__(self, topology: Topology, state: LabState, controller_target: str):
        self.topology = topology
        self.state = state
        self.controller_target = controller_target
        self.net: Mininet | None = None
        self.lock = threading.Lock()
        self.recorders: dict[str, RecorderSupervisor] = {}  # by analyzer VM name
        self.encapsulator: RecorderSupervisor | None = None

    def recorder_health(self) -> dict[str, dict]:
        """The health of each analyzer VM's recorder (see `RecorderSupervisor.health`), and of
        the mirror encapsulator under ENCAPSULATOR."""
        health = {vm: supervisor.health() for vm, supervisor in list(self.recorders.items())}
        if self.encapsulator is not None:
            health[ENCAPSULATOR] = self.encapsulator.health()
        return health

    def build(self) -> None:
        """Create the fabric, the vRouters and the VMs, and start them. Everything of a kind
        is made at once: the host shells several at a time, every veth pair in one batch
        (`LinkBatch`), every bridge and port in one Open vSwitch transaction (Mininet's batch
        start), and each host's configuration in one shell line, many hosts at a time."""
        topology, state = self.topology, self.state
        steps = 5
        net = self.net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False,
                                 waitConnected=False)
        links = LinkBatch()

        state.progress(f"[1/{steps}] creating the fabric and {len(topology.computes)} vRouters")
        fabric = net.addSwitch(topology.fabric_bridge, cls=OVSBridge, datapath="user",
                               dpid=f"{0xfa:016x}", batch=True)
        for compute in topology.computes:
            vrouter = net.addSwitch(compute.vrouter, cls=OVSSwitch, datapath="user",
                                    failMode="secure", protocols="OpenFlow13",
                                    dpid=f"{compute.dpid:016x}", batch=True)
            links.add_link(net.addLink(vrouter, fabric, cls=PreparedLink, port1=FABRIC_PORT,
                                       intfName1=compute.fabric_port_name,
                                       intfName2=compute.fabric_switch_port_name), JUMBO_MTU)
            # The link to the mirror encapsulator: its vRouter end is a port Mininet adds with
            # the others; the other end is the encapsulator's (a process in the lab's namespace).
            PreparedIntf(compute.encap_port_name, node=vrouter, port=ENCAP_PORT)
            links.add(compute.encap_port_name, compute.encapsulator_interface, JUMBO_MTU,
                      offloads_off=(compute.encap_port_name, compute.encapsulator_interface))
        state.add("switches", *({"name": switch.name, **process_record(switch.pid)}
                                for switch in net.switches))

        state.progress(f"[2/{steps}] creating {len(topology.vms)} VMs")
        self._start_hosts([vm.name for vm in topology.vms]
                          + [probe.name for probe in topology.fabric_analyzers])
        for vm in topology.vms:
            self._add_links(vm, links)
        for probe in topology.fabric_analyzers:
            links.add_link(net.addLink(net.get(probe.name), fabric, cls=PreparedLink,
                                       intfName1=probe.interface,
                                       intfName2=probe.fabric_switch_port_name,
                                       addr1=probe.mac), JUMBO_MTU)
        links.run()
        state.progress(f"      VMs {len(topology.vms)}/{len(topology.vms)}")

        state.progress(f"[3/{steps}] starting vRouters (userspace datapath, OpenFlow 1.3, "
                       f"controller {self.controller_target})")
        net.build()
        net.start()
        # The VMs before the controller: what a VM sends as its interfaces come up (IPv6 router
        # solicitations, neighbour discovery, MLD reports: flooded to every VM of its network
        # once the vRouters are programmed) is then dropped by the vRouters, and the controller
        # programs a quiet network.
        self._setup(topology.vms, topology.fabric_analyzers)
        self._connect_vrouters()
        self.pin_fabric_macs()
        self._start_encapsulator()

    def _start_hosts(self, names: list[str]) -> list[Host]:
        """Start the shells of new hosts, several at a time, add them to the network in the
        order given and record them. Raises the first error once every host that did start is
        added and recorded (so that `stop` and `down` stop it)."""
        with ThreadPoolExecutor(max_workers=HOST_START_WORKERS) as pool:
            starts = [pool.submit(LabHost, name, ip=None) for name in names]
        hosts, errors = [], []
        for start in starts:
            try:
                host = start.result()
            except Exception as err:  # every other start has finished: raise after adding them
                errors.append(err)
                continue
            # addHost makes its host with `cls`: here, one that hands over the host started.
            hosts.append(self.net.addHost(host.name, cls=lambda _name, _host=host, **_: _host))
        self.state.add("hosts", *({"name": host.name, **process_record(host.pid)} for host in hosts))
        if errors:
            raise errors[0]
        return hosts

    def _add_links(self, vm: VM, links: LinkBatch) -> None:
        """Add the links of `vm` (a started host) to its vRouter, to be made by `links`."""
        host = self.net.get(vm.name)
        vrouter = self.net.get(self.topology.compute(vm.compute).vrouter)
        mtu = JUMBO_MTU if vm.analyzer else 1500
        for interface in vm.interfaces:
            links.add_link(self.net.addLink(host, vrouter, cls=PreparedLink, port2=interface.ofport,
                                            intfName1=interface.name,
                                            intfName2=interface.port_name, addr1=interface.mac),
                           mtu, offloads_off=True)

    def _setup(self, vms: Sequence[VM], probes: Sequence[FabricAnalyzer] = ()) -> None:
        """Configure VMs and fabric analyzers (one shell line each, in their own shells, many at
        a time), then start the recorders of those that are analyzers."""
        run_in_hosts([(self.net.get(vm.name), self._vm_setup_line(vm)) for vm in vms]
                     + [(self.net.get(probe.name), self._fabric_analyzer_setup_line(probe))
                        for probe in probes], SETUP_WINDOW)
        for vm in vms:
            if vm.analyzer:
                self._start_recorder(vm.name, vm.interfaces[0].name)
        for probe in probes:
            # For its raw capture: what its fabric interface receives.
            self._start_recorder(probe.name, probe.interface)

    def _vm_setup_line(self, vm: VM) -> str:
        """The shell line that configures `vm` inside it: loopback, addresses, offloads."""
        commands = ["ip link set dev lo up",
                    "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0"]
        for interface in vm.interfaces:
            mtu = JUMBO_MTU if vm.analyzer else 1500
            commands += [
                f"ip link set dev {interface.name} mtu {mtu} up",
                f"ip addr add {interface.ip}/{interface.prefixlen} dev {interface.name}",
                f"ethtool -K {interface.name} {' '.join(OFFLOADS_OFF)} >/dev/null 2>&1",
            ]
            if interface.ip6:
                commands.append(f"ip -6 addr add {interface.ip6}/{interface.prefixlen6} "
                                f"dev {interface.name} nodad")
        # As Contrail's DHCP does: a guest's first interface's network gateway (.1 and ::1,
        # the vRouter) is its default route, which network policies may let reach other
        # networks. An analyzer gets none: it only receives, and with a route its kernel would
        # answer the copies (ICMP port unreachable to the vRouters), which its own captures
        # then show.
        if not vm.analyzer:
            first = vm.interfaces[0]
            commands.append(f"ip route add default via {first.gateway} dev {first.name}")
            if first.gateway6 is not None:
                commands.append(f"ip -6 route add default via {first.gateway6} dev {first.name}")
        return " ; ".join(commands)

    def _fabric_analyzer_setup_line(self, probe: FabricAnalyzer) -> str:
        """The shell line that gives a fabric analyzer its address and jumbo MTU."""
        return (f"ip link set dev lo up ; sysctl -qw net.ipv6.conf.all.disable_ipv6=1 ; "
                f"ip link set dev {probe.interface} mtu {JUMBO_MTU} up ; "
                f"ip addr add {probe.ip}/{self.topology.fabric_subnet.prefixlen} dev {probe.interface} ; "
                f"ethtool -K {probe.interface} {' '.join(OFFLOADS_OFF)} >/dev/null 2>&1")

    def _start_recorder(self, name: str, interface: str) -> None:
        """Start the recorder of host `name` (an analyzer VM or a fabric analyzer) on its
        `interface`, supervised."""
        host = self.net.get(name)
        self.state.captures_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "mirrorlab.recorder", "--interface", interface,
                   "--directory", str(self.state.captures_dir)]
        self.recorders[name] = RecorderSupervisor(
            name, lambda log: host.popen(command, stdout=log, stderr=log), self.state).start()

    def _start_encapsulator(self) -> None:
        """Start the lab's mirror encapsulator (lab/encapsulator.py) on its links to every
        vRouter's ENCAP_PORT, supervised like the recorders."""
        self.state.captures_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "mirrorlab.encapsulator", "--directory",
                   str(self.state.captures_dir)]
        for compute in self.topology.computes:
            command += ["--interface", compute.encapsulator_interface]
        self.encapsulator = RecorderSupervisor(
            ENCAPSULATOR, lambda log: subprocess.Popen(command, stdout=log, stderr=log),
            self.state, name=ENCAPSULATOR).start()

    def pin_fabric_macs(self) -> None:
        """Static fabric entries for every compute node and fabric analyzer: one that only
        receives (an analyzer's, a VTEP's) would never be learned, and every frame to it would
        be flooded to all compute nodes.
        They live in ovs-vswitchd's memory only, so they are pinned again after a restart."""
        for compute in self.topology.computes:
            _run("ovs-appctl", "fdb/add", self.topology.fabric_bridge,
                 compute.fabric_switch_port_name, "0", compute.fabric_mac)
        for probe in self.topology.fabric_analyzers:
            _run("ovs-appctl", "fdb/add", self.topology.fabric_bridge,
                 probe.fabric_switch_port_name, "0", probe.mac)

    def watch_vswitchd(self, sandbox: Sandbox, stopping: threading.Event) -> None:
        """Keep the lab's ovs-vswitchd set up as the lab needs it, twice a second: pin the
        fabric's entries again whenever it was restarted, and give each packet socket it opens
        (a port's, at bring-up, for a new analyzer, after a restart) a receive buffer of
        VSWITCHD_RECEIVE_BUFFER bytes (see `mirrorlab.sandbox.enlarge_receive_buffers`)."""
        pinned_for = sandbox.vswitchd_pid()
        enlarged_for, enlarged, refused = None, set(), None
        while True:
            current = sandbox.vswitchd_pid()
            if current is not None and current != pinned_for:
                try:
                    self.pin_fabric_macs()
                    pinned_for = current
                    LOG.info("ovs-vswitchd restarted (pid %d); fabric entries pinned again", current)
                except RuntimeError as err:  # its bridges are not back yet: next round
                    LOG.info("fabric entries not pinned yet: %s", err)
            if current is not None:
                if current != enlarged_for:
                    enlarged_for, enlarged = current, set()
                try:
                    count = enlarge_receive_buffers(current, VSWITCHD_RECEIVE_BUFFER, enlarged)
                    if count:
                        LOG.info("receive buffers of %d ovs-vswitchd sockets set to %d bytes",
                                 count, VSWITCHD_RECEIVE_BUFFER)
                except OSError as err:  # said once; forwarding works, with smaller buffers
                    if str(err) != refused:
                        refused = str(err)
                        LOG.warning("receive buffers of ovs-vswitchd left as they are: %s", err)
            if stopping.wait(0.5):
                return

    def _connect_vrouters(self) -> None:
        """Point every vRouter at the controller, in one transaction."""
        command = ["ovs-vsctl"]
        for compute in self.topology.computes:
            command += ["--", f"--id=@c{compute.index}", "create", "Controller",
                        f'target="{self.controller_target}"', f"max_backoff={RECONNECT_MS}",
                        "--", "set", "Bridge", compute.vrouter, f"controller=@c{compute.index}"]
        _run(*command)

    def add_vm(self, vm: VM) -> None:
        """Create and start a VM (an analyzer) on a running lab."""
        with self.lock:
            if vm.name in self.net.nameToNode:
                raise ValueError(f"vm '{vm.name}' exists already")
            # Refused before anything is made: the batch would stop half-way on an existing port.
            taken = [i.port_name for i in vm.interfaces if Path(f"/sys/class/net/{i.port_name}").exists()]
            if taken:
                raise ValueError(f"port(s) {', '.join(taken)} exist already; not replacing them")
            self._start_hosts([vm.name])
            links = LinkBatch()
            self._add_links(vm, links)
            links.run()
            vrouter = self.topology.compute(vm.compute).vrouter
            command = ["ovs-vsctl"]
            for interface in vm.interfaces:
                command += ["--", "add-port", vrouter, interface.port_name, "--", "set",
                            "Interface", interface.port_name, f"ofport_request={interface.ofport}"]
            _run(*command)
            self._setup([vm])
            self.topology = self.topology.with_vm(vm)
            # A capture starts as soon as this returns: its first copies must find the ports up
            # (Open vSwitch drops what it sends on a port before it sees the link up) and the
            # recorder listening (one that does not come up shows in its health).
            for interface in vm.interfaces:
                _run("ovs-vsctl", f"--timeout={LINK_UP_TIMEOUT:.0f}", "wait-until", "Interface",
                     interface.port_name, "link_state=up")
            if vm.analyzer:
                self.recorders[vm.name].wait_listening()

    def remove_vm(self, name: str) -> None:
        """Stop a VM added by `add_vm` and remove its ports."""
        with self.lock:
            host = self.net.get(name)
            vm = self.topology.vm(name)
            vrouter = self.topology.compute(vm.compute).vrouter
            supervisor = self.recorders.pop(name, None)
            if supervisor is not None:
                supervisor.stop()
            for interface in vm.interfaces:
                subprocess.run(["ovs-vsctl", "--if-exists", "del-port", vrouter, interface.port_name],
                               check=False)
            host.stop(deleteIntfs=True)
            self.net.hosts.remove(host)
            del self.net.nameToNode[name]
            self.state.forget("hosts", name)
            self.topology = self.topology.without_vm(name)

    def nic_mirrors(self) -> list[str]:
        """The names of the fabric switch's mirrors (NIC-assisted captures')."""
        result = subprocess.run(["ovs-vsctl", "--bare", "--columns=name", "list", "Mirror"],
                                capture_output=True, text=True, check=True)
        return [name for name in result.stdout.split() if name.startswith("nic-")]

    def add_nic_mirror(self, name: str, vlan: int, fabric_analyzer: str) -> None:
        """Emulate a compute node's NIC mirroring a VLAN: an OVS Mirror on the fabric switch
        selecting `vlan`, output to the port of `fabric_analyzer`. The compute nodes' fabric
        MACs are pinned in that VLAN too, so its frames are never flooded."""
        with self.lock:
            probe = self.topology.fabric_analyzer(fabric_analyzer)
            bridge = self.topology.fabric_bridge
            for compute in self.topology.computes:
                _run("ovs-appctl", "fdb/add", bridge, compute.fabric_switch_port_name, str(vlan),
                     compute.fabric_mac)
            _run("ovs-vsctl", "--", f"--id=@p", "get", "Port", probe.fabric_switch_port_name,
                 "--", "--id=@m", "create", "Mirror", f"name={name}", "select_all=true",
                 f"select_vlan={vlan}", "output_port=@p", "--", "add", "Bridge", bridge,
                 "mirrors", "@m")
            _purge_datapath_flows()

    def remove_nic_mirror(self, name: str) -> None:
        """Remove the fabric switch's mirror `name`."""
        with self.lock:
            _run("ovs-vsctl", "--", "--id=@m", "get", "Mirror", name, "--", "remove", "Bridge",
                 self.topology.fabric_bridge, "mirrors", "@m")
            _purge_datapath_flows()

    def wait_reachable(self) -> bool:
        """Ping around a ring of each network's VMs until every VM reaches its next peer (or
        READY_TIMEOUT passes): each pair pings until the first reply, from the source VM's own
        shell (no process of ours per pair), REACHABILITY_WINDOW VMs at a time."""
        pairs = []
        for network in self.topology.networks:
            members = [i for i in self.topology.interfaces() if i.network == network.name]
            if len(members) < 2:
                continue
            for source, target in zip(members, members[1:] + members[:1]):
                pairs.append((source, target))
        self.state.progress(f"[5/5] checking reachability: {len(pairs)} VM pairs")
        by_vm: dict[str, list] = {}
        for source, target in pairs:
            by_vm.setdefault(source.vm, []).append((source, target))
        # Again after a failure (ping gives up at once on an address whose ARP went unanswered,
        # whatever its deadline), until one deadline for all ($EPOCHSECONDS: bash's own clock).
        deadline = int(time.time() + READY_TIMEOUT)
        retry = ("until ping -c1 -W1 -q {ip} >/dev/null 2>&1; do "
                 f"[ $EPOCHSECONDS -lt {deadline} ] || exit 1; sleep {PING_PAUSE}; done")
        commands = []
        for vm, vm_pairs in by_vm.items():
            # In a subshell, so that the VM's interactive shell prints no job numbers.
            pings = " ".join(f"( ( {retry.format(ip=target.ip)} ) ; echo {source.name} {target.name} $? ) &"
                             for source, target in vm_pairs)
            commands.append((self.net.get(vm), f"( {pings} wait )"))
        reached = set()
        for done, output in enumerate(run_in_hosts(commands, REACHABILITY_WINDOW), 1):
            for line in output.splitlines():
                fields = line.split()
                if len(fields) == 3 and fields[2] == "0":
                    reached.add((fields[0], fields[1]))
            if done % 25 == 0 or done == len(commands):
                self.state.progress(f"      reachable {len(reached)}/{len(pairs)}")
        # A pair is unreachable unless its ping said otherwise (a VM whose shell died says nothing).
        unreachable = [(s.name, t.name) for s, t in pairs if (s.name, t.name) not in reached]
        for source, target in unreachable:
            self.state.progress(f"      UNREACHABLE: {source} -> {target}")
        return not unreachable

    def stop(self) -> None:
        """Tear down what this process made: stop the recorders and the encapsulator, then
        every host's and switch's shell at once, and wait until the kernel has deleted the
        VMs' namespaces with their links. The bridges go with the lab's Open vSwitch and
        namespace (`mirrorlab.sandbox`), which the driver removes next: deleting them port by
        port (Mininet's stop) takes Open vSwitch a reconfiguration per port."""
        with self.lock:
            for supervisor in self.recorders.values():
                supervisor.stop()
            self.recorders.clear()
            if self.encapsulator is not None:
                self.encapsulator.stop()
                self.encapsulator = None
            if self.net is not None:
                self._stop_shells()
                self.net = None

    def _stop_shells(self) -> None:
        """Hang up every host's and switch's shell (as Mininet's terminate does) at once, wait
        for them, then wait for the kernel to delete the links of the hosts' namespaces: their
        ends in the lab's namespace vanish with them."""
        nodes = self.net.hosts + self.net.switches
        host_ends = {intf.link.intf2.name for host in self.net.hosts for intf in host.intfList()
                     if intf.link is not None}
        for node in nodes:
            if node.shell is not None and node.shell.poll() is None:
                try:
                    os.killpg(node.pid, signal.SIGHUP)
                except ProcessLookupError:
                    pass
        for node in nodes:
            node.terminate()
        started = time.monotonic()
        remaining, progress_at = _links_present(host_ends), started
        while remaining and time.monotonic() - progress_at < LINKS_GONE_STALL:
            time.sleep(0.05)
            now_remaining = _links_present(remaining)
            if len(now_remaining) < len(remaining):
                progress_at = time.monotonic()
            remaining = now_remaining
        LOG.log(logging.WARNING if remaining else logging.INFO,
                "%d host and switch shells stopped; %d of %d VM links gone %.1f s later%s",
                len(nodes), len(host_ends) - len(remaining), len(host_ends),
                time.monotonic() - started, " (a process in a VM keeps its namespace: the rest go "
                "with the lab's namespace)" if remaining else "")


class _ControlHandler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            try:
                request = json.loads(line)
                operation = request.get("op")
                reply = {"ok": True}
                if operation == "add_vm":
                    self.server.lab.add_vm(vm_from_dict(request["vm"]))
                elif operation == "remove_vm":
                    self.server.lab.remove_vm(request["name"])
                elif operation == "recorders":
                    reply["recorders"] = self.server.lab.recorder_health()
                elif operation == "nic_mirrors":
                    reply["mirrors"] = self.server.lab.nic_mirrors()
                elif operation == "add_nic_mirror":
                    self.server.lab.add_nic_mirror(request["name"], int(request["vlan"]),
                                                   request["fabric_analyzer"])
                elif operation == "remove_nic_mirror":
                    self.server.lab.remove_nic_mirror(request["name"])
                elif operation != "ping":
                    raise ValueError(f"unknown operation '{operation}'")
            except Exception as err:  # reported to the caller, the lab keeps running
                LOG.exception("control request failed")
                reply = {"ok": False, "error": str(err)}
            self.wfile.write((json.dumps(reply) + "\n").encode())


class _ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main(argv: list[str] | None = None) -> int:
    """Entry point of the lab process."""
    parser = argparse.ArgumentParser(prog="python -m mirrorlab.netlab")
    parser.add_argument("--topology", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    setLogLevel("warning")
    # Mininet makes every logger created after its import one of its own, at its level: ours
    # would drop its INFO lines.
    LOG.setLevel(logging.INFO)
    state = LabState()
    topology = topofile.load(args.topology)
    sandbox = Sandbox(state)
    lab = LabNetwork(topology, state, sandbox.openflow_target)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    try:
        lab.build()
        state.socket_path.unlink(missing_ok=True)
        server = _ControlServer(str(state.socket_path), _ControlHandler)
        server.lab = lab
        threading.Thread(target=server.serve_forever, daemon=True).start()
        threading.Thread(target=lab.watch_vswitchd, args=(sandbox, stopping),
                         name="vswitchd-watch", daemon=True).start()
        state.progress("[4/5] waiting for the controller to program the vRouters")
        if not lab.wait_reachable():
            state.progress("FAILED: some VMs cannot reach their peers (see above)")
        else:
            state.progress("READY")
    except Exception as err:
        LOG.exception("bring-up failed")
        state.progress(f"FAILED: {err}")
        lab.stop()
        return 1
    while not stopping.wait(1.0):
        pass
    state.progress("stopping")
    lab.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
