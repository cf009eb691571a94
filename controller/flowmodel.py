"""A small, library-free description of OpenFlow flows, as the pure flow computation returns them.

The os-ken app translates these into FlowMods (`controller.ofproto`); tests run them on a
software flow table (`mirrorlab.testing.flowsim`); `Flow.ofctl()` prints them as `ovs-ofctl` would.

Cookies: the high 32 bits name the owner of a flow (the base forwarding, or one capture), the
low 32 bits are a digest of the flow itself. Everything one capture installed is therefore found
with `cookie=OWNER<<32/0xffffffff00000000`, and reconciliation compares installed and desired
flows by (table, priority, cookie) alone, without parsing actions back.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Union

BASE_OWNER = 0x01000000
CAPTURE_OWNER = 0x02000000
# Every flow that applies network policies (routing between networks, deny, policy mirrors).
POLICY_OWNER = 0x03000000
OWNER_MASK = 0xFFFFFFFF00000000


def capture_owner(capture_id: int) -> int:
    """The cookie owner (high 32 bits) of every flow of capture `capture_id`."""
    return CAPTURE_OWNER | capture_id


def capture_of_cookie(cookie: int) -> int | None:
    """The id of the capture that owns a flow with this cookie, or None when the flow is not a
    capture's (the base forwarding, or a cookie this controller never writes)."""
    owner = cookie >> 32
    if owner & 0xFF000000 != CAPTURE_OWNER:
        return None
    return owner & 0x00FFFFFF


def owner_of_cookie(cookie: int) -> str | None:
    """Who installed a flow with this cookie: "base" (the forwarding pipeline), "capture" (a
    capture's mirroring), "policy" (network policies), or None for a cookie this controller
    never writes."""
    if capture_of_cookie(cookie) is not None:
        return "capture"
    return {BASE_OWNER: "base", POLICY_OWNER: "policy"}.get(cookie >> 32)


@dataclass(frozen=True)
class Output:
    """Send the packet out of `port` (an OpenFlow port number, or "in_port")."""

    port: Union[int, str]

    def ofctl(self) -> str:
        return "IN_PORT" if self.port == "in_port" else f"output:{self.port}"


@dataclass(frozen=True)
class SetField:
    """Set header or register `field` to `value`."""

    field: str
    value: Union[int, str]

    def ofctl(self) -> str:
        return f"set_field:{self.value}->{self.field}"


@dataclass(frozen=True)
class Move:
    """Copy the whole of field `src` into field `dst`."""

    src: str
    dst: str

    def ofctl(self) -> str:
        return f"move:{self.src}->{self.dst}"


@dataclass(frozen=True)
class Encap:
    """Push a header: "mpls" (Ethernet-in-MPLS, label 0 until set) or "ethernet"."""

    header: str

    def ofctl(self) -> str:
        return f"encap({self.header})"


@dataclass(frozen=True)
class Decap:
    """Pop the outermost header. After an outer Ethernet header is popped, popping the
    MPLS header needs the payload type, which for our overlay is always Ethernet."""

    inner_ethernet: bool = False

    def ofctl(self) -> str:
        return "decap(packet_type(ns=0,type=0))" if self.inner_ethernet else "decap()"


@dataclass(frozen=True)
class PushVlan:
    """Push an 802.1Q header; its VLAN id is set next, SetField("vlan_vid", 0x1000 | id)."""

    def ofctl(self) -> str:
        return "push_vlan:0x8100"


@dataclass(frozen=True)
class PopVlan:
    """Pop the outermost 802.1Q header."""

    def ofctl(self) -> str:
        return "pop_vlan"


@dataclass(frozen=True)
class DecTtl:
    """Decrement the IPv4 TTL or the IPv6 hop limit (a router's hop); a packet whose TTL runs
    out is dropped."""

    def ofctl(self) -> str:
        return "dec_ttl"


@dataclass(frozen=True)
class Clone:
    """Run `actions` on a copy of the packet; the original continues unchanged."""

    actions: tuple

    def ofctl(self) -> str:
        return "clone(" + ",".join(a.ofctl() for a in self.actions) + ")"


@dataclass(frozen=True)
class Resubmit:
    """Look the packet up in `table` now, then carry on with the remaining actions."""

    table: int

    def ofctl(self) -> str:
        return f"resubmit(,{self.table})"


@dataclass(frozen=True)
class Ct:
    """Open vSwitch's connection tracker: look the packet up in conntrack `zone` (and `commit`
    its connection, so that packets answering it are seen as replies, ct_state `+rpl`). With
    `table`, the packet then continues in that table with its ct_state set (a recirculation);
    without, the remaining actions run on it."""

    zone: int
    commit: bool = False
    table: int | None = None

    def ofctl(self) -> str:
        parts = (["commit"] if self.commit else []) + (
            [f"table={self.table}"] if self.table is not None else []) + [f"zone={self.zone}"]
        return "ct(" + ",".join(parts) + ")"


# ct_state bits (Open vSwitch's): the packet went through the tracker; it answers a connection.
CT_TRACKED = 0x20
CT_REPLY = 0x08

Action = Union[Output, SetField, Move, Encap, Decap, PushVlan, PopVlan, DecTtl, Clone, Resubmit, Ct]
MatchValue = Union[int, str, tuple]


@dataclass(frozen=True)
class Flow:
    """One flow entry. `match` is a sorted tuple of (field, value) or (field, (value, mask))."""

    table: int
    priority: int
    match: tuple[tuple[str, MatchValue], ...]
    actions: tuple[Action, ...] = ()
    goto: int | None = None
    owner: int = BASE_OWNER

    @functools.cached_property
    def cookie(self) -> int:
        """Owner in the high 32 bits, a digest of the flow's content in the low 32 bits."""
        digest = hashlib.blake2b(self.ofctl(with_cookie=False).encode(), digest_size=4).digest()
        return (self.owner << 32) | int.from_bytes(digest, "big")

    @property
    def key(self) -> tuple[int, int, int]:
        """What reconciliation compares an installed flow by."""
        return (self.table, self.priority, self.cookie)

    def ofctl(self, with_cookie: bool = True) -> str:
        """The flow in `ovs-ofctl add-flow` syntax."""
        parts = [f"cookie={self.cookie:#x}"] if with_cookie else []
        parts += [f"table={self.table}", f"priority={self.priority}"]
        for field, value in self.match:
            if isinstance(value, tuple):
                parts.append(f"{field}={value[0]}/{value[1]}")
            else:
                parts.append(f"{field}={value}")
        actions = [a.ofctl() for a in self.actions]
        if self.goto is not None:
            actions.append(f"goto_table:{self.goto}")
        return ",".join(parts) + " actions=" + (",".join(actions) or "drop")


def flow(table: int, priority: int, actions=(), goto: int | None = None, owner: int = BASE_OWNER,
         **match: MatchValue) -> Flow:
    """Build a `Flow`, with the match given as keywords."""
    return Flow(table=table, priority=priority, match=tuple(sorted(match.items())),
                actions=tuple(actions), goto=goto, owner=owner)
