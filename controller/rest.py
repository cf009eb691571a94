"""The REST API (FastAPI, OpenAPI at /openapi.json). JSON in and out.

Errors are mapped to HTTP in one place, `_error_response`: the controller's own errors carry
their status; malformed requests are 400; anything unexpected is a 500 with a JSON body, and
the server keeps running. Values echoed in error messages are cut short.

Who may use it (`ApiAccess`, checked by `RequestGuard` before any route runs):
- the Host header must name one of the lab's own hosts (403 otherwise): a foreign name that a
  DNS rebinding attack points at 127.0.0.1 gets nothing;
- a request that changes state (POST, PUT, PATCH, DELETE) coming from a browser page must come
  from the API's own origin (403 otherwise); requests without an Origin header (curl, the CLI)
  are not browser pages' and pass;
- with a bearer token, every /api request must present it (401 otherwise), as an
  `Authorization: Bearer` header or the cookie a one-time `/?token=TOKEN` login sets;
- a request body may hold at most MAX_REQUEST_BYTES (413 otherwise).
A capture's beacon stop and lease renewal need the capture's secret, which only the response
that started it carries.

The same application serves the monitor web UI (controller/web: static HTML, CSS and JavaScript
modules) at /.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Literal

import fastapi_offline
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr
from starlette.exceptions import HTTPException

from mirrorlab.controller.analyzerchoice import ANALYZER_RULE, preferred_analyzer
from mirrorlab.controller.displayfilter import filter_matches, parse_filter
from mirrorlab.controller.dissect import summarize
from mirrorlab.controller.errors import (
    Forbidden, InvalidRequest, MirrorlabError, NotFound, PayloadTooLarge, Unauthorized,
)
from mirrorlab.controller.mirroring import (
    MAX_LEASE_SECONDS, MIN_LIMIT_BYTES, REQUEST_ORIGINS, analyzers, parse_origin,
)
from mirrorlab.controller.mirrorto import DEFAULT_UDP_PORT, MAC_PATTERN, MAX_VLAN, MAX_VNI, NH_MODES
from mirrorlab.controller.packettree import dissect_frame
from mirrorlab.controller.pcapfile import pcapng_prefix, read_prefix
from mirrorlab.controller.service import ControllerService
from mirrorlab.controller.wire import analyzer_view, pcap_download_name
from mirrorlab.pcap import PCAP_HEADER, PCAPNG_HEADER
from mirrorlab.topology import VM, ComputeNode, Interface

LOG = logging.getLogger("mirrorlab.rest")
# The monitor web UI: plain HTML, CSS and JavaScript modules, served as they are.
WEB_DIR = Path(__file__).resolve().parent / "web"
# Swagger UI's and ReDoc's scripts and styles, as the fastapi-offline package ships them, so the
# API's documentation loads nothing from another host.
DOCS_ASSETS = "/docs-assets"
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
# The most packets one GET /api/captures/{id}/packets returns.
MAX_PACKETS_PER_REQUEST = 1000
# With a display filter, one GET /api/captures/{id}/packets reads at most this many recorded
# packets, in chunks of FILTER_CHUNK, looking for matches; `next_after` says where to go on.
FILTER_SCAN_LIMIT = 20000
FILTER_CHUNK = 1000
PCAP_MEDIA_TYPE = "application/vnd.tcpdump.pcap"
PCAPNG_MEDIA_TYPE = "application/x-pcapng"
# Every request body of this API is a small JSON object.
MAX_REQUEST_BYTES = 64 * 1024
# Error messages echo what was asked for; a longer one keeps its start and end.
MAX_ERROR_CHARS = 400
# Host names the API always answers to.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# The cookie the one-time `/?token=TOKEN` login sets, so the web UI can use a token-protected API.
TOKEN_COOKIE = "mirrorlab_token"
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Sec-Fetch-Site values of requests a page of the API's own origin (or the user) made.
OWN_FETCH_SITES = frozenset({"same-origin", "none"})


def host_name(value: str) -> str:
    """The host name or address in a Host header or an --allowed-host value, without port,
    brackets or trailing dot, in lower case: "[::1]:8080" -> "::1", "Lab.Example.:80" ->
    "lab.example"."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    try:
        return str(ipaddress.IPv6Address(value))  # a bare IPv6 address: its colons are no port
    except ValueError:
        pass
    return value.rsplit(":", 1)[0].rstrip(".") if ":" in value else value.rstrip(".")


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or address to listen on) is this machine's loopback only."""
    name = host_name(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """Whether `host` (an address to listen on) means every address: 0.0.0.0 or ::."""
    try:
        return ipaddress.ip_address(host_name(host)).is_unspecified
    except ValueError:
        return False


@dataclass(frozen=True)
class ApiAccess:
    """Who may use the API: the host names and addresses it answers to (at any port), and the
    bearer token every /api request must present, if it has one."""

    hosts: frozenset[str] = frozenset(LOOPBACK_HOSTS)
    token: str | None = None

    @classmethod
    def of(cls, extra_hosts=(), token: str | None = None) -> "ApiAccess":
        """The loopback names and `extra_hosts` (names or addresses, ports ignored), and `token`."""
        return cls(frozenset(LOOPBACK_HOSTS) | {host_name(h) for h in extra_hosts if h.strip()},
                   token or None)


def _without_null_defaults(schema: dict) -> None:
    for prop in schema.get("properties", {}).values():
        if prop.get("default", ...) is None:
            del prop["default"]


def _one_target(schema: dict) -> None:
    """A capture names either vrouter and interface, or vm (and maybe vrouter), never
    interface and vm together: what start_capture checks, said in the schema."""
    _without_null_defaults(schema)
    schema["anyOf"] = [{"required": ["vrouter", "interface"], "not": {"required": ["vm"]}},
                       {"required": ["vm"], "not": {"required": ["interface"]}}]
    # The analyzer is named once: `analyzer` or mirror_to's analyzer_name.
    schema["not"] = {"required": ["analyzer", "mirror_to"],
                     "properties": {"mirror_to": {"required": ["analyzer_name"]}}}


class StaticNhHeaderRequest(BaseModel):
    """Where a static destination sends its VXLAN (every field required)."""

    model_config = ConfigDict(extra="forbid")
    vtep_dst_ip_address: StrictStr = Field(description="the VTEP's IPv4 address on the fabric",
                                           json_schema_extra={"format": "ipv4"})
    vtep_dst_mac_address: StrictStr = Field(description="the VTEP's MAC address",
                                            json_schema_extra={"pattern": MAC_PATTERN.pattern})
    vni: int = Field(description="VXLAN network identifier",
                           json_schema_extra={"minimum": 1, "maximum": MAX_VNI})


def _contrail_combinations(schema: dict) -> None:
    """The destinations Contrail accepts, said in the schema: static only with its header
    fields and without the Juniper header, static_nh_header only with static; a VLAN exactly
    when NIC-assisted."""
    _without_null_defaults(schema)
    schema["allOf"] = [
        {"anyOf": [
            {"properties": {"nh_mode": {"const": "static"}, "juniper_header": {"const": False}},
             "required": ["nh_mode", "static_nh_header"]},
            {"properties": {"nh_mode": {"const": "dynamic"}},
             "not": {"required": ["static_nh_header"]}}]},
        {"anyOf": [
            {"properties": {"nic_assisted_mirroring": {"const": True}},
             "required": ["nic_assisted_mirroring", "nic_assisted_mirroring_vlan"]},
            {"properties": {"nic_assisted_mirroring": {"const": False}},
             "not": {"required": ["nic_assisted_mirroring_vlan"]}}]},
    ]


class MirrorToRequest(BaseModel):
    """A capture's destination, Contrail's MirrorActionType field for field (see
    controller/mirrorto.py). Fields left out take their defaults; null is not a value."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_contrail_combinations)
    analyzer_name: StrictStr = Field(None, description="analyzer instance (fills in the address, "
                                                       "MAC and network)", min_length=1)
    analyzer_ip_address: StrictStr = Field(None, description="the analyzer's IPv4 address (names "
                                                             "the analyzer when analyzer_name is absent)",
                                           json_schema_extra={"format": "ipv4"})
    analyzer_mac_address: StrictStr = Field(None, description="the analyzer's MAC address",
                                            json_schema_extra={"pattern": MAC_PATTERN.pattern})
    routing_instance: StrictStr = Field(None, description="the analyzer's network")
    udp_port: int = Field(None, description=f"destination UDP port; 0 means "
                                                  f"{DEFAULT_UDP_PORT}",
                                json_schema_extra={"minimum": 0, "maximum": 65535})
    juniper_header: StrictBool = Field(None, description="Juniper TLV header before the frame "
                                                         "(default true; false with nh_mode static)")
    nh_mode: StrictStr = Field(None, description="dynamic (default) | static (VXLAN to a VTEP, "
                                                 "no Juniper header)",
                               json_schema_extra={"enum": list(NH_MODES)})
    static_nh_header: StaticNhHeaderRequest = Field(None, description="with nh_mode static only")
    nic_assisted_mirroring: StrictBool = Field(None, description="the compute node's NIC "
                                                                 "mirrors, not the vRouter")
    nic_assisted_mirroring_vlan: int = Field(None, description="with nic_assisted_mirroring",
                                                   json_schema_extra={"minimum": 1,
                                                                      "maximum": MAX_VLAN})


class CaptureRequest(BaseModel):
    """Start a capture on `interface` of `vrouter` (or on `vm`'s first interface). Fields left
    out take their defaults; null is not a value."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_target)
    vrouter: str = Field(None, description="compute node name, e.g. compute1 (with `vm`: "
                                           "default the VM's compute node)")
    interface: str = Field(None, description="vRouter port (tap-vm1-0) or VM-side name (vm1-eth0)")
    vm: str = Field(None, description="instead of `interface`: the VM's first interface")
    direction: str = Field(None, description="ingress | egress | both (default)",
                           json_schema_extra={"enum": ["ingress", "egress", "both"]})
    analyzer: str = Field(None, description="analyzer instance (default: interface-packet-capture, "
                                            "launched if it does not exist)")
    lease_seconds: float = Field(None, description="stop unless renewed within this time "
                                                   "(POST /api/captures/{id}/lease)",
                                 json_schema_extra={"exclusiveMinimum": 0,
                                                    "maximum": MAX_LEASE_SECONDS})
    limit_bytes: int = Field(None, description="the most its pcap file holds; the capture "
                                               "stops there (default: the lab's capture limit)",
                             json_schema_extra={"minimum": MIN_LIMIT_BYTES})
    origin: str = Field("api", description="who starts it: screen (the web UI's capture screen), "
                                           "cli, or api (default)",
                        json_schema_extra={"enum": list(REQUEST_ORIGINS)})
    mirror_to: MirrorToRequest = Field(None, description="where and how its copies travel "
                                                         "(default: the analyzer, dynamic, "
                                                         "Juniper header, UDP 8099)")


class AnalyzerRequest(BaseModel):
    """Launch an analyzer instance. Fields left out take their defaults; null is not a value."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_without_null_defaults)
    name: str = Field(description="1-63 letters, digits, '-', '_', '.'",
                      json_schema_extra={"pattern": "^[A-Za-z0-9._-]{1,63}$"})
    network: str = Field(None, description="default: the analyzer network")
    compute: str = Field(None, description="default: the first compute node")


class PolicySequence(BaseModel):
    """Where a policy comes among a network's policies: by major, then minor, then name."""

    major: int
    minor: int


class PolicyAttachment(BaseModel):
    """A network a policy is attached to (its network_policy_refs), with the sequence."""

    network: str = Field(description="the network's name in the topology")
    fq_name: str = Field(description="the virtual network's fq-name, as vnc_api reads it")
    sequence: PolicySequence


class PolicyRuleView(BaseModel):
    """One rule of a network policy, as written through the configuration API."""

    number: int = Field(description="its place in the policy, from 1 (the first match wins)")
    direction: str = Field(description="<> (both ways) or > (source to destination only)")
    protocol: str = Field(description="any, icmp, tcp, udp, icmp6 or a protocol number")
    ethertype: str = Field(description="IPv4 or IPv6, or any when the rule gives none (it "
                                       "matches both)")
    source_addresses: list[str] = Field(description="network fq-names, any, local or CIDRs")
    source_ports: list[str] = Field(description="any, N or N-M")
    destination_addresses: list[str]
    destination_ports: list[str]
    action: str = Field(description="pass or deny")
    analyzer: str | None = Field(description="the analyzer instance its matches are mirrored to")
    mirror_to: dict | None = Field(description="Contrail's MirrorActionType, as written")
    text: str = Field(description="the rule in one line, as Contrail's UI shows it")


class PolicyView(BaseModel):
    """A network policy: its rules in order and the networks it is attached to."""

    fq_name: str
    name: str
    uuid: str
    rules: list[PolicyRuleView]
    networks: list[PolicyAttachment] = Field(description="in sequence order")


class NetworkConnection(BaseModel):
    """Two networks the policies connect: traffic from `source` to `destination` passes
    (both networks' first matching rules pass it), and back too when `both_ways`."""

    source: str
    destination: str
    both_ways: bool


class PolicyMirror(BaseModel):
    """Traffic the policies copy to `analyzer`: from `source` to `destination` (and back when
    `both_ways`); within one network when both name it."""

    source: str
    destination: str
    both_ways: bool
    analyzer: str


class PoliciesResponse(BaseModel):
    """The network policies written through Contrail's configuration API (vnc_api), and what
    the policies the vRouters apply connect and mirror."""

    config_api_port: int | None = Field(description="where the configuration API listens "
                                                    "(null: the controller does not serve it)")
    policies: list[PolicyView]
    connections: list[NetworkConnection]
    mirrors: list[PolicyMirror]
    problem: str | None = Field(None, description="why the stored policies are not what the "
                                                   "vRouters apply (null: they are)")


class ErrorBody(BaseModel):
    """The body of every refused request."""

    error: str = Field(description="what is wrong, in words (values it echoes are cut short)")
    field: str | None = Field(None, description="the request field at fault, when there is one")


# What each error status means in this API, for the OpenAPI document.
ERROR_MEANINGS = {
    400: "Malformed request: bad JSON, a field or parameter of the wrong type or value, a missing field",
    401: "The API has a bearer token and the request did not present it",
    403: "Host header not one of the lab's, a foreign Origin on a request that changes state, "
         "or a wrong capture secret",
    404: "Unknown vRouter, interface, VM, network, compute node, analyzer or capture",
    409: "Conflict with the lab's state or a limit (captures per interface or vRouter, an analyzer "
         "in use or existing, a lease that ran out, a destination that is not the named "
         "analyzer's or that the lab does not send yet)",
    413: f"Request body larger than {MAX_REQUEST_BYTES} bytes",
    503: "The lab process that launches and removes analyzer VMs does not answer",
}
# Every route can meet these: bad input, a missing token, a foreign host or origin, a large body.
COMMON_ERRORS = (400, 401, 403, 413)


def _errors(*statuses: int) -> dict:
    return {status: {"model": ErrorBody, "description": ERROR_MEANINGS[status]}
            for status in sorted(set(COMMON_ERRORS + statuses))}


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat() if timestamp else None


def shorten(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text`, or, if longer than `limit`, its start and end around a note of what was cut."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]}...({len(text) - 2 * keep} characters cut)...{text[-keep:]}"


def _error_response(status: int, message: str, field: str | None = None,
                    headers: dict | None = None) -> JSONResponse:
    body = {"error": shorten(message)}
    if field:
        body["field"] = shorten(field)
    return JSONResponse(status_code=status, content=body, headers=headers)


class RequestGuard:
    """ASGI middleware that refuses, before any route runs, requests to a foreign host name,
    state changes from a foreign origin, /api requests without the token, and bodies larger
    than MAX_REQUEST_BYTES (counted as they arrive, whatever Content-Length says)."""

    def __init__(self, app, access: ApiAccess):
        self.app = app
        self.access = access

    def refusal(self, scope) -> MirrorlabError | None:
        """Why the request in `scope` is refused before it is read, or None."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if host_name(host) not in self.access.hosts:
            return Forbidden(f"host '{host}' is not one of this lab's (allowed: "
                             f"{', '.join(sorted(self.access.hosts))}; see --allowed-host)", "Host")
        if scope["method"] in STATE_CHANGING_METHODS:
            origin = headers.get("origin")
            if origin is not None and origin.lower() != f"{scope['scheme']}://{host}".lower():
                return Forbidden(f"origin '{origin}' may not change this lab (only pages of "
                                 f"{scope['scheme']}://{host} may)", "Origin")
            site = headers.get("sec-fetch-site")
            if site is not None and site not in OWN_FETCH_SITES:
                return Forbidden(f"a {site} page may not change this lab", "Origin")
        if self.access.token and scope["path"].startswith("/api/") and not self._authorized(headers):
            return Unauthorized("this API needs its token: send 'Authorization: Bearer TOKEN', "
                                "or open /?token=TOKEN once in the browser", "Authorization")
        length = headers.get("content-length")
        if length is not None and not length.isdigit():
            return InvalidRequest(f"bad Content-Length '{length}'", "Content-Length")
        if length is not None and int(length) > MAX_REQUEST_BYTES:
            return PayloadTooLarge(f"request body of {length} bytes is larger than the "
                                   f"{MAX_REQUEST_BYTES} bytes this API accepts")
        return None

    def _authorized(self, headers: dict) -> bool:
        presented = headers.get("authorization", "")
        scheme, _, credential = presented.partition(" ")
        if scheme.lower() != "bearer":
            credential = _cookies(headers.get("cookie", "")).get(TOKEN_COOKIE, "")
        return hmac.compare_digest(credential.strip().encode(), self.access.token.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)
        if refused is not None:
            response = _error_response(refused.status, refused.message, refused.field,
                                       {"WWW-Authenticate": "Bearer"} if refused.status == 401 else None)
            await response(scope, receive, send)
            return
        received = 0
        too_large = False
        started = False

        async def counted_receive():
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_REQUEST_BYTES:
                    too_large = True
                    raise PayloadTooLarge("request body is larger than the "
                                          f"{MAX_REQUEST_BYTES} bytes this API accepts")
            return message

        async def guarded_send(message):
            nonlocal started
            if too_large:  # what the app made of a body cut short is replaced by the 413 below
                return
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except PayloadTooLarge:
            if not too_large:
                raise
        if too_large and not started:
            await _error_response(413, f"request body is larger than the {MAX_REQUEST_BYTES} "
                                       "bytes this API accepts")(scope, receive, send)


def _known_query_only(request: Request) -> None:
    """Refuse query parameters the route does not take: a misspelt one would be ignored."""
    known = {param.alias for param in request.scope["route"].dependant.query_params}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise InvalidRequest(f"unknown query parameter '{unknown[0]}' (this route takes: "
                             f"{', '.join(sorted(known)) or 'none'})", f"query.{unknown[0]}")


def _cookies(header: str) -> dict[str, str]:
    pairs = (part.strip().partition("=") for part in header.split(";"))
    return {name: value for name, _, value in pairs if name}


SECRET_DESCRIPTION = "the capture's secret, from the response of POST /api/captures that started it"


def create_app(service: ControllerService, lease_seconds: float,
               access: ApiAccess = ApiAccess(), policies: Callable[[], dict] | None = None,
               config_api_port: int | None = None) -> FastAPI:
    """The API application serving `service` to the clients `access` admits; `lease_seconds`
    is what the web UI leases. `policies` describes the network policies (the configuration
    API's `ConfigApi.policy_view`, served on `config_api_port`); without it there are none."""
    api = FastAPI(title="mirrorlab", version="0.1.0", dependencies=[Depends(_known_query_only)],
                  docs_url=None, redoc_url=None,
                  description="Interface monitoring and mirroring of an emulated Contrail cloud. "
                              "Every error is a JSON body {\"error\": ..., \"field\": ...}.")
    api.add_middleware(RequestGuard, access=access)

    @api.exception_handler(HTTPException)
    async def _http_error(request: Request, err: HTTPException):
        headers = err.headers
        if err.status_code == 405:  # Starlette's Allow names one route's methods; a path has several
            methods = {method for route in api.routes
                       if isinstance(route, APIRoute) and route.path_regex.match(request.url.path)
                       for method in route.methods}
            headers = {**(headers or {}), "Allow": ", ".join(sorted(methods))}
        return _error_response(err.status_code, str(err.detail), headers=headers)

    @api.exception_handler(MirrorlabError)
    async def _mirrorlab_error(_request: Request, err: MirrorlabError):
        return _error_response(err.status, err.message, err.field)

    @api.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error_response(400, f"{where or 'body'}: {first.get('msg', 'invalid request')}",
                               where or None)

    @api.exception_handler(Exception)
    async def _unexpected(_request: Request, err: Exception):
        LOG.exception("request failed")
        return _error_response(500, f"internal error: {type(err).__name__}: {err}")

    def openapi_document() -> dict:
        """The OpenAPI document: FastAPI's, without the 422 it assumes (validation errors are
        400 here), and with the bearer token when the API has one."""
        if api.openapi_schema is None:
            document = get_openapi(title=api.title, version=api.version,
                                   description=api.description, routes=api.routes)
            for path, operations in document["paths"].items():
                for operation in operations.values():
                    operation["responses"].pop("422", None)
                    if access.token and path.startswith("/api/"):
                        operation["security"] = [{"bearer": []}]
            components = document.setdefault("components", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                components.get("schemas", {}).pop(unused, None)
            if access.token:
                components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            api.openapi_schema = document
        return api.openapi_schema

    api.openapi = openapi_document

    def owned_capture(capture_id: int, secret: str):
        """The capture `capture_id`, if `secret` is its secret."""
        capture = service.capture(capture_id)
        if not (capture.secret and hmac.compare_digest(secret.encode(), capture.secret.encode())):
            raise Forbidden(f"wrong secret for capture {capture_id} (only the response that "
                            f"started it carries its secret)", "secret")
        return capture

    def interface_json(interface: Interface, recorders: dict[str, dict]) -> dict:
        active = service.active_captures(interface)
        analyzer = service.topology.vm(interface.vm).analyzer
        return {
            "name": interface.port_name, "vm_interface": interface.name, "vm": interface.vm,
            "network": interface.network, "ip": str(interface.ip),
            "ip6": str(interface.ip6) if interface.ip6 else None, "mac": interface.mac,
            "port": interface.ofport,
            "analyzer": analyzer, "recorder": recorders.get(analyzer) if analyzer else None,
            "captures": [c.id for c in active],
        }

    def vrouter_json(compute: ComputeNode, detail: bool = False) -> dict:
        interfaces = service.topology.interfaces_on(compute.name)
        body = {
            "name": compute.name, "bridge": compute.vrouter, "dpid": compute.dpid,
            "fabric_ip": str(service.topology.fabric_ip(compute)),
            "fabric_mac": compute.fabric_mac,
            "connected": service.connected(compute),
            "problem": service.vrouter_problem(compute),
            "vms": sorted({i.vm for i in interfaces}), "interfaces": len(interfaces),
            "active_captures": len([c for c in service.active_captures() if c.compute == compute.name]),
        }
        if detail:
            recorders = service.recorders()
            body["interface_list"] = [interface_json(i, recorders) for i in interfaces]
        return body

    def analyzer_json(vm: VM, recorders: dict[str, dict]) -> dict:
        interface = vm.interfaces[0]
        return {"name": vm.analyzer, "vm": vm.name, "compute": vm.compute,
                "network": interface.network, "ip": str(interface.ip), "mac": interface.mac,
                "interface": interface.port_name, "recorder": recorders.get(vm.analyzer),
                "captures": [c.id for c in service.active_captures() if c.analyzer == vm.analyzer]}

    def capture_json_vm(capture) -> str | None:
        """The VM whose interface `capture` monitors, None if it is gone."""
        try:
            return service.topology.interface_by_port_name(capture.interface).vm
        except KeyError:  # a stopped capture of an analyzer that was deleted since
            return None

    def capture_json(capture, with_secret: bool = False) -> dict:
        packets, total = service.capture_counts(capture)
        vm = capture_json_vm(capture)
        return {
            "id": capture.id, "vrouter": capture.compute, "interface": capture.interface,
            "vm": vm, "direction": capture.direction.value,
            "analyzer": capture.analyzer, "state": service.capture_state(capture),
            "problem": service.capture_problem(capture), "label": capture.label,
            "started_at": _iso(capture.started_at), "stopped_at": _iso(capture.stopped_at),
            "lease_seconds": capture.lease_seconds,
            "lease_expires_at": _iso(capture.lease_expires_at) if capture.active else None,
            "packets": packets, "bytes": total,
            "file_bytes": service.capture_file_size(capture), "limit_bytes": capture.limit_bytes,
            "stop_reason": capture.stop_reason, "origin": capture.origin,
            "analyzer_view": analyzer_view(capture, service.topology),
            "mirror_to": capture.mirror_to.to_dict(),
        } | ({"secret": capture.secret} if with_secret else {})

    def captures_answer(content, status_code: int = 200) -> JSONResponse:
        """Captures' JSON (`capture_json`) as the response itself: returned as a plain value,
        FastAPI walks every field of it again (`jsonable_encoder`) before encoding the same
        bytes, about a tenth of the controller's CPU per capture start and stop under load."""
        return JSONResponse(content, status_code=status_code)

    @api.get("/api/vrouters", responses=_errors())
    def list_vrouters():
        """Every vRouter with its connection state and counts."""
        return [vrouter_json(c) for c in service.topology.computes]

    @api.get("/api/vrouters/{vrouter}", responses=_errors(404))
    def get_vrouter(vrouter: str):
        """One vRouter, with its interfaces."""
        return vrouter_json(service.vrouter(vrouter), detail=True)

    @api.get("/api/vrouters/{vrouter}/interfaces", responses=_errors(404))
    def list_interfaces(vrouter: str):
        """The interfaces (VMIs) of one vRouter, with their active captures."""
        compute = service.vrouter(vrouter)
        recorders = service.recorders()
        return [interface_json(i, recorders) for i in service.topology.interfaces_on(compute.name)]

    @api.get("/api/analyzers", responses=_errors())
    def list_analyzers():
        """Analyzer instances, with the health of their recorders."""
        recorders = service.recorders()
        return [analyzer_json(vm, recorders) for vm in analyzers(service.topology).values()]

    @api.post("/api/analyzers", status_code=201, responses=_errors(404, 409, 503))
    def create_analyzer(request: AnalyzerRequest):
        """Launch an analyzer instance (a VM with a recorder)."""
        return analyzer_json(service.create_analyzer(request.name, request.network, request.compute),
                             service.recorders())

    @api.delete("/api/analyzers/{name}", responses=_errors(404, 409, 503))
    def delete_analyzer(name: str):
        """Remove an analyzer instance no active capture uses."""
        service.delete_analyzer(name)
        return {"deleted": name}

    @api.get("/api/captures", responses=_errors())
    def list_captures(state: str | None = Query(None, json_schema_extra={
            "enum": ["active", "stopped", "failed"]})):
        """Captures, newest first; `?state=active`, `stopped` or `failed` to filter."""
        if state not in (None, "active", "stopped", "failed"):
            raise InvalidRequest(f"bad state '{state}' (use active, stopped or failed)", "state")
        return captures_answer([capture_json(c) for c in service.list_captures()
                                if state in (None, c.state)])

    @api.post("/api/captures", status_code=201, responses=_errors(404, 409, 503))
    def start_capture(request: CaptureRequest):
        """Start mirroring an interface to an analyzer."""
        vrouter, interface = request.vrouter, request.interface
        if request.vm is not None:
            if interface is not None:
                raise InvalidRequest("give either 'interface' or 'vm', not both", "vm")
            if not service.topology.has("vm", request.vm):
                raise NotFound(f"unknown vm '{request.vm}'", "vm")
            first = service.topology.vm(request.vm).interfaces[0]
            vrouter, interface = vrouter or first.compute, first.port_name
        if vrouter is None:
            raise InvalidRequest("missing 'vrouter'", "vrouter")
        if interface is None:
            raise InvalidRequest("missing 'interface' (or 'vm')", "interface")
        capture = service.start_capture(vrouter, interface, request.direction, request.analyzer,
                                        request.lease_seconds, request.limit_bytes,
                                        parse_origin(request.origin),
                                        request.mirror_to.model_dump(exclude_unset=True)
                                        if request.mirror_to else None)
        return captures_answer(capture_json(capture, with_secret=True), status_code=201)

    @api.post("/api/captures/{capture_id}/lease", responses=_errors(404, 409))
    def renew_lease(capture_id: int, secret: str = Query(description=SECRET_DESCRIPTION)):
        """Renew a leased capture's lease (the capture screen does this while it is open)."""
        return captures_answer(capture_json(service.renew_lease(owned_capture(capture_id, secret).id)))

    @api.get("/api/config", responses=_errors())
    def config():
        """Settings the web UI needs."""
        return {"lease_seconds": lease_seconds, "capture_limit_bytes": service.capture_limit_bytes,
                "min_free_bytes": service.min_free_bytes}

    @api.get("/api/captures/{capture_id}", responses=_errors(404))
    def get_capture(capture_id: int):
        """One capture, with the packets and bytes its analyzer recorded so far."""
        return captures_answer(capture_json(service.capture(capture_id)))

    @api.delete("/api/captures/{capture_id}", responses=_errors(404))
    def stop_capture(capture_id: int):
        """Stop a capture: its mirror flows are removed when this returns. Stopping a stopped
        capture changes nothing and answers it with `"already_stopped": true`. No secret
        needed: browsers only send a DELETE to another origin after a CORS preflight, which
        this API never grants."""
        already_stopped = not service.capture(capture_id).active
        return captures_answer(capture_json(service.stop_capture(capture_id))
                               | {"already_stopped": already_stopped})

    @api.post("/api/captures/{capture_id}/stop", responses=_errors(404))
    def stop_capture_by_post(capture_id: int, secret: str = Query(description=SECRET_DESCRIPTION)):
        """Stop a capture, like DELETE /api/captures/{id}; for browsers' navigator.sendBeacon,
        which can only POST, when the capture screen is closed."""
        return stop_capture(owned_capture(capture_id, secret).id)

    def matching_packets(capture, after: int, limit: int, display_filter):
        """The (number, record) of the packets after `after` that `display_filter` matches
        (None: all), at most `limit`; how many are recorded; and the number read up to."""
        if display_filter is None:
            records, total = service.capture_records(capture, after, limit)
            return list(enumerate(records, start=after + 1)), total, after + len(records)
        matches, read = [], after
        while len(matches) < limit and read - after < FILTER_SCAN_LIMIT:
            records, total = service.capture_records(capture, read, FILTER_CHUNK)
            for record in records:
                read += 1
                if filter_matches(display_filter, record.data):
                    matches.append((read, record))
                    if len(matches) == limit:
                        break
            if len(records) < FILTER_CHUNK:
                break
        return matches, total, read

    @api.get("/api/captures/{capture_id}/packets", responses=_errors(404))
    def capture_packets(capture_id: int,
                        after: int = Query(0, ge=0, description="packet number to continue after "
                                                                "(packets are numbered from 1)"),
                        limit: int = Query(200, ge=1, le=MAX_PACKETS_PER_REQUEST),
                        filter_text: str | None = Query(None, alias="filter", max_length=1000,
                                                        description="display filter, e.g. "
                                                        "'icmp and host 10.1.1.12', 'tcp port 80'")):
        """The packets the analyzer recorded for this capture after packet `after`, at most
        `limit`, with the columns of Wireshark's packet list; `total` counts all recorded.
        With `filter`, only the packets it matches; `next_after` is the `after` of the next
        request (a filtered request reads at most FILTER_SCAN_LIMIT packets). `first_time` is
        the time of packet 1 (null before any), from which tshark counts packets' times."""
        display_filter = parse_filter(filter_text) if filter_text else None
        matches, total, next_after = matching_packets(service.capture(capture_id), after, limit,
                                                      display_filter)
        capture = service.capture(capture_id)
        first, _ = service.capture_records(capture, 0, 1)
        packets = []
        for number, record in matches:
            columns = summarize(record.data)
            packets.append({"index": number, "time": round(record.time, 6),
                            **direction_json(capture, record),
                            "source": columns.source, "destination": columns.destination,
                            "protocol": columns.protocol, "length": len(record.data),
                            "summary": columns.summary})
        return {"total": total, "packets": packets, "next_after": next_after,
                "first_time": round(first[0].time, 6) if first else None}

    def direction_json(capture, record) -> dict:
        """The packet's direction as seen from the vRouter (ingress: the monitored VM sent it,
        egress: it was delivered to the VM; null: unknown) and as seen from the VM."""
        vm = capture_json_vm(capture) or capture.interface
        text = {"ingress": f"from {vm}", "egress": f"to {vm}"}.get(record.direction, "unknown")
        return {"direction": record.direction, "direction_text": text}

    @api.get("/api/captures/{capture_id}/packets/{number}", responses=_errors(404, 503))
    def capture_packet(capture_id: int, number: int):
        """Packet `number` (from 1) of this capture in detail: its bytes (hex) and its decoded
        layers as tshark's tree, each item with the offset and length of its bytes."""
        capture = service.capture(capture_id)
        records, total = service.capture_records(capture, max(0, number - 1), 1)
        if number < 1 or not records:
            raise NotFound(f"capture {capture_id} has no packet {number} (it has {total}, "
                           f"numbered from 1)", "number")
        record = records[0]
        return {"index": number, "time": round(record.time, 6), **direction_json(capture, record),
                "length": len(record.data),
                "bytes": record.data.hex(), "layers": dissect_frame(record.data, record.time)}

    @api.get("/api/analyzer-choice", responses=_errors())
    def analyzer_preferred():
        """The analyzer a capture started with one click goes to (the capture screen's), with
        the rule that picks it and why it applies."""
        choice = preferred_analyzer(service.topology, list(service.captures.values()))
        return {"analyzer": choice.analyzer, "running": choice.running, "reason": choice.reason,
                "rule": ANALYZER_RULE}

    @api.get("/api/policies", response_model=PoliciesResponse, responses=_errors())
    def list_policies():
        """The network policies (written through Contrail's configuration API) with their
        rules in order and the networks they are attached to in sequence; which networks the
        applied policies connect, and which traffic they mirror to which analyzer."""
        if policies is None:
            return {"config_api_port": None, "policies": [], "connections": [], "mirrors": [], "problem": None}
        return {"config_api_port": config_api_port, **policies()}

    @api.get("/api/topology", responses=_errors())
    def lab_topology():
        """The lab as a graph: nodes (the fabric, compute nodes, fabric analyzers with their
        addresses, networks with their subnets and labels, VMs and analyzer VMs) and the edges
        that join them."""
        graph = service.topology.graph()
        return {"name": graph.graph["name"],
                "nodes": [{"id": node, **attributes} for node, attributes in graph.nodes(data=True)],
                "edges": [{"source": first, "target": second, **attributes}
                          for first, second, attributes in graph.edges(data=True)]}

    @api.get("/api/captures/{capture_id}/pcap", response_class=Response, responses={
        200: {"description": "The capture file", "content": {PCAPNG_MEDIA_TYPE: {}, PCAP_MEDIA_TYPE: {}}},
        **_errors(400, 404)})
    def capture_pcap(capture_id: int,
                     file_format: Literal["pcapng", "pcap"] = Query(
                         "pcapng", alias="format", description="pcapng (each packet with its "
                         "direction: Wireshark's Inbound = delivered to the VM, Outbound = sent "
                         "by it) or classic pcap (no direction)")):
        """Everything the analyzer recorded for this capture so far, streamed: its complete
        records as of the request (a record still being written is left out)."""
        capture = service.capture(capture_id)
        name = pcap_download_name(capture, file_format)
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        size = service.capture_file_size(capture)
        if file_format == "pcap":
            if not size:
                return Response(PCAP_HEADER, media_type=PCAP_MEDIA_TYPE, headers=headers)
            return StreamingResponse(read_prefix(service.pcap_path(capture), size),
                                     media_type=PCAP_MEDIA_TYPE,
                                     headers={**headers, "Content-Length": str(size)})
        if not size:
            return Response(PCAPNG_HEADER, media_type=PCAPNG_MEDIA_TYPE, headers=headers)
        return StreamingResponse(pcapng_prefix(service.pcap_path(capture), size),
                                 media_type=PCAPNG_MEDIA_TYPE, headers=headers)

    @api.get("/api/analyzers/{name}/pcap", response_class=Response, responses={
        200: {"description": "The analyzer's raw capture", "content": {PCAP_MEDIA_TYPE: {}}},
        **_errors(404)})
    def analyzer_pcap(name: str):
        """What the analyzer's interface received so far, headers and all (the Juniper header
        and outer IPv4/UDP of each copy, and anything else it got), as classic pcap: what an
        engineer compares with a customer's capture. Its complete records as of the request."""
        path = service.analyzer_raw_path(name)
        headers = {"Content-Disposition": f'attachment; filename="analyzer-{name}-raw.pcap"'}
        size = service.pcaps.complete_size(path)
        if not size:
            return Response(PCAP_HEADER, media_type=PCAP_MEDIA_TYPE, headers=headers)
        return StreamingResponse(read_prefix(path, size), media_type=PCAP_MEDIA_TYPE,
                                 headers={**headers, "Content-Length": str(size)})

    @api.get("/", include_in_schema=False)
    def web_ui(token: str | None = None):
        """The monitor web UI; its scripts and styles are under /ui/. `?token=TOKEN` (the API's
        bearer token) logs this browser in: a cookie then carries the token, and the address
        bar loses it."""
        if token is None:
            return FileResponse(WEB_DIR / "index.html")
        if not (access.token and hmac.compare_digest(token.encode(), access.token.encode())):
            raise Unauthorized("wrong token", "token")
        login = RedirectResponse("/", status_code=303)
        login.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return login

    def from_here_only(page: Response) -> Response:
        """`page` with a Content-Security-Policy that keeps the browser from loading anything
        from elsewhere: ReDoc's footer otherwise fetches its logo from cdn.redoc.ly."""
        page.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; worker-src 'self' blob:")
        return page

    @api.get("/docs", include_in_schema=False)
    def swagger_ui():
        """The API's documentation (Swagger UI), its scripts and styles served from here."""
        return from_here_only(get_swagger_ui_html(openapi_url="/openapi.json", title="mirrorlab API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url="/ui/favicon.svg"))

    @api.get("/redoc", include_in_schema=False)
    def redoc():
        """The API's documentation (ReDoc), its script served from here, without web fonts or
        its footer's logo from a CDN."""
        return from_here_only(get_redoc_html(openapi_url="/openapi.json", title="mirrorlab API",
                                             redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                                             redoc_favicon_url="/ui/favicon.svg", with_google_fonts=False))

    api.mount("/ui", StaticFiles(directory=WEB_DIR), name="ui")
    api.mount(DOCS_ASSETS, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    return api
