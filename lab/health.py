"""What of a running lab has died: read from the lab's record, for `mirrorlab status` and the
controller's API (which refuses changes to a lab that is not whole)."""
from __future__ import annotations

from mirrorlab.sandbox import Sandbox
from mirrorlab.supervisor import ENCAPSULATOR
from mirrorlab.state import LabState, process_alive


def lab_problems(state: LabState) -> list[str]:
    """One line for each part of the lab recorded in `state` that is not running (the lab
    process, its Open vSwitch, a VM, the mirror encapsulator); empty when the lab is whole."""
    record = state.read()
    if not record.get("lab_process"):
        return ["the lab is not up"]
    problems = []
    if not process_alive(record["lab_process"]):
        problems.append(f"the lab process (pid {record['lab_process']['pid']}) is not running: "
                        f"the VMs are gone; run `mirrorlab down`, then `mirrorlab up`")
    if record.get("netns") and Sandbox(state).vswitchd_pid() is None:
        problems.append("the lab's Open vSwitch (ovs-vswitchd) is not running")
    for host in record.get("hosts", []):
        if not process_alive(host):
            problems.append(f"vm {host['name']} (pid {host['pid']}) is not running")
    for supervised in record.get("recorders", []):
        if supervised.get("name") == ENCAPSULATOR and supervised.get("state") == "failed":
            problems.append(f"the mirror encapsulator failed ({supervised.get('last_error')}): "
                            f"no copy reaches an analyzer; run `mirrorlab down`, then `mirrorlab up`")
    return problems
