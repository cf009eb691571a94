"""Faults injected into a running lab, for scenarios and tests: each function acts on a `Lab`.

- a VM interface down and up (its vRouter end: the VM sees its carrier go);
- a compute node's fabric uplink down and up (the vRouter's port into the fabric);
- loss and rate limits on a link, both ways. This kernel has no netem, so: a TBF qdisc for the
  rate, and an nftables rule on the netdev egress hook, `numgen random mod 100 < N drop`, for
  the loss. A link is a VM interface (its two ends: in the VM, and the vRouter's tap in the
  lab's namespace) or a compute node's uplink (both ends in the lab's namespace);
- controller kill (SIGKILL) and restart;
- a vRouter disconnected from the controller (its controller target, in the lab's Open
  vSwitch, pointed at a socket nobody listens on) and reconnected;
- an analyzer's recorder killed (SIGKILL, by the PID the lab records in its state directory).
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

from mirrorlab.sandbox import Sandbox
from mirrorlab.state import LabState, process_alive

# nftables table holding the loss rules of one namespace (the lab's or a VM's).
LOSS_TABLE = "mirrorlab-faults"


class FaultError(RuntimeError):
    """A fault that could not be injected or undone, with the reason."""


def interface_down(lab, vm: str, index: int = 0) -> None:
    """Take VM `vm`'s interface `index` down at the vRouter (its tap port)."""
    _set_link(lab, _interface(lab, vm, index).port_name, "down")


def interface_up(lab, vm: str, index: int = 0) -> None:
    """Bring VM `vm`'s interface `index` back up at the vRouter."""
    _set_link(lab, _interface(lab, vm, index).port_name, "up")


def uplink_down(lab, compute: str) -> None:
    """Take compute node `compute`'s fabric uplink down: its vRouter is cut off the fabric."""
    _set_link(lab, lab.topology.compute(compute).fabric_port_name, "down")


def uplink_up(lab, compute: str) -> None:
    """Bring compute node `compute`'s fabric uplink back up."""
    _set_link(lab, lab.topology.compute(compute).fabric_port_name, "up")


def impair(lab, link: str, index: int = 0, loss: int | None = None, rate: str | None = None) -> None:
    """Drop `loss` percent of the frames and/or limit to `rate` (tc syntax: 1mbit, 500kbit)
    each way on `link`: a compute node's name (its fabric uplink) or a VM's (its interface
    `index`). Replaces what an earlier `impair` set there."""
    clear(lab, link, index)
    for run, device in _link_ends(lab, link, index):
        if rate is not None:
            # A burst of at least one jumbo frame, or TBF drops every frame above it.
            _checked(run("tc", "qdisc", "replace", "dev", device, "root", "tbf", "rate", rate,
                          "burst", "64kb", "latency", "100ms"), f"rate limit on {device}")
        if loss is not None:
            chain = f"{device}-loss"
            _checked(run("nft", "add", "table", "netdev", LOSS_TABLE), f"loss on {device}")
            _checked(run("nft", "add", "chain", "netdev", LOSS_TABLE, chain,
                         f"{{ type filter hook egress device \"{device}\" priority 0 ; }}"),
                     f"loss on {device}")
            _checked(run("nft", "add", "rule", "netdev", LOSS_TABLE, chain, "numgen", "random",
                         "mod", "100", "<", str(loss), "drop"), f"loss on {device}")


def clear(lab, link: str, index: int = 0) -> None:
    """Remove the loss and rate limit `impair` set on `link` (nothing happens if none)."""
    for run, device in _link_ends(lab, link, index):
        run("tc", "qdisc", "del", "dev", device, "root")
        run("nft", "delete", "chain", "netdev", LOSS_TABLE, f"{device}-loss")


def controller_kill(lab) -> None:
    """Kill the controller with SIGKILL, as a crash would (its vRouters keep their flows)."""
    lab.controller.kill()


def controller_restart(lab) -> None:
    """Restart the controller (stopped if it runs, then started); returns once its API answers."""
    lab.controller.restart()


def controller_stop(lab) -> None:
    """Stop the controller (SIGTERM)."""
    lab.controller.stop()


def controller_start(lab) -> None:
    """Start the controller; returns once its API answers."""
    lab.controller.start()


def vrouter_disconnect(lab, compute: str) -> None:
    """Cut compute node `compute`'s vRouter off the controller, as a lost agent connection
    does: its controller target is pointed at a socket nobody listens on. The bridge keeps a
    controller configured, so it keeps its flows (secure fail mode) and goes on forwarding and
    mirroring; removing the controller instead (`ovs-vsctl del-controller`) makes Open vSwitch
    flush the bridge's flows, which no agent outage does."""
    _set_controller_target(lab, compute, f"unix:{Path(lab.state_dir) / 'ovs' / 'nobody.sock'}")


def vrouter_reconnect(lab, compute: str) -> None:
    """Point compute node `compute`'s vRouter at the controller again; the controller
    reconciles it when it connects."""
    _set_controller_target(lab, compute, Sandbox(LabState(lab.state_dir)).openflow_target)


def _set_controller_target(lab, compute: str, target: str) -> None:
    bridge = lab.topology.compute(compute).vrouter
    controllers = lab.netns("ovs-vsctl", "get", "Bridge", bridge, "controller", check=False)
    _checked(controllers, f"read the controller of {bridge}")
    uuids = controllers.stdout.strip().strip("[]").split(", ")
    if uuids == [""]:
        raise FaultError(f"{bridge} has no controller configured")
    for uuid in uuids:
        _checked(lab.netns("ovs-vsctl", "set", "Controller", uuid, f'target="{target}"', check=False),
                 f"set the controller target of {bridge}")


def recorder_kill(lab, analyzer: str) -> int:
    """Kill analyzer `analyzer`'s recorder with SIGKILL (its supervisor restarts it); return
    the PID killed."""
    vm = next((a["vm"] for a in lab.analyzers if a["name"] == analyzer), None)
    if vm is None:
        raise FaultError(f"no analyzer '{analyzer}' runs")
    record = next((r for r in LabState(lab.state_dir).read().get("recorders", [])
                   if r.get("name") == f"recorder-{vm}"), None)
    if not process_alive(record):
        raise FaultError(f"the recorder of analyzer '{analyzer}' does not run (nothing to kill)")
    os.kill(record["pid"], signal.SIGKILL)
    return record["pid"]


def _interface(lab, vm: str, index: int):
    interfaces = lab.topology.vm(vm).interfaces
    if index >= len(interfaces):
        raise FaultError(f"VM '{vm}' has no interface {index}")
    return interfaces[index]


def _set_link(lab, device: str, state: str) -> None:
    _checked(lab.netns("ip", "link", "set", device, state, check=False), f"set {device} {state}")


def _link_ends(lab, link: str, index: int) -> list:
    """The two ends of `link` as (runner, device): a runner runs a command, unchecked, in the
    namespace the device lives in."""
    in_lab = lambda *argv: lab.netns(*argv, check=False)  # noqa: E731
    if lab.topology.has("compute", link):
        compute = lab.topology.compute(link)
        return [(in_lab, compute.fabric_port_name), (in_lab, compute.fabric_switch_port_name)]
    interface = _interface(lab, link, index)
    in_vm = lambda *argv: lab.exec(link, *argv)  # noqa: E731
    return [(in_lab, interface.port_name), (in_vm, interface.name)]


def _checked(result, what: str) -> None:
    if result.returncode != 0:
        raise FaultError(f"{what} failed: {(result.stderr or result.stdout).strip()}")
