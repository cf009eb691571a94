"""The controller process: the os-ken app programming the vRouters, and the REST API.

Started by `mirrorlab up` (or `mirrorlab controller start`) as
`python -m mirrorlab.controller.main --topology FILE --openflow-socket PATH`; it can be stopped and
restarted while the lab runs, and reconciles every vRouter when they reconnect. The vRouters,
in the lab's own network namespace, call it on a Unix socket only root can open, so no other
user of the machine can pose as a vRouter.
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn
from os_ken.base.app_manager import AppManager  # before os_ken.cfg: os-ken's import order
from os_ken import cfg
from os_ken.controller import controller as os_ken_controller

from mirrorlab.controller.errors import LabUnavailable
from mirrorlab.controller.app import VRouterApp
from mirrorlab.controller.rest import ApiAccess, create_app, is_loopback, is_wildcard
from mirrorlab.controller.service import ControllerService
from mirrorlab.controller.store import Store
from mirrorlab.controller.vncserver import DEFAULT_CONFIG_API_PORT, ConfigApi, create_config_app
from mirrorlab import topofile
from mirrorlab.control import LabControl
from mirrorlab.health import RecentProblems
from mirrorlab.recorder import DEFAULT_LIMIT_BYTES, DEFAULT_MIN_FREE_BYTES
from mirrorlab.sandbox import RevalidationWatch, Sandbox
from mirrorlab.state import LabState


HOUSEKEEPING_INTERVAL = 0.5
# A vRouter that answers no echo for this long is taken as gone (and reconciled when it is back).
ECHO_INTERVAL = 0.5
MAX_UNREPLIED_ECHOS = 2


def _housekeeping(service: ControllerService) -> None:
    """Stop captures whose lease ran out, that reached a limit, or whose recorder failed; make
    the fabric's NIC mirrors those of the active captures when that is not known to be so (a
    restarted controller, a lab process that did not answer)."""
    log = logging.getLogger("mirrorlab.housekeeping")
    while True:
        time.sleep(HOUSEKEEPING_INTERVAL)
        if service.nic_mirrors_pending:
            try:
                service.reconcile_nic_mirrors()
            except LabUnavailable as err:
                log.warning("%s", err.message)
        try:
            for capture in service.expire_leases() + service.apply_recorder_reports():
                log.info("capture %d %s: %s", capture.id, capture.state, capture.stop_reason)
        except Exception:
            log.exception("housekeeping failed")


def _serve(server: uvicorn.Server, sock: socket.socket, name: str, stopped: threading.Event) -> None:
    """Serve one API on its bound socket; when it stops, however (uvicorn ends a failed
    server with SystemExit), say so and set `stopped`, which ends the controller."""
    try:
        server.run(sockets=[sock])
    finally:
        logging.getLogger("mirrorlab.controller").error("%s stopped; controller exits", name)
        stopped.set()


class _UnixConnection:
    """A vRouter's Unix-socket connection as os-ken's `Datapath` uses it: os-ken listens on
    Unix sockets but sets TCP_NODELAY on every connection, which only TCP sockets accept."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def setsockopt(self, level, option, value):
        if level != socket.IPPROTO_TCP:
            self._sock.setsockopt(level, option, value)

    def __getattr__(self, name):
        return getattr(self._sock, name)


def _accept_unix_connections() -> None:
    accept = os_ken_controller.datapath_connection_factory
    os_ken_controller.datapath_connection_factory = (
        lambda sock, address: accept(_UnixConnection(sock), address))


def main(argv: list[str] | None = None) -> int:
    """Run the controller until killed."""
    parser = argparse.ArgumentParser(prog="python -m mirrorlab.controller.main")
    parser.add_argument("--topology", required=True)
    parser.add_argument("--openflow-socket", required=True,
                        help="Unix socket the vRouters connect to")
    parser.add_argument("--api-host", default="127.0.0.1",
                        help="address the API listens on; other than loopback needs --api-token")
    parser.add_argument("--api-port", type=int, default=8080)
    parser.add_argument("--config-api-port", type=int, default=DEFAULT_CONFIG_API_PORT,
                        help="port of Contrail's configuration API (vnc_api), on --api-host; "
                             "0: do not serve it")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a host name or address the API answers to, besides 127.0.0.1, "
                             "localhost, ::1 and --api-host (repeatable)")
    parser.add_argument("--api-token", default=os.environ.get("MIRRORLAB_API_TOKEN") or None,
                        help="bearer token every /api request must present "
                             "(default: $MIRRORLAB_API_TOKEN)")
    parser.add_argument("--lease-seconds", type=float, default=5.0,
                        help="how long a capture opened in the web UI outlives its last renewal")
    parser.add_argument("--capture-limit-bytes", type=int, default=DEFAULT_LIMIT_BYTES,
                        help="the most a capture's pcap file holds, unless its request says")
    parser.add_argument("--min-free-bytes", type=int, default=DEFAULT_MIN_FREE_BYTES,
                        help="free disk space below which the analyzers stop recording")
    args = parser.parse_args(argv)
    if not (is_loopback(args.api_host) or args.api_token):
        parser.error(f"--api-host {args.api_host} is not loopback: give the API a token "
                     f"(--api-token or MIRRORLAB_API_TOKEN)")
    os.umask(0o077)  # the store, pcaps and logs are the lab owner's alone
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    state = LabState()
    state.ensure_dir()
    service = ControllerService(topofile.load(args.topology), Store(state.database_path),
                                LabControl(state.socket_path), state.captures_dir,
                                args.capture_limit_bytes, args.min_free_bytes,
                                lab_health=RecentProblems(state))

    bound = [] if is_wildcard(args.api_host) else [args.api_host]  # 0.0.0.0 names no host
    access = ApiAccess.of(args.allowed_host + bound, args.api_token)
    config_api = ConfigApi(service) if args.config_api_port else None
    apps = [("REST API", args.api_port,
             create_app(service, args.lease_seconds, access,
                        policies=config_api.policy_view if config_api else None,
                        config_api_port=args.config_api_port or None))]
    if config_api is not None:
        apps.append(("configuration API", args.config_api_port,
                     create_config_app(config_api, access)))
    # Both ports are taken before anything else starts, so a port in use ends the controller
    # at once, with the reason in its log, rather than leaving it up without that API.
    servers = []
    for name, port, app in apps:
        config = uvicorn.Config(app, host=args.api_host, port=port, log_level="warning")
        try:
            servers.append((name, uvicorn.Server(config), config.bind_socket()))
        except SystemExit:  # uvicorn logged why the port cannot be bound
            logging.getLogger("mirrorlab.controller").error(
                "%s cannot listen on %s:%d; controller exits", name, args.api_host, port)
            for _, _, sock in servers:
                sock.close()
            return 1

    os.umask(0o077)  # the OpenFlow socket: root only
    Path(args.openflow_socket).unlink(missing_ok=True)  # left by a killed controller
    cfg.CONF(args=[], project="os_ken")
    # A path makes os-ken listen on a Unix socket instead of TCP.
    cfg.CONF.set_override("ofp_listen_host", args.openflow_socket)
    cfg.CONF.set_override("echo_request_interval", ECHO_INTERVAL)
    cfg.CONF.set_override("maximum_unreplied_echo_requests", MAX_UNREPLIED_ECHOS)
    _accept_unix_connections()
    VRouterApp.service = service
    VRouterApp.trusted_switch_pid = Sandbox(state).vswitchd_pid
    VRouterApp.revalidation_round = RevalidationWatch(Sandbox(state)).next_round_end
    manager = AppManager.get_instance()
    manager.load_apps(["mirrorlab.controller.app"])
    manager.instantiate_apps(**manager.create_contexts())
    # os-ken's OpenFlow listener is started by its `ofp_handler` app on native threads.

    threading.Thread(target=_housekeeping, args=(service,), name="housekeeping", daemon=True).start()
    stopped = threading.Event()
    for name, server, sock in servers:
        threading.Thread(target=_serve, args=(server, sock, name, stopped), name=name,
                         daemon=True).start()
    stopped.wait()
    # An API stopped (it was shut down, or failed): end the whole process, whose os-ken
    # threads would otherwise keep it, and the OpenFlow port, alive.
    logging.shutdown()
    os._exit(1)


if __name__ == "__main__":
    sys.exit(main())
