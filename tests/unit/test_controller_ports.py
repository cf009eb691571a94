"""The controller process refuses to run without one of its APIs: a port in use ends it at
once, before it starts programming vRouters, with the reason in its log."""
from __future__ import annotations

import logging
import os
import socket

import pytest

from mirrorlab.controller.main import main


@pytest.mark.timeout(30)  # a controller that did not exit would serve forever
def test_a_taken_configuration_api_port_ends_the_controller_at_start(tmp_path, monkeypatch,
                                                                     topologies_dir, caplog):
    monkeypatch.setenv("MIRRORLAB_STATE_DIR", str(tmp_path / "state"))
    umask = os.umask(0o022)
    with socket.socket() as taken, socket.socket() as free:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        free.bind(("127.0.0.1", 0))
        rest_port = free.getsockname()[1]
        free.close()
        try:
            with caplog.at_level(logging.ERROR):
                code = main(["--topology", str(topologies_dir / "default.yaml"),
                             "--openflow-socket", str(tmp_path / "openflow.sock"),
                             "--api-port", str(rest_port),
                             "--config-api-port", str(taken_port)])
        finally:
            os.umask(umask)
    assert code == 1
    assert f"configuration API cannot listen on 127.0.0.1:{taken_port}" in caplog.text
    assert not (tmp_path / "openflow.sock").exists()  # os-ken never started
    with socket.socket() as again:  # the REST API's port was let go
        again.bind(("127.0.0.1", rest_port))
