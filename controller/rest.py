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
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from controller.analyzerchoice import ANALYZER_RULE, preferred_analyzer
from controller.displayfilter import filter_matches, parse_filter
from controller.dissect import summarize
from controller.errors import InvalidRequest, MirrorlabError, NotFound
from controller.mirroring import analyzers
from controller.packettree import dissect_frame
from controller.pcapfile import GLOBAL_HEADER
from controller.service import ControllerService
from lab.recorder import PCAP_HEADER
from lab.topology import VM, ComputeNode, Interface

LOG = logging.getLogger("mirrorlab.rest")
# The monitor web UI: plain HTML, CSS and JavaScript modules, served as they are.
WEB_DIR = Path(__file__).resolve().parent / "web"
# The most packets one GET /api/captures/{id}/packets returns.
MAX_PACKETS_PER_REQUEST = 1000
# With a display filter, one GET /api/captures/{id}/packets reads at most this many recorded
# packets, in chunks of FILTER_CHUNK, looking for matches; `next_after` says where to go on.
FILTER_SCAN_LIMIT = 20000
FILTER_CHUNK = 1000


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

    def interface_json(interface: Interface) -> dict:
        active = service.active_captures(interface)
        return {
            "name": interface.port_name, "vm_interface": interface.name, "vm": interface.vm,
            "network": interface.network, "ip": str(interface.ip),
            "ip6": str(interface.ip6) if interface.ip6 else None, "mac": interface.mac,
            "port": interface.ofport,
            "analyzer": service.topology.vm(interface.vm).analyzer,
            "captures": [c.id for c in active],
        }

    def vrouter_json(compute: ComputeNode, detail: bool = False) -> dict:
        interfaces = service.topology.interfaces_on(compute.name)
        body = {
            "name": compute.name, "bridge": compute.vrouter, "dpid": compute.dpid,
            "fabric_ip": str(service.topology.fabric_ip(compute)),
            "fabric_mac": compute.fabric_mac,
            "connected": service.connected(compute),
            "vms": sorted({i.vm for i in interfaces}), "interfaces": len(interfaces),
            "active_captures": len([c for c in service.active_captures() if c.compute == compute.name]),
        }
        if detail:
            body["interface_list"] = [interface_json(i) for i in interfaces]
        return body

    def analyzer_json(vm: VM) -> dict:
        interface = vm.interfaces[0]
        return {"name": vm.analyzer, "vm": vm.name, "compute": vm.compute,
                "network": interface.network, "ip": str(interface.ip), "mac": interface.mac,
                "interface": interface.port_name,
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
            "analyzer": capture.analyzer, "state": capture.state, "label": capture.label,
            "started_at": _iso(capture.started_at), "stopped_at": _iso(capture.stopped_at),
            "lease_seconds": capture.lease_seconds,
            "lease_expires_at": _iso(capture.lease_expires_at) if capture.active else None,
            "packets": packets, "bytes": total,
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
        return [interface_json(i) for i in service.topology.interfaces_on(compute.name)]

    @api.get("/api/analyzers")
    def list_analyzers():
        """Analyzer instances."""
        return [analyzer_json(vm) for vm in analyzers(service.topology).values()]

    @api.post("/api/analyzers", status_code=201)
    def create_analyzer(request: AnalyzerRequest):
        """Launch an analyzer instance (a VM with a recorder)."""
        return analyzer_json(service.create_analyzer(request.name, request.network, request.compute))

    @api.delete("/api/analyzers/{name}")
    def delete_analyzer(name: str):
        """Remove an analyzer instance no active capture uses."""
        service.delete_analyzer(name)
        return {"deleted": name}

    @api.get("/api/captures")
    def list_captures(state: str | None = None):
        """Captures, newest first; `?state=active` or `?state=stopped` to filter."""
        if state not in (None, "active", "stopped"):
            raise InvalidRequest(f"bad state '{state}' (use active or stopped)", "state")
        captures = sorted(service.captures.values(), key=lambda c: -c.id)
        return [capture_json(c) for c in captures if state in (None, c.state)]

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
                                                  request.analyzer, request.lease_seconds))

    @api.post("/api/captures/{capture_id}/lease")
    def renew_lease(capture_id: int):
        """Renew a leased capture's lease (the capture screen does this while it is open)."""
        return capture_json(service.renew_lease(capture_id))

    @api.get("/api/config")
    def config():
        """Settings the web UI needs."""
        return {"lease_seconds": lease_seconds}

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

    @api.get("/api/captures/{capture_id}/packets")
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
        request (a filtered request reads at most FILTER_SCAN_LIMIT packets)."""
        display_filter = parse_filter(filter_text) if filter_text else None
        matches, total, next_after = matching_packets(service.capture(capture_id), after, limit,
                                                      display_filter)
        packets = []
        for number, record in matches:
            columns = summarize(record.data)
            packets.append({"index": number, "time": round(record.time, 6),
                            "source": columns.source, "destination": columns.destination,
                            "protocol": columns.protocol, "length": len(record.data),
                            "summary": columns.summary})
        return {"total": total, "packets": packets, "next_after": next_after}

    @api.get("/api/captures/{capture_id}/packets/{number}")
    def capture_packet(capture_id: int, number: int):
        """Packet `number` (from 1) of this capture in detail: its bytes (hex) and its decoded
        layers as tshark's tree, each item with the offset and length of its bytes."""
        capture = service.capture(capture_id)
        records, total = service.capture_records(capture, max(0, number - 1), 1)
        if number < 1 or not records:
            raise NotFound(f"capture {capture_id} has no packet {number} (it has {total}, "
                           f"numbered from 1)", "number")
        record = records[0]
        return {"index": number, "time": round(record.time, 6), "length": len(record.data),
                "bytes": record.data.hex(), "layers": dissect_frame(record.data, record.time)}

    @api.get("/api/analyzers/preferred")
    def analyzer_preferred():
        """The analyzer a capture started with one click goes to (the capture screen's), with
        the rule that picks it and why it applies."""
        choice = preferred_analyzer(service.topology, list(service.captures.values()))
        return {"analyzer": choice.analyzer, "running": choice.running, "reason": choice.reason,
                "rule": ANALYZER_RULE}

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
        """Everything the analyzer received for this capture, as a pcap file."""
        capture = service.capture(capture_id)
        path: Path = service.pcap_path(capture)
        filename = f"capture-{capture.id}-{capture.interface}.pcap"
        if path.exists() and path.stat().st_size >= GLOBAL_HEADER:
            return FileResponse(path, media_type="application/vnd.tcpdump.pcap", filename=filename)
        return Response(PCAP_HEADER, media_type="application/vnd.tcpdump.pcap",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    @api.get("/", include_in_schema=False)
    def web_ui():
        """The monitor web UI; its scripts and styles are under /ui/."""
        return FileResponse(WEB_DIR / "index.html")

    api.mount("/ui", StaticFiles(directory=WEB_DIR), name="ui")
    return api
