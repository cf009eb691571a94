"""Where frames go, asked of the software flow table: no root, no Open vSwitch."""
from mirrorlab.testing.flowsim import LabSim


def test_a_frame_reaches_its_peer_and_a_copy_reaches_the_analyzer():
    sim = LabSim.of("default", captures=[("vm1", "both")])
    frame = sim.frame("vm1", "vm2")
    received = sim.where("vm1", frame)
    assert received["vm2"] == [frame]
    [analyzer] = [vm.name for vm in sim.topology.vms if vm.analyzer]
    [copy] = received[analyzer]
    assert copy["inner"] == frame  # the mirrored frame, inside the copy's encapsulation


def test_without_a_capture_nothing_is_copied_and_networks_stay_apart():
    sim = LabSim.of("default")
    assert list(sim.where("vm1", sim.frame("vm1", "vm2"))) == ["vm2"]
    assert sim.where("vm1", sim.frame("vm1", "vm4")) == {}  # vm4 is in another network
