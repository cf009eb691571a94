"""End-to-end: a capture the API calls active copies the very next packet, and one it calls
stopped copies nothing more, even for traffic the vRouters' datapath has cached flows for.

Open vSwitch's datapath forwards by cached flows (megaflows) holding the actions they were
translated to; after a flow table change they keep those until the revalidator threads have
run. The barrier reply that confirms a FlowMod comes before that, so the controller waits for
the revalidators too. These tests make the wait long (the revalidators are paused for a
second around the request, as a loaded machine delays them), so a controller that trusts the
barrier alone fails every time.
"""
from __future__ import annotations

import sys
import threading
import time

from scapy.all import UDP, rdpcap

DEFAULT_ANALYZER = "interface-packet-capture"
PORT = 9  # discard: nothing needs to answer
PAUSE_SECONDS = 1.0

# Runs in the monitored VM: a datagram every 2 ms, its payload its sequence number; prints
# "sequence send-time" for each.
SENDER = r"""
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end, sequence = time.time() + float(sys.argv[2]), 0
while time.time() < end:
    sent = time.time()
    sock.sendto(str(sequence).encode(), (sys.argv[1], %d))
    print(sequence, repr(sent), flush=True)
    sequence += 1
    time.sleep(0.002)
""" % PORT


def start_sender(lab, target, seconds: float):
    """Start the datagram stream from the target VM to its peer."""
    return lab.shell_popen(target.vm, f"{sys.executable} -c '{SENDER}' {target.peer.ip} {seconds}")


def sent_times(sender) -> dict[int, float]:
    """Wait for the sender to finish; its datagrams' send times by sequence number."""
    output, errors = sender.communicate(timeout=60)
    assert sender.returncode == 0, errors
    return {int(sequence): float(at) for sequence, at in (line.split() for line in output.splitlines())}


def copied(lab, capture_id: int, tmp_path) -> set[int]:
    """The sequence numbers of the datagrams the capture recorded."""
    response = lab.http("GET", f"/api/captures/{capture_id}/pcap", params={"format": "pcap"})
    assert response.status_code == 200, response.text
    path = tmp_path / f"capture-{capture_id}.pcap"
    path.write_bytes(response.content)
    return {int(bytes(frame[UDP].payload)) for frame in rdpcap(str(path))
            if frame.haslayer(UDP) and frame[UDP].dport == PORT}


def settled_copies(lab, capture_id: int, tmp_path) -> set[int]:
    """`copied`, once the analyzer has recorded nothing new for half a second: copies the
    datapath made before the capture stopped may still be on their way through the mirror
    encapsulator and the recorder when the stop is answered."""
    recorded, deadline = copied(lab, capture_id, tmp_path), time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)
        again = copied(lab, capture_id, tmp_path)
        if again == recorded:
            break
        recorded = again
    return recorded


def with_slow_revalidators(lab, request):
    """Run `request()` with the lab's revalidator threads paused for PAUSE_SECONDS from its
    start; return its result and the time it returned."""
    lab.netns("ovs-appctl", "revalidator/pause")
    resume = threading.Timer(PAUSE_SECONDS, lambda: lab.netns("ovs-appctl", "revalidator/resume"))
    resume.start()
    try:
        result = request()
        return result, time.time()
    finally:
        resume.join()


def ensure_analyzer(lab) -> None:
    """The default analyzer runs (a first capture launches it)."""
    if not any(a["name"] == DEFAULT_ANALYZER for a in lab.http("GET", "/api/analyzers").json()):
        lab.capture("vm1").stop()


def test_active_means_the_next_packet_is_copied(clean_lab, target, tmp_path):
    """Traffic already flows (its datapath flow is cached) when the capture starts: every
    datagram sent after the API answered "active" is recorded, none is missed."""
    lab = clean_lab
    ensure_analyzer(lab)
    sender = start_sender(lab, target, 3.0)
    time.sleep(0.5)  # the stream's datapath flow is in the cache
    response, active_at = with_slow_revalidators(lab, lambda: lab.http(
        "POST", "/api/captures", json={"vrouter": target.compute, "interface": target.port,
                                       "direction": "ingress"}))
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "active"
    sent = sent_times(sender)
    lab.http("DELETE", f"/api/captures/{response.json()['id']}")
    after = sorted(sequence for sequence, at in sent.items() if at > active_at)
    assert len(after) > 100, "the stream ended before the capture was active"
    missed = sorted(set(after) - settled_copies(lab, response.json()["id"], tmp_path))
    assert missed == [], (f"{len(missed)} of {len(after)} datagrams sent after the capture was "
                          f"active were not copied, from {missed[0]} "
                          f"({(sent[missed[0]] - active_at) * 1000:.0f} ms after)")


def test_stopped_means_nothing_more_is_copied(clean_lab, target, tmp_path):
    """Stopping a capture while traffic flows: no datagram sent after the API answered
    "stopped" is recorded, and those sent before were."""
    lab = clean_lab
    ensure_analyzer(lab)
    capture = lab.capture(vrouter=target.compute, interface=target.port, direction="ingress")
    sender = start_sender(lab, target, 3.0)
    time.sleep(0.5)
    response, stopped_at = with_slow_revalidators(
        lab, lambda: lab.http("DELETE", f"/api/captures/{capture.id}"))
    assert response.status_code == 200, response.text
    sent = sent_times(sender)
    recorded = settled_copies(lab, capture.id, tmp_path)
    late = sorted(sequence for sequence in recorded if sent[sequence] > stopped_at)
    assert late == [], (f"{len(late)} datagrams sent after the capture was stopped were copied, "
                        f"up to {(sent[late[-1]] - stopped_at) * 1000:.0f} ms after")
    assert len(recorded) > 100


def test_a_datapath_that_never_revalidates_fails_the_capture_naming_the_vrouter(clean_lab, target):
    """Revalidators that never run: the capture request gets a 503 naming the vRouter, the
    capture is not active, and nothing of it stays on the vRouter once they run again."""
    lab = clean_lab
    ensure_analyzer(lab)
    lab.netns("ovs-appctl", "revalidator/pause")
    try:
        response = lab.http("POST", "/api/captures", json={"vrouter": target.compute,
                                                          "interface": target.port})
    finally:
        lab.netns("ovs-appctl", "revalidator/resume")
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert f"vrouter '{target.compute}'" in error and "datapath" in error, error
    capture = lab.captures()[0]
    assert capture.state == "failed"
    lab.wait_for(lambda: not [f for f in lab.flows(target.compute) if f.capture == capture.id],
                 what="the failed capture's flows to go")
