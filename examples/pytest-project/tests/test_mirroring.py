"""Interface mirroring on a real lab: what vm1 sends and receives reaches the analyzer, each
packet with its direction, and the capture's flows go when it stops."""
import pytest


@pytest.mark.mirrorlab_topology("minimal")
def test_a_ping_is_mirrored_in_both_directions(mirrorlab_lab):
    lab = mirrorlab_lab
    peer = lab.topology.vm("vm2").interfaces[0].ip
    with lab.capture("vm1", direction="both") as capture:
        assert capture.state == "active"
        assert {flow.owner for flow in lab.flows("compute1") if flow.capture == capture.id} == {"capture"}
        ping = lab.exec("vm1", "ping", "-c", "5", "-i", "0.2", str(peer))
        assert ping.returncode == 0, ping.stderr
        assert capture.wait_for(packets=6, filter=f"icmp and host {peer}") >= 6
        icmp = capture.packets(filter="icmp")
        sent_by_vm1 = [p["summary"] for p in icmp if p["direction"] == "ingress"]
        delivered_to_vm1 = [p["summary"] for p in icmp if p["direction"] == "egress"]
        assert len(sent_by_vm1) >= 3 and all("request" in s for s in sent_by_vm1)
        assert len(delivered_to_vm1) >= 3 and all("reply" in s for s in delivered_to_vm1)
    assert capture.state == "stopped"
    assert [flow for flow in lab.flows("compute1") if flow.capture == capture.id] == []


@pytest.mark.mirrorlab_topology("minimal")
def test_the_lab_is_its_own(mirrorlab_lab):
    """The fixture's lab runs beside any other: its own state directory and API port."""
    status = mirrorlab_lab.status()
    assert status["problems"] == [] and status["name"] == "minimal"
    assert str(mirrorlab_lab.state_dir) != "/run/mirrorlab"
    assert status["controller"]["api"] == mirrorlab_lab.api_url
