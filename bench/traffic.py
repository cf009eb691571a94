"""Traffic: iperf3 between two endpoints (lab VMs or plain network namespaces).

An `Endpoint` is somewhere a command runs: a lab VM (through `mirrorlab exec`) or a network
namespace of the bare-limit setup (through `ip netns exec`). iperf3's JSON gives throughput; for
packet counts, the benchmarks read interface counters instead, which count what the VM really
sent and received.
"""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from bench.common import run

IPERF_PORT = 5201
ETH_IP_UDP_HEADERS = 14 + 20 + 8


@dataclass
class Endpoint:
    """Where a command runs, and the IPv4 address others reach it at."""

    name: str
    ip: str
    popen: Callable[[list[str]], subprocess.Popen]
    run: Callable[..., subprocess.CompletedProcess]


def vm_endpoint(lab, vm: str, ip: str) -> Endpoint:
    """A lab VM."""
    return Endpoint(vm, ip, lambda argv: lab.popen(vm, *argv, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE, text=True),
                    lambda argv, timeout=120, check=True: lab.exec(vm, *argv, timeout=timeout, check=check))


def netns_endpoint(namespace: str, ip: str) -> Endpoint:
    """A plain network namespace."""
    prefix = ["ip", "netns", "exec", namespace]
    return Endpoint(namespace, ip,
                    lambda argv: subprocess.Popen(prefix + argv, stdout=subprocess.PIPE,
                                                  stderr=subprocess.PIPE, text=True),
                    lambda argv, timeout=120, check=True: run(*prefix, *argv, timeout=timeout, check=check))


def udp_payload(frame_bytes: int) -> int:
    """iperf3's UDP payload (-l) that makes Ethernet frames of `frame_bytes` (without FCS)."""
    return frame_bytes - ETH_IP_UDP_HEADERS


def iperf(client: Endpoint, server: Endpoint, seconds: float, udp: bool = False,
          payload: int | None = None, bitrate: int | None = None, attempts: int = 5) -> dict:
    """Run iperf3 from `client` to `server` for `seconds`; return its JSON summary as
    {"bits_per_second": receiver throughput, "seconds", "sent_packets", "lost_packets", ...}.
    UDP without `bitrate` sends as fast as the client can (-b 0)."""
    argv = ["iperf3", "-c", server.ip, "-p", str(IPERF_PORT), "-J", "-t", str(seconds)]
    if udp:
        argv += ["-u", "-b", str(bitrate or 0)]
    if payload:
        argv += ["-l", str(payload)]
    last_error = ""
    for _attempt in range(attempts):
        server_process = server.popen(["iperf3", "-s", "-1", "-p", str(IPERF_PORT)])
        try:
            time.sleep(0.4)
            result = client.run(argv, timeout=seconds + 60, check=False)
            try:
                data = json.loads(result.stdout)
            except ValueError:
                data = {"error": (result.stderr or result.stdout).strip()}
            if "error" not in data:
                return _iperf_summary(data, udp)
            last_error = data["error"]
        finally:
            _finish(server_process)
        time.sleep(0.5)
    raise RuntimeError(f"iperf3 {client.name} -> {server.name} failed: {last_error}")


def _finish(process: subprocess.Popen) -> None:
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _iperf_summary(data: dict, udp: bool) -> dict:
    end = data["end"]
    if udp:
        sent = end.get("sum_sent", end["sum"])
        received = end.get("sum_received", end["sum"])  # what the server counted
        seconds = received.get("seconds") or sent.get("seconds") or 1
        delivered = received.get("packets", 0) - received.get("lost_packets", 0)
        return {"bits_per_second": received["bits_per_second"],
                "sent_bits_per_second": sent.get("bits_per_second"),
                "seconds": seconds, "sent_packets": sent.get("packets"),
                "received_packets": delivered,
                "received_packets_per_second": delivered / seconds,
                "sent_packets_per_second": (sent.get("packets") or 0) / (sent.get("seconds") or 1)}
    received, sent = end["sum_received"], end["sum_sent"]
    return {"bits_per_second": received["bits_per_second"],
            "sent_bits_per_second": sent["bits_per_second"],
            "seconds": received["seconds"], "retransmits": sent.get("retransmits")}
