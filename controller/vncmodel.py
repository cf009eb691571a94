"""Contrail's configuration objects for the running lab: pure functions, no I/O.

The lab's topology, analyzers and port-mirroring captures are shown as the objects
`contrail-api` serves (domain, project, network-ipam, virtual-network, virtual-machine,
virtual-machine-interface, instance-ip, service-template, service-instance), each with a stable
uuid derived from its type and fq_name, so a client that read a uuid once can use it after a
controller restart. `controller.vncserver` serves them over HTTP.

What a client may write is checked here too: `parse_interface_mirror` turns a
virtual-machine-interface's `interface_mirror` into a `PortMirror` (its `mirror_to` translated
for the capture service, which checks it field by field: `controller.mirrorto`), naming the
field at fault; `shown_mirror_to` turns a running capture's destination back into the
MirrorActionType a client reads.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

from mirrorlab.controller.errors import InvalidRequest
from mirrorlab.controller.mirroring import PORT_ORIGIN, Capture, Direction, analyzers
from mirrorlab.controller.mirrorto import MirrorTo
from mirrorlab.topology import CONTRAIL_DOMAIN, Topology, subnet_gateway

IPAM = "default-network-ipam"
ANALYZER_TEMPLATE = "analyzer-template"
# The uuid namespace of every object of this lab: uuid5(NAMESPACE, "type:fq:name").
NAMESPACE = uuid.UUID("6d6c6162-636f-6e66-6967-2d6170690000")


@dataclass(frozen=True)
class Ref:
    """A reference from one object to another (`to` is the target's fq_name)."""

    type: str
    to: tuple[str, ...]
    attr: Mapping | None = None


@dataclass(frozen=True)
class ConfigObject:
    """One configuration object as contrail-api stores it."""

    type: str
    fq_name: tuple[str, ...]
    parent_type: str | None
    props: Mapping = field(default_factory=dict)
    refs: tuple[Ref, ...] = ()

    @property
    def uuid(self) -> str:
        """Stable: the same type and fq_name always have the same uuid."""
        return object_uuid(self.type, self.fq_name)

    @property
    def name(self) -> str:
        """The last part of its fq_name."""
        return self.fq_name[-1]

    @property
    def parent_fq_name(self) -> tuple[str, ...] | None:
        """Its parent's fq_name, or None for an object under config-root."""
        return self.fq_name[:-1] if self.parent_type else None


@dataclass(frozen=True)
class TypeInfo:
    """What this lab serves of one Contrail object type."""

    parent: str | None  # None: under config-root
    props: tuple[str, ...]
    refs: tuple[str, ...]  # the types it refers to
    writable: tuple[str, ...] = ()  # fields a PUT may change; the rest mirror the topology


# Fields every object has; a PUT may repeat them unchanged.
COMMON_FIELDS = ("uuid", "fq_name", "name", "display_name", "parent_type", "parent_uuid",
                 "parent_href", "href", "id_perms", "perms2", "annotations")
TYPES: Mapping[str, TypeInfo] = MappingProxyType({
    "domain": TypeInfo(None, (), ()),
    "project": TypeInfo("domain", (), ()),
    "network-ipam": TypeInfo("project", ("ipam_subnet_method",), ()),
    "virtual-network": TypeInfo("project", ("virtual_network_network_id",),
                                ("network-ipam", "network-policy"), writable=("network_policy_refs",)),
    "virtual-machine": TypeInfo(None, (), ("service-instance",)),
    "virtual-machine-interface": TypeInfo(
        "project", ("virtual_machine_interface_mac_addresses", "virtual_machine_interface_properties"),
        ("virtual-network", "virtual-machine"), writable=("virtual_machine_interface_properties",)),
    "instance-ip": TypeInfo(None, ("instance_ip_address", "instance_ip_family"),
                            ("virtual-network", "virtual-machine-interface")),
    "service-template": TypeInfo("domain", ("service_template_properties",), ()),
    "service-instance": TypeInfo("project", ("service_instance_properties",), ("service-template",)),
    "network-policy": TypeInfo("project", ("network_policy_entries",), (),
                               writable=("network_policy_entries",)),
})
# Types whose objects clients create and delete; every other object mirrors the running lab.
CREATABLE = frozenset({"network-policy"})
# VirtualMachineInterfacePropertiesType and its parts, as the schema names their fields.
VMI_PROPERTIES_FIELDS = ("service_interface_type", "interface_mirror", "local_preference",
                         "sub_interface_vlan_tag", "max_flows")
INTERFACE_MIRROR_FIELDS = ("traffic_direction", "mirror_to")
# MirrorActionType's field that Contrail documents as "not used currently": taken and ignored.
UNUSED_MIRROR_TO_FIELDS = ("encapsulation",)


def object_uuid(obj_type: str, fq_name: Iterable[str]) -> str:
    """The uuid of the object of type `obj_type` named `fq_name` (uuid5, stable)."""
    return str(uuid.uuid5(NAMESPACE, f"{obj_type}:{':'.join(fq_name)}"))


def collection_name(obj_type: str) -> str:
    """The URL of a type's collection, as contrail-api names it: virtual-network -> virtual-networks."""
    return f"{obj_type}s"


def field_name(obj_type: str) -> str:
    """A type as it appears in field names: virtual-network -> virtual_network."""
    return obj_type.replace("-", "_")


@dataclass(frozen=True)
class PortMirror:
    """A virtual-machine-interface's interface_mirror, as the capture service takes it."""

    direction: Direction
    # The capture service's mirror_to (`controller.mirrorto.parse_mirror_to` checks it).
    mirror_to: Mapping


def port_mirrors(captures: Iterable[Capture]) -> dict[str, Capture]:
    """The active port-configured captures by vRouter port name (the newest, while a changed
    setting's new capture and its old one overlap)."""
    return {c.interface: c for c in sorted(captures, key=lambda c: c.id)
            if c.active and c.origin == PORT_ORIGIN}


def lab_objects(topology: Topology, mirrors: Mapping[str, Capture],
                written: Iterable[ConfigObject] = (),
                written_refs: Mapping[str, tuple[Ref, ...]] = MappingProxyType({})) -> list[ConfigObject]:
    """Every configuration object of the running lab: its topology (networks, VMs and their
    interfaces), its analyzers as service instances, each interface's `mirrors` entry (by
    vRouter port name: the port capture) as its interface_mirror, the objects clients `written` (network
    policies), and the refs clients set on the lab's objects (`written_refs`, by owner uuid)."""
    project = topology.project_fq_name
    ipam = project + (IPAM,)
    template = (CONTRAIL_DOMAIN, ANALYZER_TEMPLATE)
    objects = [
        ConfigObject("domain", (CONTRAIL_DOMAIN,), None),
        ConfigObject("project", project, "domain"),
        ConfigObject("network-ipam", ipam, "project", {"ipam_subnet_method": "user-defined-subnet"}),
        ConfigObject("service-template", template, "domain", {"service_template_properties": {
            "version": 2, "service_mode": "transparent", "service_type": "analyzer",
            "interface_type": [{"service_interface_type": "left"}]}}),
    ]
    for network in topology.networks:
        subnets = [{"subnet": {"ip_prefix": str(net.network_address), "ip_prefix_len": net.prefixlen},
                    "default_gateway": str(subnet_gateway(net)),
                    "subnet_name": f"{network.name}-v{net.version}"}
                   for net in (network.subnet, network.subnet6) if net is not None]
        fq_name = topology.network_fq_name(network.name)
        objects.append(ConfigObject(
            "virtual-network", fq_name, "project", {"virtual_network_network_id": network.index},
            (Ref("network-ipam", ipam, {"ipam_subnets": subnets}),)
            + written_refs.get(object_uuid("virtual-network", fq_name), ())))
    instances = {vm.name: name for name, vm in analyzers(topology).items()}
    for name, vm in analyzers(topology).items():
        objects.append(ConfigObject(
            "service-instance", project + (name,), "project",
            {"service_instance_properties": {
                "interface_list": [{"virtual_network": ":".join(topology.network_fq_name(vm.interfaces[0].network))}],
                "left_virtual_network": ":".join(topology.network_fq_name(vm.interfaces[0].network))}},
            (Ref("service-template", template),)))
    for vm in topology.vms:
        instance = instances.get(vm.name)
        objects.append(ConfigObject(
            "virtual-machine", (vm.name,), None, {},
            (Ref("service-instance", project + (instance,)),) if instance else ()))
        for interface in vm.interfaces:
            vmi = project + (interface.name,)
            properties = {"service_interface_type": "left"} if instance else {}
            capture = mirrors.get(interface.port_name)
            if capture is not None:
                properties["interface_mirror"] = {
                    "traffic_direction": capture.direction.value,
                    "mirror_to": shown_mirror_to(capture.mirror_to, instances.values(), project)}
            objects.append(ConfigObject(
                "virtual-machine-interface", vmi, "project",
                {"virtual_machine_interface_mac_addresses": {"mac_address": [interface.mac]},
                 "virtual_machine_interface_properties": properties or None},
                (Ref("virtual-network", topology.network_fq_name(interface.network)),
                 Ref("virtual-machine", (vm.name,)))))
            addresses = [("v4", interface.ip)] + ([("v6", interface.ip6)] if interface.ip6 else [])
            for family, address in addresses:
                objects.append(ConfigObject(
                    "instance-ip", (f"{interface.name}-{family}",), None,
                    {"instance_ip_address": str(address), "instance_ip_family": family},
                    (Ref("virtual-network", topology.network_fq_name(interface.network)),
                     Ref("virtual-machine-interface", vmi))))
    return objects + list(written)


class Catalog:
    """The lab's objects indexed as the API looks them up: by uuid, by type and fq_name, and
    their children and back-refs."""

    def __init__(self, objects: Iterable[ConfigObject]):
        self.by_uuid = {o.uuid: o for o in objects}
        self.by_name = {(o.type, o.fq_name): o for o in self.by_uuid.values()}
        self.children: dict[str, list[ConfigObject]] = {}
        self.back_refs: dict[str, list[tuple[ConfigObject, Ref]]] = {}
        for obj in self.by_uuid.values():
            if obj.parent_type:
                self.children.setdefault(object_uuid(obj.parent_type, obj.parent_fq_name), []).append(obj)
            for ref in obj.refs:
                self.back_refs.setdefault(object_uuid(ref.type, ref.to), []).append((obj, ref))

    def of_type(self, obj_type: str) -> list[ConfigObject]:
        """Every object of `obj_type`, by fq_name."""
        return sorted((o for o in self.by_uuid.values() if o.type == obj_type), key=lambda o: o.fq_name)


def render(obj: ConfigObject, catalog: Catalog, base_url: str, fields: set[str] | None = None,
           back_refs: bool = True, children: bool = True) -> dict:
    """The JSON body contrail-api returns for `obj` (without the type wrapper): identity, its
    properties and refs, then its back-refs and children unless excluded; with `fields`, as
    contrail-api, the back-refs and children named there instead."""

    def href(obj_type: str, obj_uuid: str) -> str:
        return f"{base_url}/{obj_type}/{obj_uuid}"

    def link(target: ConfigObject, attr=None, with_attr: bool = False) -> dict:
        entry = {"to": list(target.fq_name), "href": href(target.type, target.uuid), "uuid": target.uuid}
        if with_attr:
            entry["attr"] = attr
        return entry

    def wanted(name: str, default: bool) -> bool:
        return name in fields if fields else default  # for back-refs and children

    body = {"uuid": obj.uuid, "fq_name": list(obj.fq_name), "name": obj.name,
            "href": href(obj.type, obj.uuid)}
    if obj.parent_type:
        parent_uuid = object_uuid(obj.parent_type, obj.parent_fq_name)
        body.update(parent_type=obj.parent_type, parent_uuid=parent_uuid,
                    parent_href=href(obj.parent_type, parent_uuid))
    body["display_name"] = obj.name
    body["id_perms"] = {"enable": True, "user_visible": True}
    for prop in TYPES[obj.type].props:
        if obj.props.get(prop) is not None:
            body[prop] = obj.props[prop]
    for ref_type in TYPES[obj.type].refs:
        name = f"{field_name(ref_type)}_refs"
        refs = [ref for ref in obj.refs if ref.type == ref_type]
        if refs:
            body[name] = [link(catalog.by_name[(ref.type, ref.to)], ref.attr, with_attr=True)
                          for ref in refs]
    back = {}
    for source, ref in catalog.back_refs.get(obj.uuid, ()):
        back.setdefault(f"{field_name(source.type)}_back_refs", []).append(link(source, ref.attr, True))
    for name, entries in back.items():
        if wanted(name, back_refs):
            body[name] = entries
    kids = {}
    for child in catalog.children.get(obj.uuid, ()):
        kids.setdefault(f"{field_name(child.type)}s", []).append(link(child))
    for name, entries in kids.items():
        if wanted(name, children):
            body[name] = entries
    return body


def parse_interface_mirror(value, project: tuple[str, ...]) -> PortMirror | None:
    """The `PortMirror` a virtual-machine-interface's `interface_mirror` asks for (None: stop),
    its mirror_to translated by `service_mirror_to`. Raises `InvalidRequest` naming the field
    at fault; the capture service checks the mirror_to's values."""
    where = "virtual_machine_interface_properties.interface_mirror"
    if value is None:
        return None
    require_object(value, where, INTERFACE_MIRROR_FIELDS)
    direction = value.get("traffic_direction") or "both"
    if direction not in {d.value for d in Direction}:
        raise InvalidRequest(f"{where}.traffic_direction: bad value {direction!r} "
                             f"(use ingress, egress or both)", f"{where}.traffic_direction")
    if value.get("mirror_to") is None:
        raise InvalidRequest(f"{where}.mirror_to is missing: it says where the copies go",
                             f"{where}.mirror_to")
    return PortMirror(Direction(direction),
                      service_mirror_to(value["mirror_to"], f"{where}.mirror_to", project))


def service_mirror_to(value, where: str, project: tuple[str, ...]) -> dict:
    """A MirrorActionType as vnc_api sends it (`value`, found at `where`), as the capture
    service takes it: the fields left null dropped (vnc_api sends every field), `encapsulation`
    dropped (Contrail does not use it), `analyzer_name` (a service instance's fq_name string)
    and `routing_instance` (a routing instance's or virtual network's fq_name string) made
    the lab's bare names; everything else as it is, for the service to check."""
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}: expected an object, got {type(value).__name__}", where)
    taken = {name: given for name, given in value.items()
             if given is not None and name not in UNUSED_MIRROR_TO_FIELDS}
    if isinstance(taken.get("analyzer_name"), str):
        parts = taken["analyzer_name"].split(":")
        if len(parts) > 1 and tuple(parts[:-1]) != project:
            raise InvalidRequest(f"{where}.analyzer_name: '{taken['analyzer_name']}' is not a "
                                 f"service instance of project {':'.join(project)}",
                                 f"{where}.analyzer_name")
        taken["analyzer_name"] = parts[-1]
    if isinstance(taken.get("routing_instance"), str):
        parts = tuple(taken["routing_instance"].split(":"))
        if parts[:len(project)] == project:
            names = parts[len(project):]
        else:
            names = parts if len(parts) == 1 else ()  # a bare network name, or another project's
        # A network's default routing instance is named after it: project:network:network.
        if len(names) not in (1, 2) or len(set(names)) != 1:
            raise InvalidRequest(f"{where}.routing_instance: '{taken['routing_instance']}' is not "
                                 f"a network's routing instance in project {':'.join(project)} "
                                 f"(like {':'.join(project + ('svc-vn-left', 'svc-vn-left'))})",
                                 f"{where}.routing_instance")
        taken["routing_instance"] = names[0]
    if isinstance(taken.get("static_nh_header"), dict):
        taken["static_nh_header"] = {name: given for name, given in taken["static_nh_header"].items()
                                     if given is not None}
    return taken


def shown_mirror_to(mirror_to: MirrorTo, instances: Iterable[str], project: tuple[str, ...]) -> dict:
    """A running capture's destination as a client reads it back in interface_mirror: every
    MirrorActionType field, filled in as the capture service resolved it, with the analyzer
    named by its service instance's fq_name string (when it is one of `instances`) and the
    network by its routing instance's."""
    shown = mirror_to.to_dict()
    if shown["analyzer_name"] in set(instances):
        shown["analyzer_name"] = ":".join(project + (shown["analyzer_name"],))
    if shown["routing_instance"] is not None:
        shown["routing_instance"] = ":".join(project + (shown["routing_instance"],) * 2)
    return shown


def require_object(value, where: str, allowed: tuple[str, ...]) -> None:
    """Raise `InvalidRequest` unless `value` (found at `where`) is an object whose fields are
    all in `allowed`."""
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}: expected an object, got {type(value).__name__}", where)
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise InvalidRequest(f"{where}: unknown field '{unknown[0]}' (known: {', '.join(allowed)})",
                             f"{where}.{unknown[0]}")
