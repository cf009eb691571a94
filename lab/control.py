"""Client of the lab process's control socket (see `lab.netlab`): how the controller asks
for analyzer VMs to be created and removed, how their recorders are doing, and for the fabric
switch's mirrors of NIC-assisted captures."""
from __future__ import annotations

import json
import socket
from pathlib import Path

from mirrorlab.topology import VM, vm_to_dict

TIMEOUT = 60.0


class LabControlError(RuntimeError):
    """The lab process is not reachable or refused a request."""


class LabControl:
    """Requests to the lab process listening on `socket_path`."""

    def __init__(self, socket_path: Path):
        self.socket_path = socket_path

    def _call(self, request: dict) -> dict:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(TIMEOUT)
                sock.connect(str(self.socket_path))
                sock.sendall((json.dumps(request) + "\n").encode())
                reply = json.loads(sock.makefile().readline() or "{}")
        except (OSError, ValueError) as err:
            raise LabControlError(f"the lab process does not answer on {self.socket_path}: {err}") from None
        if not reply.get("ok"):
            raise LabControlError(reply.get("error", "the lab process refused the request"))
        return reply

    def add_vm(self, vm: VM) -> None:
        """Create and start `vm` in the running lab."""
        self._call({"op": "add_vm", "vm": vm_to_dict(vm)})

    def remove_vm(self, name: str) -> None:
        """Stop and remove the VM called `name`."""
        self._call({"op": "remove_vm", "name": name})

    def nic_mirrors(self) -> list[str]:
        """The names of the fabric switch's NIC-assisted mirrors."""
        return self._call({"op": "nic_mirrors"})["mirrors"]

    def add_nic_mirror(self, name: str, vlan: int, fabric_analyzer: str) -> None:
        """Mirror what the fabric carries in `vlan` to `fabric_analyzer` (mirror `name`)."""
        self._call({"op": "add_nic_mirror", "name": name, "vlan": vlan,
                    "fabric_analyzer": fabric_analyzer})

    def remove_nic_mirror(self, name: str) -> None:
        """Remove the fabric's mirror `name`."""
        self._call({"op": "remove_nic_mirror", "name": name})

    def recorders(self) -> dict[str, dict]:
        """The health of each analyzer VM's recorder, by VM name: {"state": running |
        restarting | failed | stopped, "restarts", "last_error", "pid"}."""
        return self._call({"op": "recorders"})["recorders"]
