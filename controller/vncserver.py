"""Contrail's configuration API (what `contrail-api` serves on port 8082), for real Contrail
clients such as `vnc_api` and `contrail-api-cli`.

It serves the objects `controller.vncmodel` derives from the running lab, in contrail-api's JSON:
the home page `GET /` with its collection, resource-base and action links; collections
(`GET`, `POST /virtual-networks`); resources by uuid (`GET`, `PUT`, `DELETE
/virtual-network/<uuid>`); `POST /fqname-to-id` and `POST /id-to-fqname`. Errors are
contrail-api's: a status (400 bad input, 401 no token, 403 not permitted, 404 unknown, 409
conflict, 503 unavailable) and a plain-text body saying what is wrong.

Objects of the topology cannot be created or deleted here (403): the topology file is their
source. A virtual-machine-interface's `virtual_machine_interface_properties.interface_mirror`
can be set and unset: `ConfigApi.set_port_mirror` starts and stops a capture of origin "port"
through the controller's capture service, which stores it and reconciles it after a restart.
"""
from __future__ import annotations

import hmac
import json
import logging

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from mirrorlab.controller.errors import (
    Forbidden, InvalidRequest, MirrorlabError, NotFound, PayloadTooLarge, Unauthorized,
)
from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, PORT_ORIGIN, analyzers
from mirrorlab.controller.rest import MAX_REQUEST_BYTES, ApiAccess, host_name
from mirrorlab.controller.service import ControllerService
from mirrorlab.controller.vncmodel import (
    COMMON_FIELDS, TYPES, VMI_PROPERTIES_FIELDS, Catalog, ConfigObject, PortMirror,
    collection_name, field_name, lab_objects, parse_interface_mirror, port_mirrors, render,
)

LOG = logging.getLogger("mirrorlab.vncserver")
DEFAULT_CONFIG_API_PORT = 8082
# The home page's actions: contrail-api's name for each, and where it answers.
ACTIONS = {"name-to-id": "/fqname-to-id", "id-to-name": "/id-to-fqname"}
COLLECTIONS = {collection_name(t): t for t in TYPES}
TRUE_VALUES = ("true", "1", "yes")


class ConfigApi:
    """The configuration objects of one lab, and the writes clients may make to them."""

    def __init__(self, service: ControllerService):
        self.service = service

    @property
    def project(self) -> tuple[str, ...]:
        """The fq_name of the lab's project: default-domain and the lab's name."""
        return ("default-domain", self.service.topology.name)

    def catalog(self) -> Catalog:
        """Every object of the lab as it runs now."""
        with self.service.lock:
            mirrors = {port: mirror for port, (_, mirror)
                       in port_mirrors(self.service.captures.values()).items()}
            return Catalog(lab_objects(self.service.topology, mirrors))

    def find(self, obj_type: str, obj_uuid: str) -> ConfigObject:
        """The object of `obj_type` with `obj_uuid` (NotFound otherwise)."""
        obj = self.catalog().by_uuid.get(obj_uuid)
        if obj is None or obj.type != obj_type:
            raise NotFound(f"No {obj_type} object found for id {obj_uuid}")
        return obj

    def update(self, obj_type: str, obj_uuid: str, body: dict) -> None:
        """Apply a PUT of `body` (the fields inside the type wrapper) to an object: only its
        writable fields may change; the others, and identity, may be repeated unchanged."""
        obj = self.find(obj_type, obj_uuid)
        info = TYPES[obj_type]
        current = render(obj, self.catalog(), "")
        for name, value in body.items():
            if name in ("uuid", "fq_name") and value not in (None, current[name]):
                raise InvalidRequest(f"{name} {value!r} does not match the object at this URL "
                                     f"({current[name]!r})", name)
            if name in COMMON_FIELDS or name in info.writable:
                continue
            known_refs = {f"{field_name(r)}_refs" for r in info.refs}
            if name not in info.props and name not in known_refs:
                raise InvalidRequest(f"Unknown field '{name}' for {obj_type} (this lab serves: "
                                     f"{', '.join(info.props + tuple(sorted(known_refs)))})", name)
            if _comparable(value) != _comparable(current.get(name)):
                raise Forbidden(f"{obj_type} {':'.join(obj.fq_name)} mirrors the lab's topology: "
                                f"its {name} cannot be changed through this API"
                                + (f" (writable: {', '.join(info.writable)})" if info.writable else ""),
                                name)
        if "virtual_machine_interface_properties" in body:
            self.set_port_mirror(obj, self.parse_vmi_properties(body["virtual_machine_interface_properties"], obj))

    def parse_vmi_properties(self, value, obj: ConfigObject) -> PortMirror | None:
        """The port mirror asked by a virtual_machine_interface_properties value (None: none).
        Only interface_mirror may differ from what the lab has; an analyzer's own interface
        cannot be mirrored."""
        where = "virtual_machine_interface_properties"
        if value is None:
            return None
        if not isinstance(value, dict):
            raise InvalidRequest(f"{where}: expected an object, got {type(value).__name__}", where)
        unknown = sorted(set(value) - set(VMI_PROPERTIES_FIELDS))
        if unknown:
            raise InvalidRequest(f"{where}: unknown field '{unknown[0]}' (known: "
                                 f"{', '.join(VMI_PROPERTIES_FIELDS)})", f"{where}.{unknown[0]}")
        current = (obj.props.get(where) or {})
        for name, given in value.items():
            # vnc_api sends the schema's zero defaults (max_flows 0...) for fields left unset.
            if name != "interface_mirror" and given not in (None, 0, "") and given != current.get(name):
                raise Forbidden(f"{where}.{name} mirrors the lab's topology and cannot be changed "
                                f"through this API (writable: interface_mirror)", f"{where}.{name}")
        with self.service.lock:
            names = list(analyzers(self.service.topology))
        return parse_interface_mirror(value.get("interface_mirror"), names, self.project)

    def set_port_mirror(self, obj: ConfigObject, mirror: PortMirror | None) -> None:
        """Make the interface of virtual-machine-interface `obj` mirror as `mirror` says: stop
        its port-configured capture if it mirrors otherwise, start one if none is left."""
        with self.service.lock:
            interface = next(i for i in self.service.topology.interfaces() if i.name == obj.name)
            running = port_mirrors(self.service.captures.values()).get(interface.port_name)
        if running is not None and running[1] == mirror:
            return
        if mirror is not None and interface.vm in {vm.name for vm in analyzers(self.service.topology).values()}:
            raise Forbidden(f"{obj.name} is an analyzer's own interface: it cannot be mirrored",
                            "virtual_machine_interface_properties.interface_mirror")
        if running is not None:
            self.service.stop_capture(running[0].id, "interface_mirror unset through the "
                                                      "configuration API")
        if mirror is not None:
            self.service.start_capture(
                interface.compute, interface.port_name, mirror.direction.value,
                analyzer=None if mirror.analyzer == DEFAULT_ANALYZER else mirror.analyzer,
                origin=PORT_ORIGIN)


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
    if len(raw) > MAX_REQUEST_BYTES:
        raise PayloadTooLarge(f"request body of {len(raw)} bytes is larger than the "
                              f"{MAX_REQUEST_BYTES} bytes this API accepts")
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


def create_config_app(config: ConfigApi, access: ApiAccess) -> Starlette:
    """The ASGI app of the configuration API for `config`, answering the hosts (and token, as
    vnc_api's X-Auth-Token) of `access`."""

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
            return JSONResponse({key: [{obj_type: render(o, catalog, base(request), None,
                                                         not _present(request, "exclude_back_refs"),
                                                         not _present(request, "exclude_children"))
                                        | (render(o, catalog, base(request), fields) if fields else {})}
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
        _wrapped(await _json_body(request), obj_type)
        raise Forbidden(f"{obj_type} objects mirror the lab's topology "
                        f"('{config.service.topology.name}'): they cannot be created through this "
                        f"API; change the topology file instead")

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
        config.find(obj_type, obj_uuid)
        await run_in_threadpool(config.update, obj_type, obj_uuid, body)
        return JSONResponse({obj_type: {"uuid": obj_uuid,
                                        "href": f"{base(request)}/{obj_type}/{obj_uuid}"}})

    def delete(request: Request):
        obj_type = resource_type(request)
        obj = config.find(obj_type, request.path_params["uuid"])
        raise Forbidden(f"{obj_type} {':'.join(obj.fq_name)} mirrors the lab's topology: it "
                        f"cannot be deleted through this API; change the topology file instead")

    async def fqname_to_id(request: Request):
        body = await _json_body(request)
        obj_type, fq_name = body.get("type"), body.get("fq_name")
        if not isinstance(obj_type, str) or not isinstance(fq_name, list) \
                or not all(isinstance(part, str) for part in fq_name):
            raise InvalidRequest("fqname-to-id needs {\"type\": TYPE, \"fq_name\": [names]}")
        obj = config.catalog().by_name.get((obj_type.replace("_", "-"), tuple(fq_name)))
        if obj is None:
            raise NotFound(f"Name {fq_name} not found")
        return JSONResponse({"uuid": obj.uuid})

    async def id_to_fqname(request: Request):
        body = await _json_body(request)
        obj_uuid = body.get("uuid")
        if not isinstance(obj_uuid, str):
            raise InvalidRequest("id-to-fqname needs {\"uuid\": UUID}")
        obj = config.catalog().by_uuid.get(obj_uuid)
        if obj is None:
            raise NotFound(f"UUID {obj_uuid} not found")
        return JSONResponse({"fq_name": list(obj.fq_name), "type": obj.type})

    routes = [
        Route("/", home, methods=["GET"]),
        Route("/fqname-to-id", fqname_to_id, methods=["POST"]),
        Route("/id-to-fqname", id_to_fqname, methods=["POST"]),
        Route("/{collection}", list_collection, methods=["GET"]),
        Route("/{collection}", create, methods=["POST"]),
        Route("/{type}/{uuid}", read, methods=["GET"]),
        Route("/{type}/{uuid}", update, methods=["PUT"]),
        Route("/{type}/{uuid}", delete, methods=["DELETE"]),
    ]
    app = Starlette(routes=routes, exception_handlers={MirrorlabError: _refused, Exception: _failed})
    return _Guarded(app, access)


async def _refused(request: Request, err: MirrorlabError) -> Response:
    return _error(err.status, err.message)


async def _failed(request: Request, err: Exception) -> Response:
    """Anything unexpected: a 500 naming it; the server keeps serving."""
    LOG.error("configuration API request %s %s failed", request.method, request.url.path,
              exc_info=err)
    return _error(500, f"Internal error: {type(err).__name__}: {err}")


class _Guarded:
    """ASGI wrapper: refuses foreign Host names (DNS rebinding) and, with a token, requests
    without it (vnc_api sends it as X-Auth-Token)."""

    def __init__(self, app, access: ApiAccess):
        self.app = app
        self.access = access

    def refusal(self, scope) -> MirrorlabError | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if host_name(host) not in self.access.hosts:
            return Forbidden(f"host '{host}' is not one of this lab's (allowed: "
                             f"{', '.join(sorted(self.access.hosts))}; see --allowed-host)")
        if self.access.token and not hmac.compare_digest(
                headers.get("x-auth-token", "").encode(), self.access.token.encode()):
            return Unauthorized("this API needs the lab's token: VncApi(auth_token=TOKEN) sends "
                                "it as X-Auth-Token")
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)
        if refused is not None:
            await _error(refused.status, refused.message)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _error(status: int, message: str) -> Response:
    return PlainTextResponse(message, status_code=status)
