"""`mirrorlab`: the command line, a thin layer over the lab processes and the REST API."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from mirrorlab.controller.rest import is_loopback, is_wildcard
from mirrorlab import topofile
from mirrorlab.health import lab_problems
from mirrorlab.sandbox import Sandbox, SandboxError
from mirrorlab.recorder import DEFAULT_LIMIT_BYTES, DEFAULT_MIN_FREE_BYTES
from mirrorlab.state import LabState, private_file, process_alive, process_record, stop_process
from mirrorlab.topology import TopologyError

UP_TIMEOUT = 600.0
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """A size like 100M, 2G, 64K or 5000 (bytes; units are powers of 1024), for argparse."""
    number, unit = text.rstrip("KMGTkmgt"), text[len(text.rstrip("KMGTkmgt")):].upper()
    if not number.isdigit() or unit not in SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"bad size '{text}' (e.g. 100M, 2G, 64K or bytes)")
    return int(number) * SIZE_UNITS[unit]
TOKEN_ENV = "MIRRORLAB_API_TOKEN"


class CliError(Exception):
    """A problem to print (without a traceback) before exiting with `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# --- processes ------------------------------------------------------------------------------

def _spawn(state: LabState, argv: list[str], log_name: str, token: str | None = None) -> dict:
    # umask 077: what the lab's processes write (store, pcaps, logs) is the owner's alone. The
    # API token goes by the environment, which other users cannot read as they can argv.
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    env["MIRRORLAB_STATE_DIR"] = str(state.dir)
    if token:
        env[TOKEN_ENV] = token
    with private_file(state.dir / log_name) as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                   umask=0o077)
    return process_record(process.pid)


def start_controller(state: LabState) -> dict:
    """Start the controller process for the recorded lab and record it."""
    record = state.read()
    if process_alive(record.get("controller_process")):
        raise CliError(f"the controller runs already (pid {record['controller_process']['pid']})")
    allowed = [arg for host in record.get("allowed_hosts", []) for arg in ("--allowed-host", host)]
    process = _spawn(state, [sys.executable, "-m", "mirrorlab.controller.main",
                             "--topology", str(state.topology_path),
                             "--openflow-socket", str(Sandbox(state).openflow_socket),
                             "--api-host", record.get("api_host", "127.0.0.1"),
                             "--api-port", str(record["api_port"]), *allowed,
                             "--lease-seconds", str(record["lease_seconds"]),
                             "--capture-limit-bytes",
                             str(record.get("capture_limit_bytes", DEFAULT_LIMIT_BYTES)),
                             "--min-free-bytes", str(record.get("min_free_bytes", DEFAULT_MIN_FREE_BYTES))],
                     "controller.log", token=record.get("api_token"))
    with state.update() as current:
        current["controller_process"] = process
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not process_alive(process):
            raise CliError(f"the controller exited at start; see {state.dir / 'controller.log'}")
        try:
            _api(state, "GET", "/api/vrouters")
            return process
        except CliError:
            time.sleep(0.2)
    stop_process(process)
    raise CliError(f"the controller's API did not come up; see {state.dir / 'controller.log'}")


def stop_controller(state: LabState) -> bool:
    """Stop the controller process; return whether one was running."""
    record = state.read()
    running = process_alive(record.get("controller_process"))
    stop_process(record.get("controller_process"))
    return running


# --- REST client -----------------------------------------------------------------------------

def _api_url(record: dict) -> str:
    """Where the recorded lab's API answers this machine: its address, or loopback when it
    listens on every address."""
    host = record.get("api_host", "127.0.0.1")
    host = "127.0.0.1" if is_wildcard(host) else host
    return f"http://{f'[{host}]' if ':' in host else host}:{record['api_port']}"


def _segment(value) -> str:
    """`value` as one URL path segment: any character, '/' and non-ASCII too, percent-encoded."""
    return urllib.parse.quote(str(value), safe="")


def _api(state: LabState, method: str, path: str, body: dict | None = None,
         save_to: Path | None = None):
    """A request to the lab's REST API: its JSON answer, or with `save_to` its body streamed
    into that file (and the number of bytes written)."""
    record = state.read()
    if not record:
        raise CliError("no lab is running; start one with `mirrorlab up`")
    url = _api_url(record) + path
    # Options not given are left out: the API takes its defaults for absent fields, not null.
    data = (json.dumps({k: v for k, v in body.items() if v is not None}).encode()
            if body is not None else None)
    headers = {"Content-Type": "application/json"}
    token = record.get("api_token") or os.environ.get(TOKEN_ENV)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            if save_to is not None:
                with open(save_to, "wb") as out:
                    shutil.copyfileobj(response, out, 1 << 20)
                return save_to.stat().st_size
            payload = response.read()
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read()).get("error", err.reason)
        except ValueError:
            message = err.reason
        raise CliError(f"error: {message}", 2) from None
    except (urllib.error.URLError, OSError) as err:
        raise CliError(f"the controller's API at {url} does not answer ({err}); "
                       f"is it running? (`mirrorlab controller start`)") from None
    return json.loads(payload)


# --- commands ---------------------------------------------------------------------------------

def cmd_check(args) -> int:
    """Validate a topology file."""
    topology = topofile.load(topofile.locate(args.topology))
    print(f"{args.topology}: ok: {len(topology.computes)} compute nodes, "
          f"{len(topology.networks)} networks, {len(topology.vms)} VMs")
    return 0


def cmd_up(args) -> int:
    """Bring a lab up and wait until every VM reaches its peers."""
    topology_path = topofile.locate(args.topology).resolve()
    topology = topofile.load(topology_path)
    if not (is_loopback(args.api_host) or args.api_token):
        raise CliError(f"--api-host {args.api_host} is not loopback: give the API a token "
                       f"(--api-token or {TOKEN_ENV})", 2)
    state = LabState()
    record = state.read()
    if process_alive(record.get("lab_process")):
        raise CliError(f"a lab is running already ({record.get('topology')}); "
                       f"run `mirrorlab down` first")
    if state.exists():
        _down(state)  # the remains of a lab that crashed
    state.clear()
    state.ensure_dir()
    started = time.monotonic()
    # Every process of the lab loads this copy, so editing the file later cannot make the
    # controller reconcile to a lab that was never built.
    with private_file(state.topology_path, "w") as copy:
        copy.write(topology_path.read_text())
    with state.update() as current:
        current.update(topology=str(topology_path), api_host=args.api_host, api_port=args.api_port,
                       allowed_hosts=args.allowed_host, lease_seconds=args.lease_seconds,
                       capture_limit_bytes=args.capture_limit, min_free_bytes=args.min_free_disk)
        if args.api_token:
            current["api_token"] = args.api_token
    print(f"mirrorlab: bringing up '{topology.name}' from {topology_path}")
    sandbox = Sandbox(state)
    try:
        print("      making the lab's network namespace and starting its Open vSwitch")
        sandbox.create(topology.name)
        print("      starting the controller (os-ken)")
        start_controller(state)
    except (CliError, SandboxError, subprocess.CalledProcessError) as err:
        _down(state, keep_logs=True)
        raise CliError(f"bring-up failed: {err}; logs stay in {state.dir}/*.log") from None
    lab_process = _spawn(state, sandbox.command([sys.executable, "-m", "mirrorlab.netlab",
                                                 "--topology", str(state.topology_path)]),
                         "lab.log")
    with state.update() as current:
        current["lab_process"] = lab_process
    outcome = _follow_progress(state, lab_process)
    if outcome != "READY":
        print(f"mirrorlab: bring-up failed; cleaning up. Logs stay in {state.dir}/*.log",
              file=sys.stderr)
        _down(state, keep_logs=True)
        return 1
    interfaces = sum(len(vm.interfaces) for vm in topology.vms)
    print(f"mirrorlab: lab '{topology.name}' is up in {time.monotonic() - started:.1f}s: "
          f"{len(topology.computes)} compute nodes, {len(topology.networks)} networks, "
          f"{len(topology.vms)} VMs, {interfaces} interfaces")
    url = _api_url(state.read())
    print(f"      REST API: {url}/api/vrouters (OpenAPI: /openapi.json)")
    print(f"      web UI: {url}/" + (" (open /?token=TOKEN once to log in)" if args.api_token else ""))
    print("      try: mirrorlab status | mirrorlab exec vm1 -- ping -c 3 <peer ip> | mirrorlab down")
    return 0


def _follow_progress(state: LabState, lab_process: dict) -> str:
    deadline = time.monotonic() + UP_TIMEOUT
    seen = 0
    while time.monotonic() < deadline:
        lines = state.progress_path.read_text().splitlines() if state.progress_path.exists() else []
        for line in lines[seen:]:
            if line == "READY":
                return line
            print(line, flush=True)
            if line.startswith("FAILED"):
                return "FAILED"
        seen = len(lines)
        if not process_alive(lab_process):
            return "FAILED"
        time.sleep(0.1)
    return "TIMEOUT"


def _down(state: LabState, keep_logs: bool = False) -> list[str]:
    record = state.read()
    stop_process(record.get("lab_process"), timeout=120)
    stop_controller(state)
    removed = state.sweep() + Sandbox(state).destroy()
    state.clear(keep_logs=keep_logs)
    return removed


def cmd_down(args) -> int:
    """Tear the lab down: exactly what it recorded."""
    state = LabState()
    if not state.exists():
        print("mirrorlab: no lab is recorded; nothing to do")
        return 0
    removed = _down(state)
    if removed:
        print("mirrorlab: removed leftovers of a crashed lab: " + ", ".join(removed))
    print("mirrorlab: lab is down")
    return 0


def _status(state: LabState) -> dict:
    record = state.read()
    if not record:
        raise CliError("no lab is running; start one with `mirrorlab up`")
    topology = topofile.load(state.topology_path)
    controller = record.get("controller_process")
    lab = record.get("lab_process")
    vrouters, analyzer_list = {}, []
    if process_alive(controller):
        try:
            vrouters = {v["name"]: v for v in _api(state, "GET", "/api/vrouters")}
            analyzer_list = _api(state, "GET", "/api/analyzers")
        except CliError:
            pass
    vms = []
    for vm in topology.vms:
        vms.append({"name": vm.name, "compute": vm.compute, "interfaces": [{
            "name": i.name, "vm": vm.name, "network": i.network, "ip": str(i.ip),
            "ip6": str(i.ip6) if i.ip6 else None, "mac": i.mac, "vrouter_port": i.port_name,
            "ofport": i.ofport} for i in vm.interfaces]})
    return {
        "topology": record["topology"], "name": topology.name,
        "problems": lab_problems(state),
        "lab": {"pid": lab["pid"] if lab else None, "running": process_alive(lab),
                "netns": record.get("netns")},
        "controller": {"pid": controller["pid"] if controller else None,
                       "running": process_alive(controller),
                       "openflow": Sandbox(state).openflow_target,
                       "api": _api_url(record)},
        "computes": [{"name": c.name, "vrouter": c.vrouter, "fabric_ip": str(topology.fabric_ip(c)),
                      "connected": vrouters.get(c.name, {}).get("connected", False)}
                     for c in topology.computes],
        "networks": [{"name": n.name, "subnet": str(n.subnet),
                      "subnet6": str(n.subnet6) if n.subnet6 else None, "label": n.label}
                     for n in topology.networks],
        "vms": vms,
        "analyzers": analyzer_list,
    }


def cmd_status(args) -> int:
    """Show the lab; exit code 1 if it is recorded but not running."""
    status = _status(LabState())
    code = 1 if status["problems"] else 0
    if args.json:
        print(json.dumps(status, indent=2))
        return code
    lab, controller = status["lab"], status["controller"]
    print(f"lab '{status['name']}' ({status['topology']}): "
          f"{'running' if lab['running'] else 'NOT RUNNING'} (pid {lab['pid']}, "
          f"namespace {lab['netns']})")
    for problem in status["problems"]:
        print(f"PROBLEM: {problem}")
    print(f"controller: {'running' if controller['running'] else 'STOPPED'} (pid {controller['pid']}), "
          f"OpenFlow {controller['openflow']}, API {controller['api']}")
    print("\ncompute   vRouter          fabric IP        connected")
    for c in status["computes"]:
        print(f"{c['name']:<9} {c['vrouter']:<16} {c['fabric_ip']:<16} {'yes' if c['connected'] else 'no'}")
    print("\nnetwork       subnet            subnet6               label")
    for n in status["networks"]:
        print(f"{n['name']:<13} {n['subnet']:<17} {n['subnet6'] or '-':<21} {n['label']}")
    print("\nvm       compute    interface  network       ip            mac                vRouter port")
    for vm in status["vms"]:
        for i in vm["interfaces"]:
            print(f"{vm['name']:<8} {vm['compute']:<10} {i['name']:<10} {i['network']:<13} "
                  f"{i['ip']:<13} {i['mac']:<18} {i['vrouter_port']} (port {i['ofport']})")
    for analyzer in status["analyzers"]:
        print(f"analyzer {analyzer['name']}: vm {analyzer['vm']} on {analyzer['compute']}, "
              f"{analyzer['network']} {analyzer['ip']}, {_recorder_text(analyzer['recorder'])}")
    return code


def cmd_exec(args) -> int:
    """Run a command inside a VM's network namespace, passing its output and exit code on."""
    if not args.command:
        raise CliError("usage: mirrorlab exec VM -- COMMAND [ARGS...]", 2)
    record = LabState().read()
    host = next((h for h in record.get("hosts", []) if h.get("name") == args.vm), None)
    if host is None:
        known = ", ".join(h["name"] for h in record.get("hosts", []))
        raise CliError(f"unknown vm '{args.vm}' (running: {known or 'none'})", 2)
    if not process_alive(host):
        raise CliError(f"vm '{args.vm}' is not running")
    command = args.command[1:] if args.command[0] == "--" else args.command
    os.execvp("nsenter", ["nsenter", "--target", str(host["pid"]), "--net", "--", *command])


def cmd_netns(args) -> int:
    """Run a command inside the lab's network namespace (its vRouters and fabric), with
    ovs-vsctl, ovs-ofctl and ovs-appctl pointed at the lab's own Open vSwitch."""
    command = args.command[1:] if args.command and args.command[0] == "--" else args.command
    if not command:
        raise CliError("usage: mirrorlab netns -- COMMAND [ARGS...]", 2)
    state = LabState()
    if not state.exists():
        raise CliError("no lab is running; start one with `mirrorlab up`")
    try:
        argv = Sandbox(state).command(command)
    except SandboxError as err:
        raise CliError(str(err)) from None
    os.execvp(argv[0], argv)


def cmd_controller(args) -> int:
    """Start, stop or restart the controller alone."""
    state = LabState()
    if not state.exists():
        raise CliError("no lab is running; start one with `mirrorlab up`")
    if args.action in ("stop", "restart"):
        print("mirrorlab: controller stopped" if stop_controller(state)
              else "mirrorlab: the controller was not running")
    if args.action in ("start", "restart"):
        process = start_controller(state)
        print(f"mirrorlab: controller started (pid {process['pid']})")
    return 0


def _print(args, payload, text) -> None:
    print(json.dumps(payload, indent=2) if args.json else text(payload))


def _capture_line(c: dict) -> str:
    line = (f"capture {c['id']}: {c['state']:<7} {c['vrouter']}/{c['interface']} ({c['vm']}) "
            f"{c['direction']:<7} -> {c['analyzer']} {_destination_text(c['mirror_to'])}  "
            f"{c['packets']} packets, {c['bytes']} bytes, "
            f"file {c['file_bytes']} of {c['limit_bytes']} bytes, started by {c['origin']}")
    return line + (f"  ({c['stop_reason']})" if c["stop_reason"] else "")


def _destination_text(mirror_to: dict) -> str:
    """A capture's destination in a few words: address, mode, header, port or VNI, VLAN."""
    if mirror_to["nh_mode"] == "static":
        static = mirror_to["static_nh_header"]
        text = f"[static VXLAN {static['vni']} to {static['vtep_dst_ip_address']}"
    elif mirror_to["juniper_header"]:
        text = f"[{mirror_to['analyzer_ip_address']} udp {mirror_to['udp_port']}, Juniper header"
    else:
        text = f"[{mirror_to['analyzer_ip_address']}, original frames, no header"
    if mirror_to["nic_assisted_mirroring"]:
        text += f", NIC-assisted VLAN {mirror_to['nic_assisted_mirroring_vlan']}"
    return text + "]"


def mirror_to_from_flags(args) -> dict | None:
    """The `mirror_to` object (Contrail's MirrorActionType) that `capture start`'s destination
    flags ask for, None when none is given; the API checks it."""
    flags = {"udp_port": args.udp_port, "juniper_header": args.juniper_header,
             "nh_mode": args.nh_mode, "nic_assisted_mirroring_vlan": args.nic_vlan}
    mirror_to = {name: value for name, value in flags.items() if value is not None}
    if args.nic_vlan is not None:
        mirror_to["nic_assisted_mirroring"] = True
    static = {"vtep_dst_ip_address": args.vtep_ip, "vtep_dst_mac_address": args.vtep_mac,
              "vni": args.vni}
    if any(value is not None for value in static.values()):
        mirror_to["static_nh_header"] = {k: v for k, v in static.items() if v is not None}
    return mirror_to or None


def _packet_lines(answer: dict) -> str:
    """The packets of a /packets answer, one line each, as tshark lists them plus direction."""
    lines = [f"{p['index']:>6} {p['time']:.6f} {p['direction_text']:<12} {p['source']} -> "
             f"{p['destination']} {p['protocol']} {p['length']} {p['summary']}"
             for p in answer["packets"]]
    return "\n".join(lines + [f"({len(answer['packets'])} shown of {answer['total']}; "
                               f"next: --after {answer['next_after']})"])


def _recorder_text(recorder: dict | None) -> str:
    """How an analyzer's recorder is doing, for a line of text."""
    if recorder is None:
        return "recorder unknown"
    text = f"recorder {recorder['state']}"
    if recorder["restarts"]:
        text += f" ({recorder['restarts']} restarts)"
    if recorder["state"] != "running" and recorder["last_error"]:
        text += f": {recorder['last_error']}"
    elif recorder["last_error"]:
        text += f", last failure: {recorder['last_error']}"
    return text


def cmd_capture(args) -> int:
    """Captures through the REST API."""
    state = LabState()
    if args.action == "start":
        body = {"direction": args.direction, "analyzer": args.analyzer, "limit_bytes": args.limit,
                "origin": "cli", "mirror_to": mirror_to_from_flags(args)}
        if args.vm:
            body["vm"] = args.vm
            if args.vrouter:
                body["vrouter"] = args.vrouter
        else:
            if not (args.vrouter and args.interface):
                raise CliError("usage: mirrorlab capture start VROUTER INTERFACE | --vm VM", 2)
            body.update(vrouter=args.vrouter, interface=args.interface)
        _print(args, _api(state, "POST", "/api/captures", body), _capture_line)
    elif args.action == "stop":
        _print(args, _api(state, "DELETE", f"/api/captures/{args.id}"), lambda c: (
            f"capture {c['id']} was already stopped\n" if c["already_stopped"] else "") + _capture_line(c))
    elif args.action == "show":
        _print(args, _api(state, "GET", f"/api/captures/{args.id}"), _capture_line)
    elif args.action == "list":
        _print(args, _api(state, "GET", "/api/captures"),
               lambda cs: "\n".join(_capture_line(c) for c in cs) or "no captures")
    elif args.action == "pcap":
        file_format = "pcap" if args.classic else "pcapng"
        size = _api(state, "GET", f"/api/captures/{args.id}/pcap?format={file_format}",
                    save_to=Path(args.output))
        print(f"wrote {args.output} ({size} bytes, {file_format})")
    elif args.action == "packets":
        query = urllib.parse.urlencode({"after": args.after, "limit": args.limit}
                                       | ({"filter": args.filter} if args.filter else {}))
        _print(args, _api(state, "GET", f"/api/captures/{args.id}/packets?{query}"), _packet_lines)
    return 0


def cmd_analyzer(args) -> int:
    """Analyzer instances through the REST API."""
    state = LabState()
    line = lambda a: (f"analyzer {a['name']}: vm {a['vm']} on {a['compute']}, network "
                      f"{a['network']} {a['ip']}, captures {a['captures'] or '-'}, "
                      f"{_recorder_text(a['recorder'])}")
    if args.action == "list":
        _print(args, _api(state, "GET", "/api/analyzers"),
               lambda items: "\n".join(line(a) for a in items) or "no analyzers")
    elif args.action == "create":
        body = {"name": args.name, "network": args.network, "compute": args.compute}
        _print(args, _api(state, "POST", "/api/analyzers", body), line)
    elif args.action == "delete":
        _print(args, _api(state, "DELETE", f"/api/analyzers/{_segment(args.name)}"),
               lambda r: f"analyzer {r['deleted']} deleted")
    elif args.action == "pcap":
        size = _api(state, "GET", f"/api/analyzers/{_segment(args.name)}/pcap",
                    save_to=Path(args.output))
        print(f"wrote {args.output} ({size} bytes, pcap: everything analyzer {args.name} received)")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line (and a hint for values that start with '-')."""

    def error(self, message: str):
        """Print `message` as one line and exit 2."""
        if message.startswith(("the following arguments are required", "unrecognized arguments",
                               "expected one argument")):
            message += f"; a name that starts with '-' goes after '--' ({self.prog} -- -NAME)"
        _fail(f"{self.prog}: {message} (see {self.prog} --help)")
        self.exit(2)


def _fail(message: str) -> None:
    print(" ".join(str(message).split("\n")), file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `mirrorlab`."""
    parser = _Parser(prog="mirrorlab", description=__doc__)
    sub = parser.add_subparsers(dest="command_name", required=True)

    up = sub.add_parser("up", help="bring a lab up (default: the shipped topology 'default')")
    up.add_argument("topology", nargs="?", default="default",
                    help="a topology file, or the name of a shipped one: "
                         + ", ".join(sorted(topofile.shipped())))
    up.add_argument("--api-host", default="127.0.0.1",
                    help="address the API listens on (default loopback); other than loopback "
                         "needs --api-token")
    up.add_argument("--api-port", type=int, default=8080)
    up.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                    help="a host name or address the API answers to, besides 127.0.0.1, localhost, "
                         "::1 and --api-host (repeatable)")
    up.add_argument("--api-token", default=os.environ.get(TOKEN_ENV) or None,
                    help=f"bearer token every /api request must present (default: ${TOKEN_ENV})")
    up.add_argument("--lease-seconds", type=float, default=5.0,
                    help="how long a capture opened in the web UI outlives its page's last renewal")
    up.add_argument("--capture-limit", type=parse_size, default=DEFAULT_LIMIT_BYTES, metavar="SIZE",
                    help="the most a capture's pcap file holds before the capture stops "
                         "(default 100M; `capture start --limit` sets one capture's)")
    up.add_argument("--min-free-disk", type=parse_size, default=DEFAULT_MIN_FREE_BYTES, metavar="SIZE",
                    help="free space on the state directory's disk below which captures stop "
                         "and new ones are refused (default 256M)")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="tear the lab down").set_defaults(func=cmd_down)
    status = sub.add_parser("status", help="show compute nodes, VMs, interfaces, controller")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    check = sub.add_parser("check", help="validate a topology file without starting anything")
    check.add_argument("topology")
    check.set_defaults(func=cmd_check)
    run = sub.add_parser("exec", help="run a command inside a VM: mirrorlab exec VM -- CMD")
    run.add_argument("vm")
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(func=cmd_exec)
    netns = sub.add_parser("netns", help="run a command in the lab's namespace (vRouters, fabric, "
                                         "its Open vSwitch): mirrorlab netns -- CMD")
    netns.add_argument("command", nargs=argparse.REMAINDER)
    netns.set_defaults(func=cmd_netns)
    controller = sub.add_parser("controller", help="start, stop or restart the controller")
    controller.add_argument("action", choices=["start", "stop", "restart"])
    controller.set_defaults(func=cmd_controller)

    capture = sub.add_parser("capture", help="packet captures (interface mirroring)")
    capture_sub = capture.add_subparsers(dest="action", required=True)
    start = capture_sub.add_parser("start", help="mirror an interface to an analyzer")
    start.add_argument("vrouter", nargs="?")
    start.add_argument("interface", nargs="?")
    start.add_argument("--vm", help="capture on this VM's first interface")
    start.add_argument("--direction", choices=["ingress", "egress", "both"], default="both")
    start.add_argument("--analyzer", help="analyzer instance (default: interface-packet-capture)")
    start.add_argument("--limit", type=parse_size, metavar="SIZE",
                       help="stop when the pcap file reaches SIZE (default: the lab's --capture-limit)")
    destination = start.add_argument_group("destination (Contrail's mirror_to; default: the "
                                           "analyzer, dynamic, Juniper header, UDP 8099)")
    destination.add_argument("--udp-port", type=int, metavar="PORT", help="UDP port of the copies")
    destination.add_argument("--no-juniper-header", dest="juniper_header", action="store_false",
                             default=None, help="send the original frames without the header")
    destination.add_argument("--nh-mode", choices=["dynamic", "static"],
                             help="static: VXLAN to a VTEP (--vtep-ip, --vtep-mac, --vni)")
    destination.add_argument("--vtep-ip", metavar="IP", help="the VTEP's fabric address")
    destination.add_argument("--vtep-mac", metavar="MAC", help="the VTEP's MAC address")
    destination.add_argument("--vni", type=int, help="the VXLAN network identifier")
    destination.add_argument("--nic-vlan", type=int, metavar="VLAN",
                             help="NIC-assisted mirroring with this VLAN")
    for name in ("stop", "show"):
        one = capture_sub.add_parser(name)
        one.add_argument("id", type=int)
    capture_sub.add_parser("list")
    pcap = capture_sub.add_parser("pcap", help="download what the analyzer recorded (pcapng, "
                                               "with each packet's direction)")
    pcap.add_argument("id", type=int)
    pcap.add_argument("-o", "--output", required=True)
    pcap.add_argument("--classic", action="store_true",
                      help="classic pcap, for tools that want it (no directions)")
    packets = capture_sub.add_parser("packets", help="the recorded packets, with their direction")
    packets.add_argument("id", type=int)
    packets.add_argument("--after", type=int, default=0, help="start after packet N")
    packets.add_argument("--limit", type=int, default=200, help="at most N packets (1-1000)")
    packets.add_argument("--filter", help="display filter, e.g. 'icmp and host 10.1.1.12'")
    for p in [start, pcap, packets] + [capture_sub.choices[n] for n in ("stop", "show", "list")]:
        p.add_argument("--json", action="store_true")
    capture.set_defaults(func=cmd_capture)

    analyzer = sub.add_parser("analyzer", help="analyzer instances")
    analyzer_sub = analyzer.add_subparsers(dest="action", required=True)
    analyzer_sub.add_parser("list").add_argument("--json", action="store_true")
    create = analyzer_sub.add_parser("create")
    create.add_argument("name")
    create.add_argument("--network")
    create.add_argument("--compute")
    create.add_argument("--json", action="store_true")
    delete = analyzer_sub.add_parser("delete")
    delete.add_argument("name")
    delete.add_argument("--json", action="store_true")
    raw = analyzer_sub.add_parser("pcap", help="download what the analyzer's interface received, "
                                              "headers and all (classic pcap)")
    raw.add_argument("name")
    raw.add_argument("-o", "--output", required=True)
    analyzer.set_defaults(func=cmd_analyzer)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mirrorlab` command. Every error is one line on stderr (a bad
    topology file: one line per problem), never a traceback."""
    for stream in (sys.stdout, sys.stderr):  # names in any script print on any terminal
        stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TopologyError as err:
        print("\n".join(err.problems), file=sys.stderr)
        return 2
    except CliError as err:
        _fail(f"mirrorlab: {err}")
        return err.code
    except OSError as err:
        _fail(f"mirrorlab: {err}")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a bug: still one line, and the exit code says so
        _fail(f"mirrorlab: internal error: {type(err).__name__}: {err}")
        return 70


if __name__ == "__main__":
    sys.exit(main())
