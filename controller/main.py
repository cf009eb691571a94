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
from controller.rest import create_app
from controller.service import ControllerService
from controller.store import Store
from lab import topofile
from lab.control import LabControl
from lab.recorder import DEFAULT_LIMIT_BYTES, DEFAULT_MIN_FREE_BYTES
from lab.state import LabState


HOUSEKEEPING_INTERVAL = 0.5


def _housekeeping(service: ControllerService) -> None:
    """Stop captures whose lease ran out, that reached a limit, or whose recorder failed."""
    log = logging.getLogger("mirrorlab.housekeeping")
    while True:
        time.sleep(HOUSEKEEPING_INTERVAL)
        try:
            for capture in service.expire_leases() + service.apply_recorder_reports():
                log.info("capture %d %s: %s", capture.id, capture.state, capture.stop_reason)
        except Exception:
            log.exception("housekeeping failed")


def main(argv: list[str] | None = None) -> int:
    """Run the controller until killed."""
    parser = argparse.ArgumentParser(prog="python -m controller.main")
    parser.add_argument("--topology", required=True)
    parser.add_argument("--openflow-port", type=int, default=6653)
    parser.add_argument("--api-host", default="127.0.0.1")
    parser.add_argument("--api-port", type=int, default=8080)
    parser.add_argument("--lease-seconds", type=float, default=5.0,
                        help="how long a capture opened in the web UI outlives its last renewal")
    parser.add_argument("--capture-limit-bytes", type=int, default=DEFAULT_LIMIT_BYTES,
                        help="the most a capture's pcap file holds, unless its request says")
    parser.add_argument("--min-free-bytes", type=int, default=DEFAULT_MIN_FREE_BYTES,
                        help="free disk space below which the analyzers stop recording")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    state = LabState()
    state.dir.mkdir(parents=True, exist_ok=True)
    service = ControllerService(topofile.load(args.topology), Store(state.database_path),
                                LabControl(state.socket_path), state.captures_dir,
                                args.capture_limit_bytes, args.min_free_bytes)

    cfg.CONF(args=[], project="os_ken")
    cfg.CONF.set_override("ofp_listen_host", "127.0.0.1")
    cfg.CONF.set_override("ofp_tcp_listen_port", args.openflow_port)
    VRouterApp.service = service
    manager = AppManager.get_instance()
    manager.load_apps(["controller.app"])
    manager.instantiate_apps(**manager.create_contexts())
    # os-ken's OpenFlow listener is started by its `ofp_handler` app on native threads.

    threading.Thread(target=_housekeeping, args=(service,), name="housekeeping", daemon=True).start()
    server = uvicorn.Server(uvicorn.Config(create_app(service, args.lease_seconds), host=args.api_host,
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
