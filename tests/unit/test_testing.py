"""What `mirrorlab.testing` gives a third party without root: the simulated lab of a topology
with captures, asked where a frame goes."""
import pytest

from mirrorlab import topofile
from mirrorlab.controller.errors import MirrorlabError
from mirrorlab.testing.flowsim import LabSim
from mirrorlab.topology import TopologyError


def test_a_frame_reaches_its_peer_and_each_capture_copies_it_to_the_analyzer():
    sim = LabSim.of("default", captures=[("vm1", "egress"), ("vm2", "ingress")])
    frame = sim.frame("vm1", "vm2")
    received = sim.where("vm1", frame)
    [analyzer] = [vm.name for vm in sim.topology.vms if vm.analyzer]
    assert received["vm2"] == [frame]
    # vm1's egress (what it receives) copies nothing; vm2's ingress (what it sends) neither.
    assert analyzer not in received
    back = sim.frame("vm2", "vm1")
    copies = sim.where("vm2", back)[analyzer]
    assert [copy["inner"] for copy in copies] == [back, back]  # once per capture
    # Contrail's default destination: UDP 8099 with the Juniper header, one mirror entry per
    # capture; vm2's ingress names the source VN, vm1's egress the destination VN.
    assert {copy["udp_dst"] for copy in copies} == {8099}
    assert len({copy["mirror_index"] for copy in copies}) == 2
    assert {(copy.get("juniper_vn_src"), copy.get("juniper_vn_dst")) for copy in copies} == \
        {("default-domain:default:blue", None), (None, "default-domain:default:blue")}


def test_networks_stay_apart_and_a_topology_object_or_file_serves_alike():
    topology = topofile.load(topofile.locate("default"))
    for sim in (LabSim.of(topology), LabSim.of(topofile.locate("default"))):
        assert list(sim.where("vm1", sim.frame("vm1", "vm2"))) == ["vm2"]
        assert sim.where("vm1", sim.frame("vm1", "vm4")) == {}


def test_bad_input_is_named():
    with pytest.raises(TopologyError, match="not a shipped topology"):
        LabSim.of("nosuchlab")
    with pytest.raises(MirrorlabError, match="bad direction 'sideways'"):
        LabSim.of("default", captures=[("vm1", "sideways")])
    with pytest.raises(MirrorlabError, match=r"unknown vm 'vm9' \(known: vm1, vm2, vm3, vm4, vm5\)"):
        LabSim.of("default", captures=[("vm9", "both")])
