"""The controller process: the os-ken app programming the vRouters, and the REST API.

Started by `mirrorlab up` (or `mirrorlab controller start`) as
`python -m controller.main --topology FILE`; it can be stopped and restarted while the lab
runs, and reconciles every vRouter when they reconnect.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time

import uvicorn
from os_ken.base.app_manager import AppManager  # before os_ken.cfg: os-ken's import order
from os_ken import cfg

from controller.app import VRouterApp
from controller.rest import ApiAccess, create_app, is_loopback, is_wildcard
from controller.service import ControllerService
from controller.store import Store
from lab import topofile
from lab.control import LabControl
from lab.state import LabState


LEASE_CHECK_INTERVAL = 0.5


def _expire_leases(service: ControllerService) -> None:
    log = logging.getLogger("mirrorlab.leases")
    while True:
        time.sleep(LEASE_CHECK_INTERVAL)
        try:
            for capture in service.expire_leases():
                log.info("capture %d stopped: its lease ran out", capture.id)
        except Exception:
            log.exception("lease check failed")


def main(argv: list[str] | None = None) -> int:
    """Run the controller until killed."""
    parser = argparse.ArgumentParser(prog="python -m controller.main")
    parser.add_argument("--topology", required=True)
    parser.add_argument("--openflow-port", type=int, default=6653)
    parser.add_argument("--api-host", default="127.0.0.1",
                        help="address the API listens on; other than loopback needs --api-token")
    parser.add_argument("--api-port", type=int, default=8080)
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a host name or address the API answers to, besides 127.0.0.1, "
                             "localhost, ::1 and --api-host (repeatable)")
    parser.add_argument("--api-token", default=os.environ.get("MIRRORLAB_API_TOKEN") or None,
                        help="bearer token every /api request must present "
                             "(default: $MIRRORLAB_API_TOKEN)")
    parser.add_argument("--lease-seconds", type=float, default=5.0,
                        help="how long a capture opened in the web UI outlives its last renewal")
    args = parser.parse_args(argv)
    if not (is_loopback(args.api_host) or args.api_token):
        parser.error(f"--api-host {args.api_host} is not loopback: give the API a token "
                     f"(--api-token or MIRRORLAB_API_TOKEN)")
    os.umask(0o077)  # the store, pcaps and logs are the lab owner's alone
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    state = LabState()
    state.ensure_dir()
    service = ControllerService(topofile.load(args.topology), Store(state.database_path),
                                LabControl(state.socket_path), state.captures_dir)

    cfg.CONF(args=[], project="os_ken")
    cfg.CONF.set_override("ofp_listen_host", "127.0.0.1")
    cfg.CONF.set_override("ofp_tcp_listen_port", args.openflow_port)
    VRouterApp.service = service
    manager = AppManager.get_instance()
    manager.load_apps(["controller.app"])
    manager.instantiate_apps(**manager.create_contexts())
    # os-ken's OpenFlow listener is started by its `ofp_handler` app on native threads.

    threading.Thread(target=_expire_leases, args=(service,), name="lease-reaper", daemon=True).start()
    bound = [] if is_wildcard(args.api_host) else [args.api_host]  # 0.0.0.0 names no host
    access = ApiAccess.of(args.allowed_host + bound, args.api_token)
    server = uvicorn.Server(uvicorn.Config(create_app(service, args.lease_seconds, access), host=args.api_host,
                                           port=args.api_port, log_level="warning"))
    api_thread = threading.Thread(target=server.run, name="rest-api", daemon=True)
    api_thread.start()
    api_thread.join()
    # The API stopped (it failed to start, or was shut down): end the whole process, whose
    # os-ken threads would otherwise keep it, and the OpenFlow port, alive.
    logging.getLogger("mirrorlab.controller").error("REST API stopped; controller exits")
    logging.shutdown()
    os._exit(1)


if __name__ == "__main__":
    sys.exit(main())
