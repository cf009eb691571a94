"""Translation of flowmodel actions into the OpenFlow messages the os-ken app sends."""
from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3_parser as parser

from mirrorlab.controller.flowmodel import SetField
from mirrorlab.controller.ofproto import ofp_action


def round_trip(action):
    """The action as OVS would read it: serialized, then parsed back by os-ken."""
    buf = bytearray()
    action.serialize(buf, 0)
    return parser.OFPAction.parser(bytes(buf), 0)


def test_clearing_the_input_port_is_a_load_into_nxm_in_port():
    """OpenFlow forbids Set-Field on OXM in_port (OVS answers OFPBAC_BAD_SET_ARGUMENT), so a
    copy's SetField("in_port", 0) goes out as a load into OVS's NXM in_port, all 16 bits."""
    parsed = round_trip(ofp_action(SetField("in_port", 0)))
    assert isinstance(parsed, parser.NXActionRegLoad)
    assert (parsed.dst, parsed.value, parsed.ofs_nbits) == ("in_port_nxm", 0, 15)


def test_other_fields_are_set_fields():
    """Every other SetField is an OpenFlow Set-Field."""
    parsed = round_trip(ofp_action(SetField("eth_src", "00:00:5e:00:01:00")))
    assert isinstance(parsed, parser.OFPActionSetField)
    assert (parsed.key, parsed.value) == ("eth_src", "00:00:5e:00:01:00")
