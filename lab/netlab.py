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
import signal
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import OVSBridge, OVSSwitch

from mirrorlab import topofile
from mirrorlab.sandbox import Sandbox
from mirrorlab.state import LabState, process_record
from mirrorlab.supervisor import ENCAPSULATOR, RecorderSupervisor
from mirrorlab.topology import ENCAP_PORT, FABRIC_PORT, VM, Topology, vm_from_dict

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


def _run(*args: str) -> None:
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {(result.stderr or result.stdout).strip()}")


def _purge_datapath_flows() -> None:
    """Drop the datapath's cached flows, so the next packets take the bridges' current
    configuration: after a mirror was removed, a new one's VLAN traffic otherwise keeps the
    cached mirror-less actions while it flows (seen with Open vSwitch 3.1's userspace datapath:
    a second NIC-assisted capture got no copies)."""
    _run("ovs-appctl", "revalidator/purge")


def _quiet_bridge_end(link: str) -> None:
    """Keep the lab namespace's own IPv6 off a link whose end there belongs to a bridge: its
    router solicitations would otherwise reach the VM or the fabric behind the bridge."""
    _run("sysctl", "-qw", f"net.ipv6.conf.{link}.disable_ipv6=1")


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
        """Create the fabric, the vRouters and the VMs, and start them."""
        topology, state = self.topology, self.state
        steps = 5
        net = self.net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False,
                                 waitConnected=False)

        state.progress(f"[1/{steps}] creating the fabric and {len(topology.computes)} vRouters")
        fabric = net.addSwitch(topology.fabric_bridge, cls=OVSBridge, datapath="user",
                               dpid=f"{0xfa:016x}")
        for compute in topology.computes:
            vrouter = net.addSwitch(compute.vrouter, cls=OVSSwitch, datapath="user",
                                    failMode="secure", protocols="OpenFlow13",
                                    dpid=f"{compute.dpid:016x}")
            net.addLink(vrouter, fabric, port1=FABRIC_PORT, intfName1=compute.fabric_port_name,
                        intfName2=compute.fabric_switch_port_name)

        state.progress(f"[2/{steps}] creating {len(topology.vms)} VMs")
        for count, vm in enumerate(topology.vms, 1):
            self._add_host(vm)
            if count % 25 == 0 or count == len(topology.vms):
                state.progress(f"      VMs {count}/{len(topology.vms)}")
        for probe in topology.fabric_analyzers:
            host = net.addHost(probe.name, ip=None)
            net.addLink(host, fabric, intfName1=probe.interface,
                        intfName2=probe.fabric_switch_port_name, addr1=probe.mac)

        state.progress(f"[3/{steps}] starting vRouters (userspace datapath, OpenFlow 1.3, "
                       f"controller {self.controller_target})")
        net.build()
        for host in net.hosts:
            state.add("hosts", {"name": host.name, **process_record(host.pid)})
        for switch in net.switches:
            state.add("switches", {"name": switch.name, **process_record(switch.pid)})
        net.start()
        for switch in net.switches:
            switch.cmd("ovs-vsctl set bridge", switch.name, "other_config:disable-in-band=true")
        self._connect_vrouters()
        self.pin_fabric_macs()
        for compute in topology.computes:
            for name in (compute.fabric_port_name, compute.fabric_switch_port_name):
                _quiet_bridge_end(name)
                _run("ip", "link", "set", "dev", name, "mtu", str(JUMBO_MTU))
        self._start_encapsulator()
        for vm in topology.vms:
            self._configure_vm(vm)
        for probe in topology.fabric_analyzers:
            self._configure_fabric_analyzer(probe)

    def _configure_fabric_analyzer(self, probe) -> None:
        """Give a fabric analyzer its address and jumbo MTU, and start its recorder (for its raw
        capture: what its fabric interface receives)."""
        host = self.net.get(probe.name)
        _quiet_bridge_end(probe.fabric_switch_port_name)
        _run("ip", "link", "set", "dev", probe.fabric_switch_port_name, "mtu", str(JUMBO_MTU))
        host.cmd(f"sysctl -qw net.ipv6.conf.all.disable_ipv6=1 ; "
                 f"ip link set dev {probe.interface} mtu {JUMBO_MTU} up ; "
                 f"ip addr add {probe.ip}/{self.topology.fabric_subnet.prefixlen} dev {probe.interface} ; "
                 f"ethtool -K {probe.interface} tx off tso off gso off >/dev/null 2>&1")
        command = [sys.executable, "-m", "mirrorlab.recorder", "--interface", probe.interface,
                   "--directory", str(self.state.captures_dir)]
        self.recorders[probe.name] = RecorderSupervisor(
            probe.name, lambda log: host.popen(command, stdout=log, stderr=log), self.state).start()

    def _start_encapsulator(self) -> None:
        """Link every vRouter's ENCAP_PORT to the lab's mirror encapsulator (lab/encapsulator.py),
        and start it, supervised like the recorders."""
        for compute in self.topology.computes:
            port, peer = compute.encap_port_name, compute.encapsulator_interface
            _run("ip", "link", "add", port, "mtu", str(JUMBO_MTU), "type", "veth", "peer", "name",
                 peer, "mtu", str(JUMBO_MTU))
            for name in (port, peer):
                _quiet_bridge_end(name)
                _run("ethtool", "-K", name, "tx", "off", "tso", "off", "gso", "off")
                _run("ip", "link", "set", "dev", name, "up")
            _run("ovs-vsctl", "add-port", compute.vrouter, port, "--", "set", "Interface", port,
                 f"ofport_request={ENCAP_PORT}")
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

    def keep_fabric_pinned(self, sandbox: Sandbox, stopping: threading.Event) -> None:
        """Pin the fabric's entries again whenever the lab's ovs-vswitchd was restarted."""
        pinned_for = sandbox.vswitchd_pid()
        while not stopping.wait(0.5):
            current = sandbox.vswitchd_pid()
            if current is None or current == pinned_for:
                continue
            try:
                self.pin_fabric_macs()
                pinned_for = current
                LOG.info("ovs-vswitchd restarted (pid %d); fabric entries pinned again", current)
            except RuntimeError as err:  # its bridges are not back yet: next round
                LOG.info("fabric entries not pinned yet: %s", err)

    def _connect_vrouters(self) -> None:
        """Point every vRouter at the controller, in one transaction."""
        command = ["ovs-vsctl"]
        for compute in self.topology.computes:
            command += ["--", f"--id=@c{compute.index}", "create", "Controller",
                        f'target="{self.controller_target}"', f"max_backoff={RECONNECT_MS}",
                        "--", "set", "Bridge", compute.vrouter, f"controller=@c{compute.index}"]
        _run(*command)

    def _add_host(self, vm: VM):
        host = self.net.addHost(vm.name, ip=None)
        vrouter = self.net.get(self.topology.compute(vm.compute).vrouter)
        for interface in vm.interfaces:
            self.net.addLink(host, vrouter, port2=interface.ofport, intfName1=interface.name,
                             intfName2=interface.port_name, addr1=interface.mac)
        return host

    def _configure_vm(self, vm: VM) -> None:
        host = self.net.get(vm.name)
        commands = ["sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0"]
        for interface in vm.interfaces:
            mtu = JUMBO_MTU if vm.analyzer else 1500
            commands += [
                f"ip link set dev {interface.name} mtu {mtu} up",
                f"ip addr add {interface.ip}/{interface.prefixlen} dev {interface.name}",
                # The userspace datapath cannot finish checksums or segment TCP for a veth.
                f"ethtool -K {interface.name} tx off tso off gso off >/dev/null 2>&1",
            ]
            if interface.ip6:
                commands.append(f"ip -6 addr add {interface.ip6}/{interface.prefixlen6} "
                                f"dev {interface.name} nodad")
            _run("ethtool", "-K", interface.port_name, "tx", "off", "tso", "off", "gso", "off")
            _quiet_bridge_end(interface.port_name)
            _run("ip", "link", "set", "dev", interface.port_name, "mtu", str(mtu), "up")
        # As Contrail's DHCP does: a guest's first interface's network gateway (.1, the
        # vRouter) is its default route, which network policies may let reach other networks.
        # An analyzer gets none: it only receives, and with a route its kernel would answer
        # the copies (ICMP port unreachable to the vRouters), which its own captures then show.
        if not vm.analyzer:
            first = vm.interfaces[0]
            commands.append(f"ip route add default via {first.gateway} dev {first.name}")
        host.cmd(" ; ".join(commands))
        if vm.analyzer:
            self.state.captures_dir.mkdir(parents=True, exist_ok=True)
            command = [sys.executable, "-m", "mirrorlab.recorder", "--interface", vm.interfaces[0].name,
                       "--directory", str(self.state.captures_dir)]
            self.recorders[vm.name] = RecorderSupervisor(
                vm.name, lambda log: host.popen(command, stdout=log, stderr=log), self.state).start()

    def add_vm(self, vm: VM) -> None:
        """Create and start a VM (an analyzer) on a running lab."""
        with self.lock:
            if vm.name in self.net.nameToNode:
                raise ValueError(f"vm '{vm.name}' exists already")
            # Mininet deletes an existing interface of the same name before it makes a link.
            taken = [i.port_name for i in vm.interfaces if Path(f"/sys/class/net/{i.port_name}").exists()]
            if taken:
                raise ValueError(f"port(s) {', '.join(taken)} exist already; not replacing them")
            host = self._add_host(vm)
            self.state.add("hosts", {"name": vm.name, **process_record(host.pid)})
            vrouter = self.topology.compute(vm.compute).vrouter
            for interface in vm.interfaces:
                _run("ovs-vsctl", "add-port", vrouter, interface.port_name, "--", "set",
                     "Interface", interface.port_name, f"ofport_request={interface.ofport}")
            self._configure_vm(vm)
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
        """Ping around a ring of each network's VMs until every VM reaches its next peer."""
        pairs = []
        for network in self.topology.networks:
            members = [i for i in self.topology.interfaces() if i.network == network.name]
            if len(members) < 2:
                continue
            for source, target in zip(members, members[1:] + members[:1]):
                pairs.append((source, target))
        self.state.progress(f"[5/5] checking reachability: {len(pairs)} VM pairs")
        script = ("end=$(($(date +%s)+{timeout})); while [ $(date +%s) -lt $end ]; do "
                  "ping -c1 -W1 -q {ip} >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1")
        pending = {}
        for source, target in pairs:
            host = self.net.get(source.vm)
            pending[(source.name, target.name)] = host.popen(
                ["sh", "-c", script.format(timeout=int(READY_TIMEOUT), ip=target.ip)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        failed = []
        for done, (pair, process) in enumerate(pending.items(), 1):
            if process.wait() != 0:
                failed.append(pair)
            if done % 25 == 0 or done == len(pending):
                self.state.progress(f"      reachable {done - len(failed)}/{len(pending)}")
        for source, target in failed:
            self.state.progress(f"      UNREACHABLE: {source} -> {target}")
        return not failed

    def stop(self) -> None:
        """Tear down everything Mininet made for this lab."""
        with self.lock:
            for supervisor in self.recorders.values():
                supervisor.stop()
            self.recorders.clear()
            if self.encapsulator is not None:
                self.encapsulator.stop()
                self.encapsulator = None
            if self.net is not None:
                self.net.stop()
                self.net = None


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
        threading.Thread(target=lab.keep_fabric_pinned, args=(sandbox, stopping),
                         name="fabric-pins", daemon=True).start()
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
