"""Translation of `controller.flowmodel` flows into os-ken OpenFlow 1.3 messages.

os-ken lacks three Open vSwitch extensions the overlay needs (generic `encap`, `decap` and
`clone`); they are defined here after OVS's wire format (include/openvswitch/ofp-actions.h).
It lacks two match fields the gateway's neighbour advertisements set too, Open vSwitch's
`nd_reserved` (the flags) and `nd_options_type`: OXM class 0x1000 (ERICOXM_OF), fields 1 and
2, registered here with os-ken's OpenFlow 1.3 fields.
"""
from __future__ import annotations

import struct

from os_ken.lib import type_desc
from os_ken.ofproto import nicira_ext, oxm_fields
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from mirrorlab.controller.flowmodel import (
    Clone, Ct, Decap, DecTtl, Encap, Flow, Move, Output, PopVlan, PushVlan, Resubmit, SetField,
)

NXAST_CLONE = 42
NXAST_RAW_ENCAP = 46
NXAST_RAW_DECAP = 47
NX_IN_PORT = 0xFFF8  # Nicira actions number ports as OpenFlow 1.0 does
NX_CT_F_COMMIT = 1
NX_CT_RECIRC_NONE = 0xFF  # ct() without table=: no recirculation
PACKET_TYPE_ETHERNET = 0x00000000
PACKET_TYPE_MPLS = 0x00018847  # namespace 1 (Ethertype), type 0x8847
PACKET_TYPE_USE_NEXT_PROTO = 0x0000FFFE
FIELD_BITS = {"eth_src": 48, "eth_dst": 48, "arp_sha": 48, "arp_tha": 48, "arp_spa": 32,
              "arp_tpa": 32, "ipv6_src": 128, "ipv6_dst": 128}


class EricssonExtended(oxm_fields._OxmClass):
    """Open vSwitch's ERICOXM_OF match fields (OXM class 0x1000)."""

    _class = 0x1000


ERICSSON_FIELDS = (EricssonExtended("nd_reserved", 1, type_desc.Int4),
                   EricssonExtended("nd_options_type", 2, type_desc.Int1))
if not any(field.name == "nd_reserved" for field in ofp.oxm_types):
    ofp.oxm_types.extend(ERICSSON_FIELDS)
    oxm_fields.generate(ofp.__name__)


class NXActionEncap(parser.NXAction):
    """OVS `encap(HEADER)`: push a header, changing the packet type to `new_packet_type`."""

    _subtype = NXAST_RAW_ENCAP

    def __init__(self, new_packet_type: int, type_=None, len_=None, vendor=None, subtype=None):
        super().__init__()
        self.new_packet_type = new_packet_type

    @classmethod
    def parser(cls, buf):
        _hdr_size, new_packet_type = struct.unpack_from("!HI", buf, 0)
        return cls(new_packet_type)

    def serialize_body(self):
        return bytearray(struct.pack("!HI", 0, self.new_packet_type))


class NXActionDecap(parser.NXAction):
    """OVS `decap()`: pop the outermost header; `new_packet_type` says what is left."""

    _subtype = NXAST_RAW_DECAP

    def __init__(self, new_packet_type: int, type_=None, len_=None, vendor=None, subtype=None):
        super().__init__()
        self.new_packet_type = new_packet_type

    @classmethod
    def parser(cls, buf):
        (new_packet_type,) = struct.unpack_from("!2xI", buf, 0)
        return cls(new_packet_type)

    def serialize_body(self):
        return bytearray(struct.pack("!2xI", self.new_packet_type))


class NXActionClone(parser.NXAction):
    """OVS `clone(ACTIONS)`: run ACTIONS on a copy of the packet."""

    _subtype = NXAST_CLONE

    def __init__(self, actions, type_=None, len_=None, vendor=None, subtype=None):
        super().__init__()
        self.actions = actions

    @classmethod
    def parser(cls, buf):
        actions, offset = [], 6
        while offset < len(buf):
            action = parser.OFPAction.parser(buf, offset)
            actions.append(action)
            offset += action.len
        return cls(actions)

    def serialize_body(self):
        nested = bytearray()
        for action in self.actions:
            start = len(nested)
            action.serialize(nested, start)
            nested += bytes(start + action.len - len(nested))  # pad what os-ken left short
        return bytearray(6) + nested


# os-ken's parser decodes Nicira actions by subtype: without these, a flow dump from the switch
# would read encap(mpls) as os-ken's encap(ethernet) and decap and clone as unknown actions.
for _action_class in (NXActionEncap, NXActionDecap, NXActionClone):
    parser.NXAction.register(_action_class)


ETH_P_8021Q = 0x8100

def ofp_action(action):
    """The os-ken action for one flowmodel action."""
    if isinstance(action, Output):
        port = ofp.OFPP_IN_PORT if action.port == "in_port" else action.port
        return parser.OFPActionOutput(port, 0)
    if isinstance(action, SetField) and action.field == "in_port":
        # OpenFlow forbids Set-Field on OXM in_port (OVS refuses it: OFPBAC_BAD_SET_ARGUMENT);
        # OVS's own NXM in_port is writable by a load, as `set_field:N->in_port` in ovs-ofctl.
        return parser.NXActionRegLoad(ofs_nbits=nicira_ext.ofs_nbits(0, 15), dst="in_port_nxm",
                                      value=action.value)
    if isinstance(action, SetField):
        return parser.OFPActionSetField(**{action.field: action.value})
    if isinstance(action, Move):
        return parser.NXActionRegMove(src_field=action.src, dst_field=action.dst,
                                      n_bits=FIELD_BITS[action.src], src_ofs=0, dst_ofs=0)
    if isinstance(action, Encap):
        return NXActionEncap(PACKET_TYPE_MPLS if action.header == "mpls" else PACKET_TYPE_ETHERNET)
    if isinstance(action, Decap):
        return NXActionDecap(PACKET_TYPE_ETHERNET if action.inner_ethernet
                             else PACKET_TYPE_USE_NEXT_PROTO)
    if isinstance(action, PushVlan):
        return parser.OFPActionPushVlan(ETH_P_8021Q)
    if isinstance(action, PopVlan):
        return parser.OFPActionPopVlan()
    if isinstance(action, DecTtl):
        return parser.OFPActionDecNwTtl()
    if isinstance(action, Clone):
        return NXActionClone([ofp_action(a) for a in action.actions])
    if isinstance(action, Resubmit):
        return parser.NXActionResubmitTable(in_port=NX_IN_PORT, table_id=action.table)
    if isinstance(action, Ct):
        # An immediate zone: no source field, the zone number in zone_ofs_nbits.
        return parser.NXActionCT(flags=NX_CT_F_COMMIT if action.commit else 0, zone_src="",
                                 zone_ofs_nbits=action.zone,
                                 recirc_table=NX_CT_RECIRC_NONE if action.table is None else action.table,
                                 alg=0, actions=[])
    raise TypeError(f"no OpenFlow translation for {action!r}")


def ofp_match(flow: Flow) -> parser.OFPMatch:
    """The os-ken match of `flow`."""
    return parser.OFPMatch(**dict(flow.match))


def add_flow(datapath, flow: Flow) -> parser.OFPFlowMod:
    """The FlowMod that installs `flow`."""
    instructions = []
    if flow.actions:
        instructions.append(parser.OFPInstructionActions(
            ofp.OFPIT_APPLY_ACTIONS, [ofp_action(a) for a in flow.actions]))
    if flow.goto is not None:
        instructions.append(parser.OFPInstructionGotoTable(flow.goto))
    return parser.OFPFlowMod(datapath, cookie=flow.cookie, table_id=flow.table,
                             command=ofp.OFPFC_ADD, priority=flow.priority,
                             match=ofp_match(flow), instructions=instructions)


def delete_flow(datapath, table: int, priority: int, cookie: int, match) -> parser.OFPFlowMod:
    """The FlowMod that deletes exactly one flow: same table, priority, match and cookie."""
    return parser.OFPFlowMod(datapath, cookie=cookie, cookie_mask=0xFFFFFFFFFFFFFFFF,
                             table_id=table, command=ofp.OFPFC_DELETE_STRICT, priority=priority,
                             out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=match)
