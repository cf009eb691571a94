"""The REST API (FastAPI, OpenAPI at /openapi.json). JSON in and out.

Errors are mapped to HTTP in one place, `_error_response`: the controller's own errors carry
their status; malformed requests are 400; anything unexpected is a 500 with a JSON body, and
the server keeps running.

The same application serves the monitor web UI (controller/web: static HTML, CSS and JavaScript
modules) at /.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from controller.dissect import summarize
from controller.errors import InvalidRequest, MirrorlabError
from controller.mirroring import analyzers
from controller.pcapfile import read_prefix
from controller.service import ControllerService
from lab.pcap import PCAP_HEADER
from lab.topology import VM, ComputeNode, Interface

LOG = logging.getLogger("mirrorlab.rest")
# The monitor web UI: plain HTML, CSS and JavaScript modules, served as they are.
WEB_DIR = Path(__file__).resolve().parent / "web"
# The most packets one GET /api/captures/{id}/packets returns.
MAX_PACKETS_PER_REQUEST = 1000


class CaptureRequest(BaseModel):
    """Start a capture on `interface` of `vrouter` (or on `vm`'s first interface)."""

    model_config = ConfigDict(extra="forbid")
    vrouter: str | None = Field(None, description="compute node name, e.g. compute1")
    interface: str | None = Field(None, description="vRouter port (tap-vm1-0) or VM-side name (vm1-eth0)")
    vm: str | None = Field(None, description="shortcut: the VM's first interface")
    direction: str | None = Field(None, description="ingress | egress | both (default)")
    analyzer: str | None = Field(None, description="analyzer instance (default: interface-packet-capture)")
    lease_seconds: float | None = Field(None, description="stop unless renewed within this time "
                                                          "(POST /api/captures/{id}/lease)")
    limit_bytes: int | None = Field(None, description="the most its pcap file holds; the capture "
                                                      "stops there (default: the lab's capture limit)")


class AnalyzerRequest(BaseModel):
    """Launch an analyzer instance."""

    model_config = ConfigDict(extra="forbid")
    name: str
    network: str | None = Field(None, description="default: the analyzer network")
    compute: str | None = Field(None, description="default: the first compute node")


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat() if timestamp else None


def _error_response(status: int, message: str, field: str | None = None) -> JSONResponse:
    body = {"error": message}
    if field:
        body["field"] = field
    return JSONResponse(status_code=status, content=body)


def create_app(service: ControllerService, lease_seconds: float) -> FastAPI:
    """The API application serving `service`; `lease_seconds` is what the web UI leases."""
    api = FastAPI(title="mirrorlab", version="0.1.0",
                  description="Interface monitoring and mirroring of an emulated Contrail cloud")

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

    def capture_json(capture) -> dict:
        packets, total = service.capture_counts(capture)
        try:
            vm = service.topology.interface_by_port_name(capture.interface).vm
        except KeyError:  # a stopped capture of an analyzer that was deleted since
            vm = None
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
            "stop_reason": capture.stop_reason,
        }

    @api.get("/api/vrouters")
    def list_vrouters():
        """Every vRouter with its connection state and counts."""
        return [vrouter_json(c) for c in service.topology.computes]

    @api.get("/api/vrouters/{vrouter}")
    def get_vrouter(vrouter: str):
        """One vRouter, with its interfaces."""
        return vrouter_json(service.vrouter(vrouter), detail=True)

    @api.get("/api/vrouters/{vrouter}/interfaces")
    def list_interfaces(vrouter: str):
        """The interfaces (VMIs) of one vRouter, with their active captures."""
        compute = service.vrouter(vrouter)
        recorders = service.recorders()
        return [interface_json(i, recorders) for i in service.topology.interfaces_on(compute.name)]

    @api.get("/api/analyzers")
    def list_analyzers():
        """Analyzer instances, with the health of their recorders."""
        recorders = service.recorders()
        return [analyzer_json(vm, recorders) for vm in analyzers(service.topology).values()]

    @api.post("/api/analyzers", status_code=201)
    def create_analyzer(request: AnalyzerRequest):
        """Launch an analyzer instance (a VM with a recorder)."""
        return analyzer_json(service.create_analyzer(request.name, request.network, request.compute),
                             service.recorders())

    @api.delete("/api/analyzers/{name}")
    def delete_analyzer(name: str):
        """Remove an analyzer instance no active capture uses."""
        service.delete_analyzer(name)
        return {"deleted": name}

    @api.get("/api/captures")
    def list_captures(state: str | None = None):
        """Captures, newest first; `?state=active`, `stopped` or `failed` to filter."""
        if state not in (None, "active", "stopped", "failed"):
            raise InvalidRequest(f"bad state '{state}' (use active, stopped or failed)", "state")
        return [capture_json(c) for c in service.list_captures() if state in (None, c.state)]

    @api.post("/api/captures", status_code=201)
    def start_capture(request: CaptureRequest):
        """Start mirroring an interface to an analyzer."""
        vrouter, interface = request.vrouter, request.interface
        if request.vm is not None:
            if interface is not None:
                raise InvalidRequest("give either 'interface' or 'vm', not both", "vm")
            if not service.topology.has("vm", request.vm):
                raise InvalidRequest(f"unknown vm '{request.vm}'", "vm")
            first = service.topology.vm(request.vm).interfaces[0]
            vrouter, interface = vrouter or first.compute, first.port_name
        if vrouter is None:
            raise InvalidRequest("missing 'vrouter'", "vrouter")
        if interface is None:
            raise InvalidRequest("missing 'interface' (or 'vm')", "interface")
        return capture_json(service.start_capture(vrouter, interface, request.direction,
                                                  request.analyzer, request.lease_seconds,
                                                  request.limit_bytes))

    @api.post("/api/captures/{capture_id}/lease")
    def renew_lease(capture_id: int):
        """Renew a leased capture's lease (the capture screen does this while it is open)."""
        return capture_json(service.renew_lease(capture_id))

    @api.get("/api/config")
    def config():
        """Settings the web UI needs."""
        return {"lease_seconds": lease_seconds, "capture_limit_bytes": service.capture_limit_bytes,
                "min_free_bytes": service.min_free_bytes}

    @api.get("/api/captures/{capture_id}")
    def get_capture(capture_id: int):
        """One capture, with the packets and bytes its analyzer recorded so far."""
        return capture_json(service.capture(capture_id))

    @api.delete("/api/captures/{capture_id}")
    def stop_capture(capture_id: int):
        """Stop a capture: its mirror flows are removed when this returns."""
        return capture_json(service.stop_capture(capture_id))

    @api.post("/api/captures/{capture_id}/stop")
    def stop_capture_by_post(capture_id: int):
        """Stop a capture, like DELETE /api/captures/{id}; for browsers' navigator.sendBeacon,
        which can only POST, when the capture screen is closed."""
        return stop_capture(capture_id)

    @api.get("/api/captures/{capture_id}/packets")
    def capture_packets(capture_id: int,
                        after: int = Query(0, ge=0, description="packet number to continue after "
                                                                "(packets are numbered from 1)"),
                        limit: int = Query(200, ge=1, le=MAX_PACKETS_PER_REQUEST)):
        """The packets the analyzer recorded for this capture after packet `after`, at most
        `limit`, with the columns of Wireshark's packet list; `total` counts all recorded."""
        records, total = service.capture_records(service.capture(capture_id), after, limit)
        packets = []
        for number, record in enumerate(records, start=after + 1):
            columns = summarize(record.data)
            packets.append({"index": number, "time": round(record.time, 6),
                            "source": columns.source, "destination": columns.destination,
                            "protocol": columns.protocol, "length": len(record.data),
                            "summary": columns.summary})
        return {"total": total, "packets": packets}

    @api.get("/api/topology")
    def lab_topology():
        """The lab as a graph: nodes (the fabric, compute nodes, networks with their subnets and
        labels, VMs and analyzer VMs) and the edges that join them."""
        graph = service.topology.graph()
        return {"name": graph.graph["name"],
                "nodes": [{"id": node, **attributes} for node, attributes in graph.nodes(data=True)],
                "edges": [{"source": first, "target": second, **attributes}
                          for first, second, attributes in graph.edges(data=True)]}

    @api.get("/api/captures/{capture_id}/pcap")
    def capture_pcap(capture_id: int):
        """Everything the analyzer recorded for this capture so far, as a pcap file, streamed:
        its complete records as of the request (a record still being written is left out)."""
        capture = service.capture(capture_id)
        headers = {"Content-Disposition": f'attachment; filename="capture-{capture.id}-{capture.interface}.pcap"'}
        size = service.capture_file_size(capture)
        if not size:
            return Response(PCAP_HEADER, media_type="application/vnd.tcpdump.pcap", headers=headers)
        return StreamingResponse(read_prefix(service.pcap_path(capture), size),
                                 media_type="application/vnd.tcpdump.pcap",
                                 headers={**headers, "Content-Length": str(size)})

    @api.get("/", include_in_schema=False)
    def web_ui():
        """The monitor web UI; its scripts and styles are under /ui/."""
        return FileResponse(WEB_DIR / "index.html")

    api.mount("/ui", StaticFiles(directory=WEB_DIR), name="ui")
    return api
