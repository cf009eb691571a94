"""End-to-end: the emulated cloud itself (bring-up, forwarding, isolation, overlay, controller
restart, status and exec, clean tear-down)."""
from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from scapy.all import ICMP, IP, Ether, rdpcap
from scapy.contrib.mpls import MPLS

from mirrorlab.controller.pipeline import FORWARD
from mirrorlab.sandbox import VSWITCHD_MALLOC, VSWITCHD_RECEIVE_BUFFER, Sandbox
from tests.e2e.conftest import ARTIFACTS, STATE_DIR, TOPOLOGY


def ping_ok(lab, vm: str, target: str, count: int = 3, six: bool = False) -> bool:
    """Whether `vm` gets every reply of `count` pings to `target`."""
    result = lab.shell(vm, f"ping {'-6 ' if six else ''}-c {count} -i 0.2 -W 1 {target}", check=False)
    return result.returncode == 0 and f"{count} received" in result.stdout


def test_status_json_lists_compute_nodes_vms_interfaces_and_controller(lab):
    """`status --json` shows every compute node, VM interface and the controller's PID."""
    status = json.loads(lab.cli("status", "--json").stdout)
    assert [c["name"] for c in status["computes"]] == ["compute1", "compute2", "compute3"]
    assert all(c["connected"] for c in status["computes"])
    assert status["controller"]["running"] and isinstance(status["controller"]["pid"], int)
    assert status["lab"]["running"]
    interfaces = {i["vm"]: i for vm in status["vms"] for i in vm["interfaces"]}
    assert interfaces["vm1"] == {"name": "vm1-eth0", "vm": "vm1", "network": "blue",
                                 "ip": "10.1.1.11", "ip6": "fd00:1:1::b", "mac": "02:00:0a:01:01:0b",
                                 "vrouter_port": "tap-vm1-0", "ofport": 2}
    assert {vm["name"]: vm["compute"] for vm in status["vms"]} == {
        "vm1": "compute1", "vm2": "compute2", "vm3": "compute1", "vm4": "compute2", "vm5": "compute3"}
    text = lab.cli("status").stdout
    assert "vr-compute2" in text and "tap-vm5-0" in text


def test_exec_passes_output_and_exit_code(lab):
    """`mirrorlab exec` runs inside the VM: its own address, its exit code."""
    result = lab.shell("vm2", "ip -4 -o addr show dev vm2-eth0; exit 7", check=False)
    assert result.returncode == 7
    assert "10.1.1.12/24" in result.stdout
    unknown = lab.cli("exec", "vm99", "--", "true", check=False)
    assert unknown.returncode == 2 and "unknown vm 'vm99'" in unknown.stderr
    switch = lab.cli("exec", "vr-compute1", "--", "true", check=False)
    assert switch.returncode == 2 and "unknown vm 'vr-compute1'" in switch.stderr


OFFLOADS = ("tx-checksumming", "tcp-segmentation-offload", "generic-segmentation-offload")


def link_state(run, name: str) -> dict:
    """A link's MTU, MAC, whether it is up, and its offloads, as `run(*argv)` (in the lab's
    namespace or in a VM) sees them."""
    link = json.loads(run("ip", "-j", "link", "show", "dev", name).stdout)[0]
    features = run("ethtool", "-k", name).stdout
    return {"mtu": link["mtu"], "mac": link["address"], "up": "UP" in link["flags"],
            **{f: re.search(rf"^{f}: (\w+)", features, re.M).group(1) for f in OFFLOADS}}


def test_every_link_is_set_up_as_the_datapath_needs(lab):
    """Each VM interface and its vRouter port are up with MTU 1500 and every offload off at
    both ends (the userspace datapath cannot finish checksums or segment TCP for a veth), the
    VM's end with its MAC and addresses; the fabric and encapsulator links have jumbo MTUs, the
    encapsulator's offloads are off; no end in the lab's namespace has IPv6 of its own."""
    off = {f: "off" for f in OFFLOADS}
    in_lab = lab.netns
    lab_ends = []
    for vm in lab.topology.vms:
        in_vm = functools.partial(lab.exec, vm.name, check=True)
        for interface in vm.interfaces:
            assert link_state(in_lab, interface.port_name) | {"mac": None} == \
                {"mtu": 1500, "mac": None, "up": True, **off}
            assert link_state(in_vm, interface.name) == \
                {"mtu": 1500, "mac": interface.mac, "up": True, **off}
            addresses = in_vm("ip", "-o", "addr", "show", "dev", interface.name).stdout
            assert f"{interface.ip}/{interface.prefixlen}" in addresses
            assert f"{interface.ip6}/{interface.prefixlen6}" in addresses
            lab_ends.append(interface.port_name)
    for compute in lab.topology.computes:
        for name in (compute.fabric_port_name, compute.fabric_switch_port_name):
            state = link_state(in_lab, name)
            assert (state["mtu"], state["up"]) == (9000, True)
        for name in (compute.encap_port_name, compute.encapsulator_interface):
            assert link_state(in_lab, name) | {"mac": None} == {"mtu": 9000, "mac": None, "up": True, **off}
        lab_ends += [compute.fabric_port_name, compute.fabric_switch_port_name,
                     compute.encap_port_name, compute.encapsulator_interface]
    for probe in lab.topology.fabric_analyzers:
        assert link_state(in_lab, probe.fabric_switch_port_name)["mtu"] == 9000
        lab_ends.append(probe.fabric_switch_port_name)
    disabled = lab.netns("sysctl", *(f"net.ipv6.conf.{name}.disable_ipv6" for name in lab_ends)).stdout
    assert disabled.count("= 1") == len(lab_ends), disabled


def vswitchd_receive_buffers(lab) -> dict[str, int]:
    """The receive buffer (bytes) of each packet socket of the lab's ovs-vswitchd, by port."""
    buffers = {}
    for line in lab.netns("ss", "-0", "-a", "-m", "-p").stdout.splitlines():
        match = re.search(r"\*:(\S+)\s.*\"ovs-vswitchd\".*skmem:\(.*\brb(\d+)", line)
        if match:
            buffers[match.group(1)] = int(match.group(2))
    return buffers


def test_vswitchd_reads_every_port_with_a_large_buffer_and_keeps_its_heap(lab):
    """Every port's packet socket in the lab's ovs-vswitchd, an analyzer's added later
    included, gets a receive buffer of VSWITCHD_RECEIVE_BUFFER (the kernel reports twice what
    was set), not the machine's default; and ovs-vswitchd runs with the allocator settings
    that keep its freed heap."""
    analyzer = lab.create_analyzer("buffers-an", compute=lab.topology.computes[1].name)
    try:
        ports = ({analyzer["interface"]} | {i.port_name for vm in lab.topology.vms for i in vm.interfaces}
                 | {c.fabric_port_name for c in lab.topology.computes}
                 | {c.fabric_switch_port_name for c in lab.topology.computes}
                 | {c.encap_port_name for c in lab.topology.computes})
        deadline = time.monotonic() + 5
        while True:
            buffers = vswitchd_receive_buffers(lab)
            small = {port: buffers.get(port) for port in ports
                     if buffers.get(port, 0) < 2 * VSWITCHD_RECEIVE_BUFFER}
            if not small or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert small == {}, f"ports with the default buffer (or none): {small}"
    finally:
        lab.delete_analyzer("buffers-an")
    pid = Sandbox(lab.state).vswitchd_pid()
    environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert {f"{key}={value}".encode() for key, value in VSWITCHD_MALLOC.items()} <= set(environment)


def test_same_network_reaches_on_same_and_other_compute(lab):
    """IPv4 and IPv6 ping work within a network, on one compute node and across the fabric."""
    assert ping_ok(lab, "vm1", "10.1.1.13")  # vm3, same compute node
    assert ping_ok(lab, "vm1", "10.1.1.12")  # vm2, compute2
    assert ping_ok(lab, "vm4", "10.2.2.15")  # red: compute2 -> compute3
    assert ping_ok(lab, "vm1", "fd00:1:1::c", six=True)
    assert ping_ok(lab, "vm3", "fd00:1:1::b", six=True)


def test_tcp_and_udp_across_compute_nodes(lab):
    """A TCP transfer and UDP datagrams cross the fabric intact."""
    server = lab.shell_popen("vm2", "iperf3 -s -1 -p 5201")
    time.sleep(0.5)
    result = lab.shell("vm1", "iperf3 -c 10.1.1.12 -p 5201 -t 2 -J", timeout=60)
    server.wait(timeout=30)
    report = json.loads(result.stdout)
    assert report["end"]["sum_received"]["bytes"] > 1_000_000
    receiver = lab.shell_popen("vm2", "timeout 5 nc -u -l -p 7000")
    time.sleep(0.5)
    lab.shell("vm1", "echo hello-udp | nc -u -w1 10.1.1.12 7000")
    out, _ = receiver.communicate(timeout=10)
    assert "hello-udp" in out


@pytest.fixture
def route_to_red(lab):
    """Give vm1 a direct route and a neighbour entry towards vm4 (red), so that it really sends
    packets there: isolation must then come from the vRouters, not from vm1's routing table."""
    vm4 = lab.interface("vm4")
    lab.shell("vm1", f"ip route add {vm4.ip}/32 dev vm1-eth0 && "
                    f"ip neigh replace {vm4.ip} lladdr {vm4.mac} dev vm1-eth0 nud permanent")
    yield vm4
    lab.shell("vm1", f"ip route del {vm4.ip}/32 dev vm1-eth0; ip neigh del {vm4.ip} dev vm1-eth0",
             check=False)


def test_networks_are_isolated(lab, route_to_red):
    """vm1 (blue) cannot reach vm4 (red) by ping or TCP, and vm4 never sees its packets."""
    sniffer = lab.shell_popen("vm4", "timeout 6 tcpdump -n -i vm4-eth0 -c 1 'src host 10.1.1.11' 2>/dev/null")
    time.sleep(1)
    assert not ping_ok(lab, "vm1", str(route_to_red.ip), count=2)
    tcp = lab.shell("vm1", f"nc -z -w 2 {route_to_red.ip} 22", check=False)
    assert tcp.returncode != 0
    out, _ = sniffer.communicate(timeout=15)
    assert "10.1.1.11" not in out


def test_fabric_carries_mpls_with_the_network_label(lab):
    """On the fabric link every guest frame is Ethernet-in-MPLS with its network's label:
    vm1->vm2 traffic between the compute nodes' fabric MACs with the frames unchanged, and
    vm3's multicast flooded with blue's label too. Other guests' own frames are allowed."""
    blue = lab.topology.network("blue")
    compute1, compute2 = lab.topology.compute("compute1"), lab.topology.compute("compute2")
    pcap = ARTIFACTS / "fabric-compute1.pcap"
    sniffer = subprocess.Popen(lab.netns_command("timeout", "5", "tcpdump", "-n", "-i",
                                                 compute1.fabric_port_name, "-w", str(pcap), "mpls"),
                               env=lab.env, stderr=subprocess.DEVNULL)
    time.sleep(1)
    assert ping_ok(lab, "vm1", "10.1.1.12", count=2)
    # Guests' multicast crosses the fabric too (vm3 is blue, on compute1): flooded, same label.
    lab.shell("vm3", "ping -6 -c 1 -w 1 ff02::2%vm3-eth0", check=False)
    sniffer.wait(timeout=10)
    vm1, vm2, vm3 = lab.interface("vm1"), lab.interface("vm2"), lab.interface("vm3")
    label_of_mac = {i.mac: lab.topology.network(i.network).label for i in lab.topology.interfaces()}
    pings, flooded_from_vm3 = [], 0
    for frame in rdpcap(str(pcap)):
        inner = Ether(bytes(frame[MPLS].payload))
        if inner.src in label_of_mac:
            assert frame[MPLS].label == label_of_mac[inner.src]
        flooded_from_vm3 += inner.src == vm3.mac and inner.dst.startswith("33:33:")
        if {inner.src, inner.dst} != {vm1.mac, vm2.mac}:
            continue
        assert {frame.src, frame.dst} == {compute1.fabric_mac, compute2.fabric_mac}
        if inner.haslayer(ICMP):
            pings.append((inner[IP].src, inner[ICMP].type))
    assert sorted(pings) == [("10.1.1.11", 8), ("10.1.1.11", 8), ("10.1.1.12", 0), ("10.1.1.12", 0)]
    assert flooded_from_vm3 >= 1
    fdb = lab.netns("ovs-appctl", "fdb/show", lab.topology.fabric_bridge).stdout
    for compute in lab.topology.computes:
        assert re.search(rf"\b{compute.fabric_mac}\s+static", fdb), fdb
    decoded = subprocess.run(["tshark", "-r", str(pcap), "-d", f"mpls.label=={blue.label},pwethnocw",
                              "-Y", "icmp"], capture_output=True, text=True).stdout
    assert decoded.count("Echo (ping) request") == 2 and decoded.count("Echo (ping) reply") == 2


def controller_pid(lab) -> int:
    return json.loads(lab.cli("status", "--json").stdout)["controller"]["pid"]


def test_controller_kill_and_restart_reconciles_without_loss(lab):
    """kill -9 of the controller: forwarding goes on; on restart a stale flow is removed, a
    deleted one is restored, and every table equals what it was."""
    computes = [c.name for c in lab.topology.computes]
    before = {c: lab.flows(c) for c in computes}
    pinger = lab.shell_popen("vm1", "ping -c 150 -i 0.05 -W 1 10.1.1.12")
    time.sleep(0.5)
    os.kill(controller_pid(lab), signal.SIGKILL)
    lab.netns("ovs-ofctl", "-O", "OpenFlow13", "add-flow", "vr-compute2",
              f"cookie=0x1234,table={FORWARD},priority=7,udp,actions=drop")
    victim = next(f for f in before["compute3"] if f.table == FORWARD and f.priority == 200)
    lab.netns("ovs-ofctl", "-O", "OpenFlow13", "--strict", "del-flows", "vr-compute3",
              f"table={FORWARD},priority=200,{victim.match}")
    assert lab.flows("compute3") != before["compute3"]
    time.sleep(1)
    lab.cli("controller", "start")
    lab.wait_for(lambda: all(lab.flows(c) == before[c] for c in computes), what="reconciliation")
    out, _ = pinger.communicate(timeout=60)
    assert "150 received" in out, out
    assert ping_ok(lab, "vm5", "10.2.2.14")


def test_controller_stop_and_restart_commands(lab):
    """`controller stop` leaves forwarding up; `restart` brings a new process that reconnects
    every vRouter and changes no flow."""
    computes = [c.name for c in lab.topology.computes]
    before = {c: lab.flows(c) for c in computes}
    old_pid = controller_pid(lab)
    assert "controller stopped" in lab.cli("controller", "stop").stdout
    status = json.loads(lab.cli("status", "--json").stdout)
    assert not status["controller"]["running"]
    assert ping_ok(lab, "vm2", "10.1.1.13")
    assert "not running" in lab.cli("controller", "stop").stdout
    assert "controller started" in lab.cli("controller", "restart").stdout
    new_pid = controller_pid(lab)
    assert new_pid != old_pid
    lab.wait_for(lambda: all(c["connected"] for c in json.loads(lab.cli("status", "--json").stdout)["computes"]),
                 what="vRouters to reconnect")
    assert {c: lab.flows(c) for c in computes} == before


def test_bad_topology_is_refused_with_file_line_and_key(lab, tmp_path):
    """`check` and `up` name the file, line and key; `up` starts nothing and keeps the running lab."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ncomputes: [c1]\nnetworks:\n  - {name: blue, subnet: 10.9.9.0/24}\n"
                   "vms:\n  - {name: v1, compute: c9, network: blue}\n"
                   "  - {name: v2, compute: c1, network: blue, ip: 10.9.8.5}\n")
    check = lab.cli("check", str(bad), check=False)
    assert check.returncode == 2
    assert check.stderr.splitlines() == [
        f"{bad}:6: vms[0].compute: unknown compute node 'c9' (known: c1)",
        f"{bad}:7: vms[1].ip: 10.9.8.5 is outside subnet 10.9.9.0/24 of network 'blue'",
    ]
    up = lab.cli("up", str(bad), check=False)
    assert up.returncode == 2 and "unknown compute node 'c9'" in up.stderr
    assert "Traceback" not in up.stderr
    assert ping_ok(lab, "vm1", "10.1.1.12")
    good = lab.cli("check", "topologies/default.yaml")
    assert "ok: 3 compute nodes" in good.stdout


def test_second_up_refuses_while_a_lab_runs(lab):
    """`up` while the lab runs refuses and leaves it alone."""
    again = lab.cli("up", check=False)
    assert again.returncode == 1 and "running already" in again.stderr
    assert ping_ok(lab, "vm1", "10.1.1.13")


def lab_footprint(state_dir: Path) -> dict:
    """What a lab in `state_dir` has on this machine: its namespace and the processes in it,
    and processes started for it (they carry its state directory in their environment)."""
    netns = json.loads((state_dir / "lab.json").read_text()).get("netns") \
        if (state_dir / "lab.json").exists() else None
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    processes = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"MIRRORLAB_STATE_DIR={state_dir}\0".encode() in environ.read_bytes():
                processes.append(environ.parent.name)
        except OSError:
            pass
    return {"namespaces": [line.split()[0] for line in namespaces.splitlines()
                           if netns and line.split()[0] == netns],
            "processes": processes}


@pytest.mark.parametrize("crash", [False, True], ids=["clean", "after-crash"])
def test_a_second_lab_with_the_same_names_coexists_and_leaves_nothing(lab, crash):
    """A second lab of the very same topology (same bridge, port and VM names) comes up beside
    the session's lab, both forward, and `down` leaves nothing of it behind, also after its
    processes were killed with SIGKILL; the session's lab is untouched throughout."""
    state_dir = Path(str(STATE_DIR) + "-twin")
    env = {**os.environ, "MIRRORLAB_STATE_DIR": str(state_dir)}
    cli = [sys.executable, "-m", "mirrorlab.cli"]
    before = {c.name: lab.flows(c.name) for c in lab.topology.computes}
    try:
        up = subprocess.run(cli + ["up", str(TOPOLOGY), "--api-port", "8099", "--config-api-port", "0",
                                   "--lease-seconds", "2.5",
                                   "--capture-limit", "5M", "--min-free-disk", "64M"],
                            env=env, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "[5/5] checking reachability" in up.stdout and "is up in" in up.stdout
        assert httpx.get("http://127.0.0.1:8099/api/config").json() == {
            "lease_seconds": 2.5, "capture_limit_bytes": 5 << 20, "min_free_bytes": 64 << 20}
        twin_ping = subprocess.run(cli + ["exec", "vm1", "--", "ping", "-c", "2", "-q", "10.1.1.12"],
                                   env=env, capture_output=True, text=True, timeout=60)
        assert twin_ping.returncode == 0, twin_ping.stdout
        assert ping_ok(lab, "vm1", "10.1.1.12", count=2)
        footprint = lab_footprint(state_dir)
        assert footprint["namespaces"] and footprint["processes"]
        if crash:
            record = json.loads((state_dir / "lab.json").read_text())
            for kind in ("lab_process", "controller_process", "ovs-vswitchd_process"):
                os.kill(record[kind]["pid"], signal.SIGKILL)
        down = subprocess.run(cli + ["down"], env=env, capture_output=True, text=True, timeout=300)
        assert down.returncode == 0, down.stderr
        assert lab_footprint(state_dir) == {"namespaces": [], "processes": []}
    finally:
        subprocess.run(cli + ["down"], env=env, capture_output=True)
    assert {c.name: lab.flows(c.name) for c in lab.topology.computes} == before
    assert ping_ok(lab, "vm1", "10.1.1.12", count=2)
