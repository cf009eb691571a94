"""The bare limits the lab is compared with, set up for the run and removed afterwards:

  veth  two network namespaces joined by one plain veth pair (the kernel alone);
  ovs   two network namespaces on a plain Open vSwitch bridge in the userspace datapath
        (datapath_type=netdev, the lab's datapath) holding one NORMAL flow. The bridge runs in
        an Open vSwitch of its own started as a lab's is (mirrorlab.sandbox: its own network
        namespace, the lab's allocator settings) and, as the lab process does, reads its ports
        with VSWITCHD_RECEIVE_BUFFER: the same Open vSwitch as the lab's, with one bridge and
        two ports, not the machine's (shared with anything else running on it).

Offloads (tx checksum, TSO, GSO) are off on every veth end, as the lab does, or TCP stalls on
the userspace datapath. Everything made here is named bnch-*, and only that is removed.
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from bench.common import STATE_DIR, log, run
from bench.traffic import Endpoint, netns_endpoint
from mirrorlab.sandbox import VSWITCHD_RECEIVE_BUFFER, Sandbox, enlarge_receive_buffers
from mirrorlab.state import LabState

BRIDGE = "bnch-br0"
NAMESPACES = ("bnch-ns1", "bnch-ns2", "bnch-ns3", "bnch-ns4")
# (namespace, interface inside, peer end outside or in the other namespace)
VETH_PAIR = ("bnch-v1", "bnch-v2")
OVS_PORTS = (("bnch-ns3", "bnch-i3", "bnch-o3"), ("bnch-ns4", "bnch-i4", "bnch-o4"))
SUBNET = "10.158.0"  # 10.158.0.1/.2 on the veth pair, .3/.4 on the bridge
# The bare bridge's own Open vSwitch (and network namespace, named after it).
OVS_STATE_DIR = STATE_DIR.with_name(STATE_DIR.name + "-bare")


def _offloads_off(interface: str, namespace: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", namespace] if namespace else []
    run(*prefix, "ethtool", "-K", interface, "tx", "off", "tso", "off", "gso", "off")


def _sandbox() -> Sandbox:
    return Sandbox(LabState(OVS_STATE_DIR))


def cleanup() -> None:
    """Remove whatever this module made (and only that)."""
    if LabState(OVS_STATE_DIR).exists():
        _sandbox().destroy()
        shutil.rmtree(OVS_STATE_DIR)
    for namespace in NAMESPACES:
        if Path(f"/run/netns/{namespace}").exists():
            run("ip", "netns", "del", namespace, check=False)
    if Path(f"/sys/class/net/{VETH_PAIR[0]}").exists():
        run("ip", "link", "del", VETH_PAIR[0], check=False)


@contextlib.contextmanager
def bare_setups():
    """Yield {"veth": (client, server), "ovs": (client, server)} endpoints; remove everything
    on the way out."""
    cleanup()  # leftovers of an interrupted run: same names, ours
    try:
        for namespace in NAMESPACES:
            run("ip", "netns", "add", namespace)
            run("ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        # veth: ns1 <-> ns2
        run("ip", "link", "add", VETH_PAIR[0], "netns", NAMESPACES[0], "type", "veth",
            "peer", "name", VETH_PAIR[1], "netns", NAMESPACES[1])
        for index, (namespace, interface) in enumerate(zip(NAMESPACES[:2], VETH_PAIR), 1):
            run("ip", "netns", "exec", namespace, "ip", "addr", "add", f"{SUBNET}.{index}/24",
                "dev", interface)
            run("ip", "netns", "exec", namespace, "ip", "link", "set", interface, "up")
            _offloads_off(interface, namespace)
        # ovs: ns3 <-> bnch-br0 (netdev, one NORMAL flow, in its own Open vSwitch) <-> ns4
        sandbox = _sandbox()
        sandbox.create("bnch-bare")
        sandbox.run("ovs-vsctl", "--timeout=10", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE,
                    "datapath_type=netdev", "fail_mode=standalone")
        for index, (namespace, inside, outside) in enumerate(OVS_PORTS, 3):
            run("ip", "link", "add", outside, "netns", sandbox.netns, "type", "veth",
                "peer", "name", inside, "netns", namespace)
            run("ip", "netns", "exec", namespace, "ip", "addr", "add", f"{SUBNET}.{index}/24",
                "dev", inside)
            run("ip", "netns", "exec", namespace, "ip", "link", "set", inside, "up")
            sandbox.run("ip", "link", "set", outside, "up")
            _offloads_off(inside, namespace)
            _offloads_off(outside, sandbox.netns)
            sandbox.run("ovs-vsctl", "--timeout=10", "add-port", BRIDGE, outside)
        sandbox.run("ovs-ofctl", "del-flows", BRIDGE)
        sandbox.run("ovs-ofctl", "add-flow", BRIDGE, "priority=0,actions=NORMAL")
        enlarge_receive_buffers(sandbox.vswitchd_pid(), VSWITCHD_RECEIVE_BUFFER, set())
        setups = {
            "veth": (netns_endpoint(NAMESPACES[0], f"{SUBNET}.1"), netns_endpoint(NAMESPACES[1], f"{SUBNET}.2")),
            "ovs": (netns_endpoint(NAMESPACES[2], f"{SUBNET}.3"), netns_endpoint(NAMESPACES[3], f"{SUBNET}.4")),
        }
        for client, server in setups.values():
            _wait_ping(client, server)
        yield setups
    finally:
        cleanup()
        log("bare-limit namespaces and Open vSwitch removed")


def _wait_ping(client: Endpoint, server: Endpoint) -> None:
    for _ in range(20):
        if client.run(["ping", "-c1", "-W1", "-q", server.ip], check=False).returncode == 0:
            return
    raise RuntimeError(f"{client.name} cannot reach {server.ip}")
