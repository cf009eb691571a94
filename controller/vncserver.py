"""Contrail's configuration API (what `contrail-api` serves on port 8082), for Contrail's own
Python client `vnc_api` and scripts written for it.

It serves the objects `controller.vncmodel` derives from the running lab, in contrail-api's JSON:
the home page `GET /` with its collection, resource-base and action links; collections
(`GET`, `POST /network-policys`); resources by uuid (`GET`, `PUT`, `DELETE
/virtual-network/<uuid>`); `POST /fqname-to-id`, `POST /id-to-fqname` and `POST /ref-update`.
Errors are contrail-api's: a status (400 bad input, 401 no token, 403 not permitted, 404
unknown, 409 conflict) and a plain-text body saying what is wrong.

Objects of the topology cannot be created or deleted here (403): the topology file is their
source. A virtual-machine-interface's `virtual_machine_interface_properties.interface_mirror`
can be set and unset: `ConfigApi.set_port_mirror` starts and stops a capture of origin "port"
through the controller's capture service, which takes its whole `mirror_to` (every mode of
`controller.mirrorto`), stores it and reconciles it after a restart.
Network policies (`controller.vncpolicy`) and the virtual networks' `network_policy_refs` are
kept in the controller's store and applied by the vRouters (`controller.policyflows`);
`ConfigApi.policy_view` describes them for the REST API's GET /api/policies.
"""
from __future__ import annotations

import hmac
import json
import logging
import threading
from dataclasses import replace

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mirrorlab.controller.errors import (
    Conflict, Forbidden, InvalidRequest, MirrorlabError, NotFound, Unauthorized,
)
from mirrorlab.controller.mirroring import PORT_ORIGIN, Capture
from mirrorlab.controller.mirrorto import refusal_within
from mirrorlab.controller.rest import ApiAccess, RequestGuard
from mirrorlab.controller.service import ControllerService
from mirrorlab.controller.vncmodel import (
    COMMON_FIELDS, CREATABLE, TYPES, VMI_PROPERTIES_FIELDS, Catalog, ConfigObject, PortMirror, Ref,
    collection_name, field_name, lab_objects, object_uuid, parse_interface_mirror, port_mirrors, render,
    require_object,
)
from mirrorlab.controller.policyview import policies_view
from mirrorlab.controller.vncpolicy import attached_rules, parse_policy_entries
from mirrorlab.topology import Interface

LOG = logging.getLogger("mirrorlab.vncserver")
DEFAULT_CONFIG_API_PORT = 8082
# The home page's actions: contrail-api's name for each, and where it answers.
ACTIONS = {"name-to-id": "/fqname-to-id", "id-to-name": "/id-to-fqname", "ref-update": "/ref-update"}
COLLECTIONS = {collection_name(t): t for t in TYPES}
TRUE_VALUES = ("true", "1", "yes")
INTERFACE_MIRROR = "virtual_machine_interface_properties.interface_mirror"
CHANGED = "interface_mirror changed through the configuration API"


class ConfigApi:
    """The configuration objects of one lab, and the writes clients may make to them: a
    virtual-machine-interface's interface_mirror (a port-configured capture), network policies,
    and a virtual network's network_policy_refs (both kept in the controller's store)."""

    def __init__(self, service: ControllerService):
        self.service = service
        # Guards what clients wrote (policies, refs); held while it is checked and changed.
        self.lock = threading.RLock()
        # Port mirrors change one at a time (held while the vRouters confirm), so two clients
        # setting one interface cannot leave two port captures on it.
        self.mirror_lock = threading.Lock()
        self.written: dict[str, ConfigObject] = {}
        for obj_type, fq_name, props in service.store.config_objects():
            obj = ConfigObject(obj_type, tuple(fq_name), TYPES[obj_type].parent, props)
            self.written[obj.uuid] = obj
        self.written_refs: dict[str, tuple[Ref, ...]] = {
            owner: tuple(Ref(_ref_type(field), tuple(ref["to"]), ref.get("attr")) for ref in refs)
            for (owner, field), refs in service.store.config_refs().items()}
        # Why the stored policies are not what the vRouters apply, until a write applies.
        self.policy_problem: str | None = None
        try:
            service.set_policies(self.rules(self.written, self.written_refs))
        except MirrorlabError as err:  # the stored policies stay, for a client to fix
            self.policy_problem = (f"the stored network policies are not applied (the vRouters "
                                   f"apply none): {err.message}")
            LOG.error("%s", self.policy_problem)

    def _policies_and_attachments(self, written: dict[str, ConfigObject],
                                  written_refs: dict[str, tuple[Ref, ...]]) -> tuple[dict, dict]:
        """The policies clients wrote (fq-name string -> network_policy_entries) and what each
        network attaches (network name -> [(policy fq-name string, (major, minor))])."""
        policies = {":".join(obj.fq_name): obj.props.get("network_policy_entries") or {}
                    for obj in written.values() if obj.type == "network-policy"}
        networks = {object_uuid("virtual-network", self.service.topology.network_fq_name(n.name)): n.name
                    for n in self.service.topology.networks}
        attachments = {}
        for owner, refs in written_refs.items():
            if owner in networks:
                attachments[networks[owner]] = [
                    (":".join(ref.to), _sequence(ref.attr)) for ref in refs
                    if ref.type == "network-policy"]
        return policies, attachments

    def rules(self, written: dict[str, ConfigObject],
              written_refs: dict[str, tuple[Ref, ...]]) -> dict:
        """The rules each network applies, from the policies and refs clients wrote."""
        return attached_rules(self.service.topology,
                              *self._policies_and_attachments(written, written_refs))

    def policy_view(self) -> dict:
        """The network policies as the Policies page shows them (`controller.policyview`):
        each with its rules and attached networks, the connections and mirrors of the rules
        the vRouters apply, and `problem`: why the stored policies are not applied, if so."""
        with self.lock, self.service.lock:
            policies, attachments = self._policies_and_attachments(self.written, self.written_refs)
            uuids = {":".join(obj.fq_name): obj.uuid for obj in self.written.values()
                     if obj.type == "network-policy"}
            return {**policies_view(self.service.topology, policies, uuids, attachments,
                                    self.service.policies), "problem": self.policy_problem}

    def _apply(self, written: dict[str, ConfigObject], written_refs: dict[str, tuple[Ref, ...]]) -> None:
        """Make the vRouters apply the policies as they would be with `written` and
        `written_refs`; raises (nothing changed) when they cannot be applied."""
        self.service.set_policies(self.rules(written, written_refs))
        self.policy_problem = None

    @property
    def project(self) -> tuple[str, ...]:
        """The fq_name of the lab's project: default-domain and the lab's name."""
        return self.service.topology.project_fq_name

    def catalog(self) -> Catalog:
        """Every object of the lab as it runs now."""
        with self.lock, self.service.lock:
            mirrors = port_mirrors(self.service.captures.values())
            return Catalog(lab_objects(self.service.topology, mirrors, self.written.values(),
                                       self.written_refs))

    def find(self, obj_type: str, obj_uuid: str) -> ConfigObject:
        """The object of `obj_type` with `obj_uuid` (NotFound otherwise)."""
        obj = self.catalog().by_uuid.get(obj_uuid)
        if obj is None or obj.type != obj_type:
            raise NotFound(f"No {obj_type} object found for id {obj_uuid}")
        return obj

    def create(self, obj_type: str, body: dict) -> ConfigObject:
        """Create an object of a type clients may create (a network-policy) from a POST's
        `body`; topology objects are refused (403)."""
        if obj_type not in CREATABLE:
            raise Forbidden(f"{obj_type} objects mirror the lab's topology "
                            f"('{self.service.topology.name}'): they cannot be created through "
                            f"this API; change the topology file instead")
        info = TYPES[obj_type]
        _refuse_unknown(obj_type, body, info.props + COMMON_FIELDS)
        fq_name = self._new_fq_name(obj_type, body)
        with self.lock:
            catalog = self.catalog()
            existing = catalog.by_name.get((obj_type, fq_name))
            if existing is not None:
                raise Conflict(f"{obj_type} {':'.join(fq_name)} already exists with uuid "
                               f"{existing.uuid}")
            obj = ConfigObject(obj_type, fq_name, info.parent, {})
            if body.get("uuid") not in (None, obj.uuid):
                raise InvalidRequest(f"uuid {body['uuid']!r}: this lab derives uuids from fq_names; "
                                     f"leave it out", "uuid")
            obj = replace(obj, props=self._checked_props(obj_type, body))
            self.service.store.save_config_object(obj.uuid, obj_type, list(fq_name), dict(obj.props))
            self.written[obj.uuid] = obj
            return obj

    def _new_fq_name(self, obj_type: str, body: dict) -> tuple[str, ...]:
        fq_name = body.get("fq_name")
        if fq_name is None:
            name = body.get("name")
            if not isinstance(name, str) or not name:
                raise InvalidRequest(f"a new {obj_type} needs fq_name or name", "fq_name")
            fq_name = list(self.project) + [name]
        if not isinstance(fq_name, list) or not all(isinstance(p, str) and p for p in fq_name):
            raise InvalidRequest(f"fq_name must be a list of names, got {fq_name!r}", "fq_name")
        if tuple(fq_name[:-1]) != self.project or body.get("parent_type") not in (None, "project"):
            raise NotFound(f"Parent {fq_name[:-1]} of {obj_type} not found: the lab's only "
                           f"project is {list(self.project)}")
        return tuple(fq_name)

    def _checked_props(self, obj_type: str, body: dict) -> dict:
        """The properties of a client-written object in `body`, checked (network-policy)."""
        with self.service.lock:
            topology = self.service.topology
        return {"network_policy_entries": parse_policy_entries(
            body.get("network_policy_entries"), topology)}

    def delete(self, obj_type: str, obj_uuid: str) -> None:
        """Delete a client-created object that nothing refers to (409 otherwise); topology
        objects are refused (403)."""
        with self.lock:
            obj = self.find(obj_type, obj_uuid)
            if obj_type not in CREATABLE:
                raise Forbidden(f"{obj_type} {':'.join(obj.fq_name)} mirrors the lab's topology: "
                                f"it cannot be deleted through this API; change the topology file "
                                f"instead")
            referrers = self.catalog().back_refs.get(obj_uuid, ())
            if referrers:
                names = [":".join(source.fq_name) for source, _ in referrers]
                raise Conflict(f"Delete when resource still referred: {names}")
            self.service.store.remove_config_object(obj_uuid)
            del self.written[obj_uuid]

    def update(self, obj_type: str, obj_uuid: str, body: dict) -> None:
        """Apply a PUT of `body` (the fields inside the type wrapper) to an object: only its
        writable fields may change; the others, and identity, may be repeated unchanged. Every
        field is checked before anything changes."""
        with self.lock:
            obj = self.find(obj_type, obj_uuid)
            info = TYPES[obj_type]
            catalog = self.catalog()
            current = render(obj, catalog, "")
            known_refs = tuple(f"{field_name(r)}_refs" for r in info.refs)
            _refuse_unknown(obj_type, body, info.props + known_refs + COMMON_FIELDS)
            for name, value in body.items():
                if name in ("uuid", "fq_name") and value not in (None, current[name]):
                    raise InvalidRequest(f"{name} {value!r} does not match the object at this "
                                         f"URL ({current[name]!r})", name)
                if name in COMMON_FIELDS or name in info.writable:
                    continue
                if _comparable(value) != _comparable(current.get(name)):
                    raise Forbidden(f"{obj_type} {':'.join(obj.fq_name)} mirrors the lab's "
                                    f"topology: its {name} cannot be changed through this API"
                                    + (f" (writable: {', '.join(info.writable)})" if info.writable else ""),
                                    name)
            written, written_refs = dict(self.written), dict(self.written_refs)
            if "network_policy_entries" in body:
                obj = replace(obj, props=self._checked_props(obj_type, body))
                written[obj.uuid] = obj
            if "network_policy_refs" in body:
                written_refs[obj_uuid] = self._checked_policy_refs(body["network_policy_refs"], catalog)
            if "network_policy_entries" in body or "network_policy_refs" in body:
                self._apply(written, written_refs)  # refused: nothing is stored
            if "network_policy_entries" in body:
                self.service.store.save_config_object(obj.uuid, obj_type, list(obj.fq_name),
                                                      dict(obj.props))
                self.written[obj.uuid] = obj
            if "network_policy_refs" in body:
                refs = written_refs[obj_uuid]
                self.service.store.save_config_refs(
                    obj_uuid, "network_policy_refs", [{"to": list(r.to), "attr": r.attr} for r in refs])
                self.written_refs[obj_uuid] = refs
        if "virtual_machine_interface_properties" in body:
            mirror = self.parse_vmi_properties(body["virtual_machine_interface_properties"], obj)
            self.set_port_mirror(obj, mirror)

    def update_ref(self, body: dict) -> str:
        """Contrail's ref-update action: ADD (or re-attribute) or DELETE one ref of an object;
        returns the object's uuid."""
        obj_type, obj_uuid = body.get("type"), body.get("uuid")
        ref_type, operation = body.get("ref-type"), body.get("operation")
        if not all(isinstance(v, str) for v in (obj_type, obj_uuid, ref_type)) \
                or operation not in ("ADD", "DELETE"):
            raise InvalidRequest("ref-update needs type, uuid, ref-type, ref-uuid or ref-fq-name, "
                                 "and operation ADD or DELETE")
        if obj_type not in TYPES:
            raise NotFound(f"Unknown resource type '{obj_type}'")
        field = f"{field_name(ref_type)}_refs"
        with self.lock:
            obj = self.find(obj_type, obj_uuid)
            catalog = self.catalog()
            target = catalog.by_uuid.get(body.get("ref-uuid") or "") or catalog.by_name.get(
                (ref_type, tuple(body.get("ref-fq-name") or ())))
            if target is None or target.type != ref_type:
                raise NotFound(f"Unknown {ref_type} ref: uuid {body.get('ref-uuid')}, fq_name "
                               f"{body.get('ref-fq-name')}")
            refs = [{"to": list(r.to), "attr": r.attr} for r in obj.refs
                    if r.type == ref_type and r.to != target.fq_name]
            if operation == "ADD":
                refs.append({"to": list(target.fq_name), "attr": body.get("attr")})
            self.update(obj_type, obj_uuid, {field: refs})
        return obj_uuid

    def _checked_policy_refs(self, value, catalog: Catalog) -> tuple[Ref, ...]:
        where = "network_policy_refs"
        if value is None:
            return ()
        if not isinstance(value, list):
            raise InvalidRequest(f"{where}: expected a list", where)
        refs = []
        for index, ref in enumerate(value):
            at = f"{where}[{index}]"
            require_object(ref, at, ("to", "uuid", "href", "attr"))
            target = catalog.by_uuid.get(ref.get("uuid") or "") or catalog.by_name.get(
                ("network-policy", tuple(ref.get("to") or ())))
            if target is None or target.type != "network-policy":
                raise NotFound(f"{at}: unknown network-policy {ref.get('to') or ref.get('uuid')}")
            attr = ref.get("attr")
            if attr is not None:
                require_object(attr, f"{at}.attr", ("sequence", "timer"))
                sequence = attr.get("sequence")
                if sequence is not None:
                    require_object(sequence, f"{at}.attr.sequence", ("major", "minor"))
                    if not all(isinstance(sequence.get(k), int) for k in ("major", "minor")):
                        raise InvalidRequest(f"{at}.attr.sequence: major and minor must be "
                                             f"integers", f"{at}.attr.sequence")
                if attr.get("timer") is not None:
                    raise InvalidRequest(f"{at}.attr.timer is not supported by this lab",
                                         f"{at}.attr.timer")
            refs.append(Ref("network-policy", target.fq_name, attr))
        return tuple(refs)

    def parse_vmi_properties(self, value, obj: ConfigObject) -> PortMirror | None:
        """The port mirror asked by a virtual_machine_interface_properties value (None: none).
        Only interface_mirror may differ from what the lab has."""
        where = "virtual_machine_interface_properties"
        if value is None:
            return None
        require_object(value, where, VMI_PROPERTIES_FIELDS)
        current = (obj.props.get(where) or {})
        for name, given in value.items():
            # vnc_api sends the schema's zero defaults (max_flows 0...) for fields left unset.
            if name != "interface_mirror" and given not in (None, 0, "") and given != current.get(name):
                raise Forbidden(f"{where}.{name} mirrors the lab's topology and cannot be changed "
                                f"through this API (writable: interface_mirror)", f"{where}.{name}")
        return parse_interface_mirror(value.get("interface_mirror"), self.project)

    def set_port_mirror(self, obj: ConfigObject, mirror: PortMirror | None) -> None:
        """Make the interface of virtual-machine-interface `obj` mirror as `mirror` says (its
        whole mirror_to going to the capture service, whose refusals name the field within
        interface_mirror). A changed setting starts its capture before the old one stops, so
        a start the lab refuses leaves the old setting running; the one exception is a
        NIC-assisted setting replacing a NIC-assisted one (an interface has one NIC-assisted
        capture at a time): the old one stops first and is started again if the new one
        cannot start."""
        with self.mirror_lock:
            with self.service.lock:
                interface = next(i for i in self.service.topology.interfaces() if i.name == obj.name)
                running = port_mirrors(self.service.captures.values()).get(interface.port_name)
            if mirror is None:
                if running is not None:
                    self.service.stop_capture(running.id, "interface_mirror unset through the "
                                                          "configuration API")
                return
            if running is not None and self._runs(running, mirror):
                return
            try:
                if running is not None and running.mirror_to.nic_assisted_mirroring \
                        and mirror.mirror_to.get("nic_assisted_mirroring") is True:
                    self._replace_nic_assisted(interface, running, mirror)
                else:
                    self._start(interface, mirror)
                    if running is not None:
                        self.service.stop_capture(running.id, CHANGED)
            except MirrorlabError as err:
                raise refusal_within(err, INTERFACE_MIRROR) from None

    def _runs(self, capture: Capture, mirror: PortMirror) -> bool:
        """Whether port capture `capture` already mirrors as `mirror` asks (its destination
        resolved as the capture service resolves it)."""
        if capture.direction != mirror.direction:
            return False
        try:
            return self.service.destination(dict(mirror.mirror_to)) == (capture.analyzer,
                                                                        capture.mirror_to)
        except MirrorlabError:
            return False  # starting it says why

    def _start(self, interface: Interface, mirror: PortMirror) -> Capture:
        return self.service.start_capture(interface.compute, interface.port_name,
                                          mirror.direction.value, origin=PORT_ORIGIN,
                                          mirror_to=dict(mirror.mirror_to))

    def _replace_nic_assisted(self, interface: Interface, running: Capture,
                              mirror: PortMirror) -> None:
        """Stop NIC-assisted port capture `running`, then start `mirror` (checked first); if
        it cannot start, start `running`'s setting again, and say so if that fails too."""
        self.service.destination(dict(mirror.mirror_to))  # bad input: refused before any stop
        self.service.stop_capture(running.id, CHANGED)
        try:
            self._start(interface, mirror)
        except MirrorlabError as refused:
            try:
                self._start(interface, PortMirror(running.direction, running.mirror_to.to_dict()))
            except MirrorlabError as err:
                raise type(refused)(f"{refused.message}; the previous setting was not started "
                                    f"again either ({err.message}): {interface.name} is not "
                                    f"mirrored now", refused.field) from None
            raise


def _sequence(attr: dict | None) -> tuple[int, int]:
    """A network_policy_refs attr's sequence as (major, minor); (0, 0) when it has none."""
    sequence = (attr or {}).get("sequence") or {}
    return (sequence.get("major", 0), sequence.get("minor", 0))


def _ref_type(field: str) -> str:
    """The type a refs field points at: network_policy_refs -> network-policy."""
    return field.removesuffix("_refs").replace("_", "-")


def _refuse_unknown(obj_type: str, body: dict, known: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(known))
    if unknown:
        served = [name for name in known if name not in COMMON_FIELDS]
        raise InvalidRequest(f"Unknown field '{unknown[0]}' for {obj_type} (this lab serves: "
                             f"{', '.join(served) or 'no other field'})", unknown[0])


def _comparable(value):
    """A field's value without what the server adds to refs (href, uuid), to tell whether a
    client repeats it unchanged."""
    if isinstance(value, list):
        return [{k: v for k, v in item.items() if k in ("to", "attr")} if isinstance(item, dict) else item
                for item in value]
    return value


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in TRUE_VALUES


def _present(request: Request, name: str) -> bool:
    """Whether the query names `name` at all: contrail-api's exclude_* options act by presence."""
    return name in request.query_params


def _fields(request: Request) -> set[str] | None:
    return {f for f in request.query_params.get("fields", "").split(",") if f} or None


async def _json_body(request: Request) -> dict:
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError as err:
        raise InvalidRequest(f"Request body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"Request body must be a JSON object, not {type(body).__name__}")
    return body


def _wrapped(body: dict, obj_type: str) -> dict:
    inner = body.get(obj_type)
    if set(body) != {obj_type} or not isinstance(inner, dict):
        raise InvalidRequest(f"Request body must be {{\"{obj_type}\": {{...}}}}, got keys "
                             f"{sorted(body)}")
    return inner


def create_config_app(config: ConfigApi, access: ApiAccess):
    """The ASGI app of the configuration API for `config`, answering the hosts (and token, as
    vnc_api's X-Auth-Token) of `access`, and refusing state changes from other origins. Every
    call into `config` runs in a worker thread: it takes the controller's locks and may wait
    for vRouters."""

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def home(request: Request):
        root = base(request)
        links = [{"link": {"rel": "root", "href": root, "name": "root"}}]
        for obj_type in TYPES:
            links.append({"link": {"rel": "collection", "href": f"{root}/{collection_name(obj_type)}",
                                   "name": obj_type}})
            links.append({"link": {"rel": "resource-base", "href": f"{root}/{obj_type}",
                                   "name": obj_type}})
        links += [{"link": {"rel": "action", "href": f"{root}{path}", "name": name}}
                  for name, path in ACTIONS.items()]
        return JSONResponse({"href": root, "links": links})

    def collection_type(request: Request) -> str:
        name = request.path_params["collection"]
        if name not in COLLECTIONS:
            raise NotFound(f"Unknown collection '{name}' (this lab serves: "
                           f"{', '.join(COLLECTIONS)})")
        return COLLECTIONS[name]

    def resource_type(request: Request) -> str:
        name = request.path_params["type"]
        if name not in TYPES:
            raise NotFound(f"Unknown resource type '{name}' (this lab serves: {', '.join(TYPES)})")
        return name

    def list_collection(request: Request):
        obj_type = collection_type(request)
        catalog = config.catalog()
        objects = catalog.of_type(obj_type)
        params = request.query_params
        if "filters" in params:
            raise InvalidRequest("filters are not supported by this lab's configuration API")
        if params.get("parent_id"):
            parents = set(params["parent_id"].split(","))
            objects = [o for o in objects if o.parent_type and catalog.by_name.get(
                (o.parent_type, o.parent_fq_name)).uuid in parents]
        if params.get("parent_fq_name_str"):
            objects = [o for o in objects if o.parent_fq_name
                       and ":".join(o.parent_fq_name) == params["parent_fq_name_str"]]
        if params.get("obj_uuids"):
            objects = [o for o in objects if o.uuid in params["obj_uuids"].split(",")]
        if params.get("fq_names"):
            names = {tuple(n.split(":")) for n in params["fq_names"].split(",")}
            objects = [o for o in objects if o.fq_name in names]
        if params.get("back_ref_id"):
            targets = set(params["back_ref_id"].split(","))
            objects = [o for o in objects if any(
                catalog.by_name[(r.type, r.to)].uuid in targets for r in o.refs)]
        key = collection_name(obj_type)
        if _flag(request, "count"):
            return JSONResponse({key: {"count": len(objects)}})
        fields = _fields(request)
        if _flag(request, "detail"):
            return JSONResponse({key: [{obj_type: render(o, catalog, base(request), fields,
                                                         not _present(request, "exclude_back_refs"),
                                                         not _present(request, "exclude_children"))}
                                       for o in objects]})
        entries = []
        for obj in objects:
            entry = {"href": f"{base(request)}/{obj_type}/{obj.uuid}", "fq_name": list(obj.fq_name),
                     "uuid": obj.uuid}
            if fields:
                full = render(obj, catalog, base(request), fields)
                entry.update({k: v for k, v in full.items() if k in fields})
            entries.append(entry)
        return JSONResponse({key: entries})

    async def create(request: Request):
        obj_type = collection_type(request)
        body = _wrapped(await _json_body(request), obj_type)
        obj = await run_in_threadpool(config.create, obj_type, body)
        catalog = await run_in_threadpool(config.catalog)
        return JSONResponse({obj_type: render(obj, catalog, base(request))})

    def read(request: Request):
        obj_type = resource_type(request)
        obj = config.find(obj_type, request.path_params["uuid"])
        body = render(obj, config.catalog(), base(request), _fields(request),
                      not _present(request, "exclude_back_refs"),
                      not _present(request, "exclude_children"))
        return JSONResponse({obj_type: body})

    async def update(request: Request):
        obj_type = resource_type(request)
        obj_uuid = request.path_params["uuid"]
        body = _wrapped(await _json_body(request), obj_type)
        await run_in_threadpool(config.update, obj_type, obj_uuid, body)
        return JSONResponse({obj_type: {"uuid": obj_uuid,
                                        "href": f"{base(request)}/{obj_type}/{obj_uuid}"}})

    def delete(request: Request):
        config.delete(resource_type(request), request.path_params["uuid"])
        return JSONResponse({})

    async def ref_update(request: Request):
        body = await _json_body(request)
        return JSONResponse({"uuid": await run_in_threadpool(config.update_ref, body)})

    async def fqname_to_id(request: Request):
        body = await _json_body(request)
        obj_type, fq_name = body.get("type"), body.get("fq_name")
        if not isinstance(obj_type, str) or not isinstance(fq_name, list) \
                or not all(isinstance(part, str) for part in fq_name):
            raise InvalidRequest("fqname-to-id needs {\"type\": TYPE, \"fq_name\": [names]}")
        catalog = await run_in_threadpool(config.catalog)
        obj = catalog.by_name.get((obj_type.replace("_", "-"), tuple(fq_name)))
        if obj is None:
            raise NotFound(f"Name {fq_name} not found")
        return JSONResponse({"uuid": obj.uuid})

    async def id_to_fqname(request: Request):
        body = await _json_body(request)
        obj_uuid = body.get("uuid")
        if not isinstance(obj_uuid, str):
            raise InvalidRequest("id-to-fqname needs {\"uuid\": UUID}")
        obj = (await run_in_threadpool(config.catalog)).by_uuid.get(obj_uuid)
        if obj is None:
            raise NotFound(f"UUID {obj_uuid} not found")
        return JSONResponse({"fq_name": list(obj.fq_name), "type": obj.type})

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/fqname-to-id", fqname_to_id, methods=["POST"]),
        Route("/id-to-fqname", id_to_fqname, methods=["POST"]),
        Route("/ref-update", ref_update, methods=["POST"]),
        Route("/{collection}", list_collection, methods=["GET"]),
        Route("/{collection}", create, methods=["POST"]),
        Route("/{type}/{uuid}", read, methods=["GET"]),
        Route("/{type}/{uuid}", update, methods=["PUT"]),
        Route("/{type}/{uuid}", delete, methods=["DELETE"]),
    ]
    app = Starlette(routes=routes, exception_handlers={MirrorlabError: _refused, Exception: _failed})
    # The REST API's guard: the lab's host names only, no state change from another origin,
    # bodies of at most MAX_REQUEST_BYTES.
    return RequestGuard(_TokenRequired(app, access.token) if access.token else app, access)


async def _refused(request: Request, err: MirrorlabError) -> Response:
    # vnc_api retries a 503 thirty times, a second apart, then raises without the body: a lab
    # that cannot apply a setting now (a vRouter not connected, the lab not whole) answers 500,
    # which the client raises at once with the reason.
    return _error(500 if err.status == 503 else err.status, err.message)


async def _failed(request: Request, err: Exception) -> Response:
    """Anything unexpected: a 500 naming it; the server keeps serving."""
    LOG.error("configuration API request %s %s failed", request.method, request.url.path,
              exc_info=err)
    return _error(500, f"Internal error: {type(err).__name__}: {err}")


class _TokenRequired:
    """ASGI wrapper: with a token, refuses every request that does not present it (vnc_api
    sends it as X-Auth-Token)."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            presented = headers.get("x-auth-token", "").encode()
            if not hmac.compare_digest(presented, self.token.encode()):
                refused = Unauthorized("this API needs the lab's token: VncApi(auth_token=TOKEN) "
                                       "sends it as X-Auth-Token")
                await _error(refused.status, refused.message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _error(status: int, message: str) -> Response:
    return PlainTextResponse(message, status_code=status)
