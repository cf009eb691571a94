"""A capture's destination: Contrail's `mirror_to` (MirrorActionType), field for field. No I/O.

`parse_mirror_to` turns what a user sent into a `MirrorTo`, checking each field as Contrail's
schema and agent do; every error names the field (`mirror_to.<name>`). Which analyzer VM a
dynamic destination names is settled later, against the topology (`MirrorTo.for_analyzer`).

The combinations Contrail accepts: dynamic with the Juniper header (the default), dynamic
without it, static without it (static with the header is refused), each optionally
NIC-assisted. `juniper_header` left out means true, except with `nh_mode: static`, whose only
valid value is false.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, replace

from mirrorlab.controller.errors import Conflict, InvalidRequest, MirrorlabError, NotFound

DEFAULT_UDP_PORT = 8099
NH_MODES = ("dynamic", "static")
MAX_VNI = 0xFFFFFF
MAX_VLAN = 4094
MAC_PATTERN = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")

MIRROR_TO_FIELDS = ("analyzer_name", "analyzer_ip_address", "analyzer_mac_address",
                    "routing_instance", "udp_port", "juniper_header", "nh_mode",
                    "static_nh_header", "nic_assisted_mirroring", "nic_assisted_mirroring_vlan")
STATIC_NH_HEADER_FIELDS = ("vtep_dst_ip_address", "vtep_dst_mac_address", "vni")


@dataclass(frozen=True)
class StaticNhHeader:
    """Where a static destination sends its VXLAN: the VTEP's fabric address and MAC, the VNI."""

    vtep_dst_ip_address: str
    vtep_dst_mac_address: str
    vni: int


@dataclass(frozen=True)
class MirrorTo:
    """Contrail's MirrorActionType: where and how a capture's copies travel."""

    analyzer_name: str | None = None
    analyzer_ip_address: str | None = None
    analyzer_mac_address: str | None = None
    routing_instance: str | None = None
    udp_port: int = DEFAULT_UDP_PORT
    juniper_header: bool = True
    nh_mode: str = "dynamic"
    static_nh_header: StaticNhHeader | None = None
    nic_assisted_mirroring: bool = False
    nic_assisted_mirroring_vlan: int | None = None

    @property
    def to_fabric(self) -> bool:
        """Whether the copies go to a fabric analyzer (static: its VTEP; NIC-assisted: the
        fabric switch's mirror) rather than to an analyzer instance."""
        return self.nh_mode == "static" or self.nic_assisted_mirroring

    def for_analyzer(self, name: str, ip: str, mac: str, network: str) -> "MirrorTo":
        """This destination with the analyzer `name` (address `ip`, MAC `mac`, in `network`)
        filled in; a field the user gave that disagrees with the analyzer is a conflict."""
        given = {"analyzer_ip_address": (self.analyzer_ip_address, ip),
                 "analyzer_mac_address": (self.analyzer_mac_address, mac),
                 "routing_instance": (self.routing_instance, network)}
        for field_name, (wanted, actual) in given.items():
            if wanted is not None and wanted != actual:
                raise Conflict(f"mirror_to.{field_name} '{wanted}' is not analyzer "
                                     f"'{name}''s ({actual})", f"mirror_to.{field_name}")
        return replace(self, analyzer_name=name, analyzer_ip_address=ip, analyzer_mac_address=mac,
                       routing_instance=network)

    def to_dict(self) -> dict:
        """The destination as Contrail's API shows it (every field, JSON-ready)."""
        return asdict(self)


def _refuse(field_name: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"mirror_to.{field_name}: {message}", f"mirror_to.{field_name}")


def _typed(data: dict, field_name: str, kind: type, where: str = ""):
    value = data.get(field_name)
    if value is None:
        return None
    # JSON booleans are not numbers here, though Python's bool is an int.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _refuse(where + field_name, f"expected {kind.__name__}, got {value!r}")
    return value


def _ipv4(data: dict, field_name: str, where: str = "") -> str | None:
    value = _typed(data, field_name, str, where)
    if value is None:
        return None
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise _refuse(where + field_name, f"'{value}' is not an IPv4 address") from None


def _mac(data: dict, field_name: str, where: str = "") -> str | None:
    value = _typed(data, field_name, str, where)
    if value is None:
        return None
    if not MAC_PATTERN.match(value):
        raise _refuse(where + field_name, f"'{value}' is not a MAC address (like 02:00:0a:fa:02:02)")
    return value.lower()


def _unknown_fields(data: dict, known: tuple[str, ...], where: str = "") -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise _refuse(where + unknown[0], f"unknown field (known: {', '.join(known)})")


def _static_nh_header(data) -> StaticNhHeader | None:
    if data is None:
        return None
    where = "static_nh_header."
    if not isinstance(data, dict):
        raise _refuse("static_nh_header", f"expected an object, got {data!r}")
    _unknown_fields(data, STATIC_NH_HEADER_FIELDS, where)
    ip, mac = _ipv4(data, "vtep_dst_ip_address", where), _mac(data, "vtep_dst_mac_address", where)
    vni = _typed(data, "vni", int, where)
    for field_name, value in (("vtep_dst_ip_address", ip), ("vtep_dst_mac_address", mac),
                              ("vni", vni)):
        if value is None:
            raise _refuse(where + field_name, "missing (a static destination needs the VTEP's "
                                              "address, MAC and the VNI)")
    if not 1 <= vni <= MAX_VNI:
        raise _refuse(where + "vni", f"{vni} is out of range (1..{MAX_VNI})")
    return StaticNhHeader(ip, mac, vni)


def parse_mirror_to(data: dict | None) -> MirrorTo:
    """The `MirrorTo` that `data` (a `mirror_to` object as the API takes it; None for the
    default) describes, checked field by field as Contrail does."""
    if data is None:
        return MirrorTo()
    if not isinstance(data, dict):
        raise InvalidRequest(f"mirror_to: expected an object, got {data!r}", "mirror_to")
    _unknown_fields(data, MIRROR_TO_FIELDS)
    name = _typed(data, "analyzer_name", str)
    if name == "":
        raise _refuse("analyzer_name", "empty (leave it out for the default analyzer)")
    routing_instance = _typed(data, "routing_instance", str)
    udp_port = _typed(data, "udp_port", int) or DEFAULT_UDP_PORT  # 0 means the default, as in Contrail
    if not 1 <= udp_port <= 65535:
        raise _refuse("udp_port", f"{udp_port} is out of range (1..65535; 0 or absent: "
                                  f"{DEFAULT_UDP_PORT})")
    nh_mode = _typed(data, "nh_mode", str) or "dynamic"
    if nh_mode not in NH_MODES:
        raise _refuse("nh_mode", f"'{nh_mode}' is not a next-hop mode (use dynamic or static)")
    juniper_header = _typed(data, "juniper_header", bool)
    if juniper_header is None:
        juniper_header = nh_mode == "dynamic"
    if nh_mode == "static" and juniper_header:
        raise _refuse("juniper_header", "a static destination takes no Juniper header "
                                        "(set juniper_header false or nh_mode dynamic)")
    static = _static_nh_header(data.get("static_nh_header"))
    if nh_mode == "static" and static is None:
        raise _refuse("static_nh_header", "missing (nh_mode static needs vtep_dst_ip_address, "
                                          "vtep_dst_mac_address and vni)")
    if nh_mode == "dynamic" and static is not None:
        raise _refuse("static_nh_header", "only for nh_mode static")
    nic_assisted = bool(_typed(data, "nic_assisted_mirroring", bool))
    vlan = _typed(data, "nic_assisted_mirroring_vlan", int)
    if vlan is not None and not 1 <= vlan <= MAX_VLAN:
        raise _refuse("nic_assisted_mirroring_vlan", f"{vlan} is out of range (1..{MAX_VLAN})")
    if nic_assisted and vlan is None:
        raise _refuse("nic_assisted_mirroring_vlan", "missing (NIC-assisted mirroring tags the "
                                                     "VM's packets with this VLAN)")
    if vlan is not None and not nic_assisted:
        raise _refuse("nic_assisted_mirroring_vlan", "only with nic_assisted_mirroring true")
    return MirrorTo(analyzer_name=name, analyzer_ip_address=_ipv4(data, "analyzer_ip_address"),
                    analyzer_mac_address=_mac(data, "analyzer_mac_address"),
                    routing_instance=routing_instance, udp_port=udp_port,
                    juniper_header=juniper_header, nh_mode=nh_mode, static_nh_header=static,
                    nic_assisted_mirroring=nic_assisted, nic_assisted_mirroring_vlan=vlan)


def mirror_to_from_dict(data: dict) -> MirrorTo:
    """The `MirrorTo` that `MirrorTo.to_dict` wrote (for the capture store)."""
    static = data.get("static_nh_header")
    return MirrorTo(**(data | {"static_nh_header": StaticNhHeader(**static) if static else None}))


def _not_yet(field_name: str, message: str) -> Conflict:
    return Conflict(f"mirror_to.{field_name}: {message}", f"mirror_to.{field_name}")


def not_on_the_wire_yet(mirror_to: MirrorTo) -> Conflict | None:
    """Why the lab cannot send copies to `mirror_to` yet (a limit of this lab, not an invalid
    destination), naming the field, or None. The lab sends dynamic destinations (with the
    Juniper header to any UDP port, or without it), static ones, and emulates NIC-assisted
    mirroring to a fabric analyzer; NIC-assisted with static is refused rather than silently
    sent another way."""
    if mirror_to.nic_assisted_mirroring and mirror_to.nh_mode == "static":
        return _not_yet("nic_assisted_mirroring", "NIC-assisted mirroring with nh_mode static "
                                                  "is not emulated (the NIC mirrors to a fabric "
                                                  "analyzer; leave nh_mode dynamic)")
    return None


def refusal_within(err: MirrorlabError, where: str) -> MirrorlabError:
    """A refusal of a mirror_to field (`mirror_to.udp_port: ...`) said of the mirror_to found
    within `where` (`virtual_machine_interface_properties.interface_mirror` gives
    `virtual_machine_interface_properties.interface_mirror.mirror_to.udp_port: ...`); other
    refusals as they are. Something the field names that does not exist (a VTEP, an analyzer)
    becomes bad input (400): in the configuration API a 404 would say the object written is
    missing."""
    if not (err.field or "").startswith("mirror_to"):
        return err
    field = f"{where}.{err.field}"
    if err.message.startswith(err.field):
        message = where + "." + err.message
    else:
        message = f"{field}: {err.message}"
    return (InvalidRequest if isinstance(err, NotFound) else type(err))(message, field)
