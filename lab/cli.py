"""`mirrorlab`: the command line, argument parsing and printing over `mirrorlab.Lab`."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from mirrorlab import runner, scenario, topofile
from mirrorlab.client import query
from mirrorlab.controller.rest import is_loopback
from mirrorlab.driver import TOKEN_ENV, Lab, api_url_of
from mirrorlab.errors import ApiError, LabError, UsageError
from mirrorlab.recorder import DEFAULT_LIMIT_BYTES, DEFAULT_MIN_FREE_BYTES
from mirrorlab.state import LabState
from mirrorlab.topology import TopologyError

SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """A size like 100M, 2G, 64K or 5000 (bytes; units are powers of 1024), for argparse."""
    number, unit = text.rstrip("KMGTkmgt"), text[len(text.rstrip("KMGTkmgt")):].upper()
    if not number.isdigit() or unit not in SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"bad size '{text}' (e.g. 100M, 2G, 64K or bytes)")
    return int(number) * SIZE_UNITS[unit]


class CliError(Exception):
    """A problem to print (without a traceback) before exiting with `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# --- commands ---------------------------------------------------------------------------------

def cmd_check(args) -> int:
    """Validate a topology file."""
    topology = topofile.load(topofile.locate(args.topology))
    print(f"{args.topology}: ok: {len(topology.computes)} compute nodes, "
          f"{len(topology.networks)} networks, {len(topology.vms)} VMs")
    return 0


def cmd_up(args) -> int:
    """Bring a lab up and wait until every VM reaches its peers."""
    if not (is_loopback(args.api_host) or args.api_token):
        raise CliError(f"--api-host {args.api_host} is not loopback: give the API a token "
                       f"(--api-token or {TOKEN_ENV})", 2)
    lab = Lab(args.topology, api_host=args.api_host, api_port=args.api_port,
              config_api_port=args.config_api_port,
              api_token=args.api_token, allowed_hosts=args.allowed_host,
              lease_seconds=args.lease_seconds, capture_limit=args.capture_limit,
              min_free_disk=args.min_free_disk, on_progress=lambda line: print(line, flush=True))
    topology = lab.topology
    started = time.monotonic()
    print(f"mirrorlab: bringing up '{topology.name}' from {lab.topology_file}", flush=True)
    lab.up()
    interfaces = sum(len(vm.interfaces) for vm in topology.vms)
    print(f"mirrorlab: lab '{topology.name}' is up in {time.monotonic() - started:.1f}s: "
          f"{len(topology.computes)} compute nodes, {len(topology.networks)} networks, "
          f"{len(topology.vms)} VMs, {interfaces} interfaces")
    print(f"      REST API: {lab.api_url}/api/vrouters (OpenAPI: /openapi.json)")
    if args.config_api_port:
        print(f"      Contrail configuration API (vnc_api): "
              f"{api_url_of(args.api_host, args.config_api_port)}/")
    print(f"      web UI: {lab.api_url}/" + (" (open /?token=TOKEN once to log in)" if args.api_token else ""))
    print("      try: mirrorlab status | mirrorlab exec vm1 -- ping -c 3 <peer ip> | mirrorlab down")
    return 0


def cmd_down(args) -> int:
    """Tear the lab down: exactly what it recorded."""
    if not LabState().exists():
        print("mirrorlab: no lab is recorded; nothing to do")
        return 0
    removed = Lab.attach().down()
    if removed:
        print("mirrorlab: removed leftovers of a crashed lab: " + ", ".join(removed))
    print("mirrorlab: lab is down")
    return 0


def cmd_status(args) -> int:
    """Show the lab; exit code 1 if it is recorded but not running, or shows a problem."""
    status = Lab.attach().status()
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
    command = args.command[1:] if args.command[0] == "--" else args.command
    argv = Lab.attach().exec_command(args.vm, *command)
    os.execvp(argv[0], argv)


def cmd_netns(args) -> int:
    """Run a command inside the lab's network namespace (its vRouters and fabric), with
    ovs-vsctl, ovs-ofctl and ovs-appctl pointed at the lab's own Open vSwitch."""
    command = args.command[1:] if args.command and args.command[0] == "--" else args.command
    if not command:
        raise CliError("usage: mirrorlab netns -- COMMAND [ARGS...]", 2)
    argv = Lab.attach().netns_command(*command)
    os.execvp(argv[0], argv)


def cmd_controller(args) -> int:
    """Start, stop or restart the controller alone."""
    controller = Lab.attach().controller
    if args.action in ("stop", "restart"):
        print("mirrorlab: controller stopped" if controller.stop()
              else "mirrorlab: the controller was not running")
    if args.action in ("start", "restart"):
        print(f"mirrorlab: controller started (pid {controller.start()})")
    return 0


def _print(args, payload, text) -> None:
    print(json.dumps(payload, indent=2) if args.json else text(payload))


def _capture_line(c: dict) -> str:
    line = (f"capture {c['id']}: {c['state']:<7} {c['vrouter']}/{c['interface']} ({c['vm']}) "
            f"{c['direction']:<7} -> {c['analyzer']} [{c['analyzer_view']['destination']}]  "
            f"{c['packets']} packets, {c['bytes']} bytes, "
            f"file {c['file_bytes']} of {c['limit_bytes']} bytes, started by {c['origin']}")
    return line + (f"  ({c['stop_reason']})" if c["stop_reason"] else "")


def _capture_details(c: dict) -> str:
    """A capture's line, then what its analyzer receives and the tshark commands that read it."""
    view = c["analyzer_view"]
    lines = [_capture_line(c), f"  copies:     {view['wrapper_name']}, {view['tag']}",
             f"  path:       {view['path_text']}", f"  directions: {view['directions']}",
             f"  the pcap:   mirrorlab capture pcap {c['id']} -o {view['pcap_file']} && "
             f"{view['tshark_pcap']}"]
    if view["tshark_analyzer"]:
        lines.append(f"  on {view['receiver']}: {view['tshark_analyzer']}")
    return "\n".join(lines)


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
    lab = Lab.attach()
    if args.action == "start":
        if not (args.vm or (args.vrouter and args.interface)):
            raise CliError("usage: mirrorlab capture start VROUTER INTERFACE | --vm VM", 2)
        capture = lab.capture(args.vm, vrouter=args.vrouter,
                              interface=None if args.vm else args.interface,
                              direction=args.direction, analyzer=args.analyzer,
                              mirror_to=mirror_to_from_flags(args),
                              limit_bytes=args.limit, origin="cli")
        _print(args, capture.info, _capture_line)
    elif args.action == "stop":
        _print(args, lab.api.delete(f"/api/captures/{args.id}"), lambda c: (
            f"capture {c['id']} was already stopped\n" if c["already_stopped"] else "") + _capture_line(c))
    elif args.action == "show":
        _print(args, lab.api.get(f"/api/captures/{args.id}"), _capture_details)
    elif args.action == "list":
        _print(args, [c.info for c in lab.captures()],
               lambda cs: "\n".join(_capture_line(c) for c in cs) or "no captures")
    elif args.action == "pcap":
        file_format = "pcap" if args.classic else "pcapng"
        saved = lab.api.download(f"/api/captures/{args.id}/pcap?format={file_format}", args.output)
        print(f"wrote {args.output} ({saved.stat().st_size} bytes, {file_format})")
    elif args.action == "packets":
        _print(args, lab.api.get(f"/api/captures/{args.id}/packets"
                                 + query(after=args.after, limit=args.limit, filter=args.filter)),
               _packet_lines)
    return 0


def cmd_analyzer(args) -> int:
    """Analyzer instances through the REST API."""
    lab = Lab.attach()
    line = lambda a: (f"analyzer {a['name']}: vm {a['vm']} on {a['compute']}, network "
                      f"{a['network']} {a['ip']}, captures {a['captures'] or '-'}, "
                      f"{_recorder_text(a['recorder'])}")
    if args.action == "list":
        _print(args, lab.analyzers, lambda items: "\n".join(line(a) for a in items) or "no analyzers")
    elif args.action == "create":
        _print(args, lab.create_analyzer(args.name, network=args.network, compute=args.compute), line)
    elif args.action == "delete":
        _print(args, lab.delete_analyzer(args.name), lambda r: f"analyzer {r['deleted']} deleted")
    elif args.action == "pcap":
        path = lab.analyzer_pcap(args.name, args.output)
        print(f"wrote {args.output} ({path.stat().st_size} bytes, pcap: everything analyzer "
              f"{args.name} received)")
    return 0


def _link_text(link: dict) -> str:
    """A connection or mirror between networks, in a few words: blue <-> red, blue -> red,
    within blue."""
    if link["source"] == link["destination"]:
        return f"within {link['source']}"
    return f"{link['source']} {'<->' if link['both_ways'] else '->'} {link['destination']}"


def _policies_text(answer: dict) -> str:
    """Each policy with its attached networks and numbered rules, then what the applied
    policies connect and mirror."""
    if not answer["policies"]:
        if answer["config_api_port"] is None:
            return "no network policies: this lab does not serve the configuration API (--config-api-port)"
        return (f"no network policies (write them with vnc_api to the configuration API, port "
                f"{answer['config_api_port']})")
    lines = [f"PROBLEM: {answer['problem']}"] if answer.get("problem") else []
    for policy in answer["policies"]:
        attached = ", ".join(f"{a['network']} (sequence {a['sequence']['major']}.{a['sequence']['minor']})"
                             for a in policy["networks"]) or "no network"
        lines.append(f"policy {policy['fq_name']}: attached to {attached}")
        lines += [f"  {rule['number']:>3}  {rule['text']}" for rule in policy["rules"]] or ["       no rules"]
    lines.append("connections: " + (", ".join(_link_text(c) + ("" if c["both_ways"] else " (replies pass)")
                                              for c in answer["connections"]) or "none"))
    lines.append("mirrors:     " + (", ".join(f"{_link_text(m)} to {m['analyzer']}"
                                              for m in answer["mirrors"]) or "none"))
    return "\n".join(lines)


def cmd_policies(args) -> int:
    """Network policies through the REST API."""
    _print(args, Lab.attach().policies(), _policies_text)
    return 0


def cmd_run(args) -> int:
    """Run scenario files, each on a lab of its own: 0 when every expectation held, 1 when one
    failed (or a lab could not be brought up), 2 for a bad file (then nothing runs)."""
    problems, scenarios = [], []
    for path in args.scenarios:
        try:
            scenarios.append(scenario.load(path))
        except scenario.ScenarioError as err:
            problems += err.problems
    for name in {s.name for s in scenarios if [t.name for t in scenarios].count(s.name) > 1}:
        problems.append(f"scenario name '{name}' is given by several files: each run needs its own "
                        f"output folder")
    try:
        for loaded in scenarios:
            runner.check_filters(loaded)
    except scenario.ScenarioError as err:
        problems += err.problems
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    results = [runner.run(loaded, args.output / loaded.name, state_dir=args.state_dir,
                          api_port=args.api_port) for loaded in scenarios]
    if len(results) > 1:
        for result in results:
            print(f"{'PASSED' if result.passed else 'FAILED'}  {result.scenario.name}  "
                  f"{args.output / result.scenario.name / 'report.md'}")
    return 0 if all(result.passed for result in results) else 1


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
    up.add_argument("--config-api-port", type=int, default=8082,
                    help="port of Contrail's configuration API (vnc_api); 0: none")
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

    policies = sub.add_parser("policies", help="network policies (written through the "
                                               "configuration API): rules, attached networks, "
                                               "what they connect and mirror")
    policies.add_argument("--json", action="store_true")
    policies.set_defaults(func=cmd_policies)

    run_scenarios = sub.add_parser("run", help="run scenario files, each on a lab of its own, "
                                               "and write their reports")
    run_scenarios.add_argument("scenarios", nargs="+", metavar="SCENARIO.yaml")
    run_scenarios.add_argument("--output", type=Path, default=Path("mirrorlab-results"),
                               help="where each scenario's report.md, junit.xml, pcaps and logs go "
                                    "(a folder per scenario; default ./mirrorlab-results)")
    run_scenarios.add_argument("--state-dir", type=Path, default=runner.DEFAULT_STATE_DIR,
                               help=f"the scenario labs' state directory (default "
                                    f"{runner.DEFAULT_STATE_DIR}; keep its name short)")
    run_scenarios.add_argument("--api-port", type=int,
                               help="the scenario labs' API port (default: a free one)")
    run_scenarios.set_defaults(func=cmd_run)
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
    except ApiError as err:
        _fail(f"mirrorlab: error: {err.message}")
        return 2
    except UsageError as err:
        _fail(f"mirrorlab: {err}")
        return 2
    except LabError as err:
        _fail(f"mirrorlab: {err}")
        return 1
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
