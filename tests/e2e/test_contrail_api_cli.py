"""End-to-end: contrail-api-cli, the tool Contrail engineers browse contrail-api with, run as a
subprocess (`python -m mirrorlab.apicli`, its own code on Python 3.11) against the running
lab's configuration API: `ls -l` lists the lab's virtual networks, VM interfaces, service
instances and network policies by uuid and fq_name, and `cat` shows a virtual network, by uuid
and by fq_name, with its subnets and interfaces."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from vnc_api.vnc_api import NetworkPolicy, VncApi

from tests.e2e.conftest import CONFIG_API_PORT

ANALYZER = "cli-analyzer"
POLICY = "cli-policy"


@pytest.fixture(scope="module")
def objects(lab):
    """An analyzer instance (a service instance) and a network policy made for this module,
    removed after it: the lab has neither of its own."""
    created = lab.http("POST", "/api/analyzers", json={"name": ANALYZER, "compute": "compute2"})
    assert created.status_code == 201, created.text
    vnc = VncApi(api_server_host="127.0.0.1", api_server_port=CONFIG_API_PORT)
    project = vnc.project_read(fq_name=list(lab.topology.project_fq_name))
    vnc.network_policy_create(NetworkPolicy(POLICY, parent_obj=project))
    yield vnc
    vnc.network_policy_delete(fq_name=list(lab.topology.project_fq_name) + [POLICY])
    lab.stop_all_captures()
    assert lab.http("DELETE", f"/api/analyzers/{ANALYZER}").status_code == 200


def api_cli(tmp_path, *args: str) -> str:
    """What contrail-api-cli prints for `args` against the lab's configuration API (it must
    succeed and say nothing on stderr: no warning, no traceback)."""
    run = subprocess.run([sys.executable, "-m", "mirrorlab.apicli", "--host", "127.0.0.1",
                          "--port", str(CONFIG_API_PORT), "--config-dir", str(tmp_path), *args],
                         capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stderr) == (0, ""), run.stderr
    return run.stdout


def listed(vnc: VncApi, obj_type: str) -> set[str]:
    """The lines `ls -l <obj_type>` should print, from what vnc_api lists."""
    collection = vnc.resource_list(obj_type)[f"{obj_type}s"]
    return {f"{obj_type}/{o['uuid']}  {':'.join(o['fq_name'])}" for o in collection}


def test_ls_lists_the_labs_networks_interfaces_service_instances_and_policies(lab, objects, tmp_path):
    project = ":".join(lab.topology.project_fq_name)
    expected_names = {
        "virtual-network": {f"{project}:{n.name}" for n in lab.topology.networks},
        "virtual-machine-interface": {f"{project}:{i.name}" for i in lab.topology.interfaces()},
        "service-instance": {f"{project}:{ANALYZER}"},
        "network-policy": {f"{project}:{POLICY}"},
    }
    assert set(expected_names) <= set(api_cli(tmp_path, "ls").split())  # the home page's collections
    for obj_type, names in expected_names.items():
        lines = set(api_cli(tmp_path, "ls", "-l", obj_type).splitlines())
        assert lines == listed(objects, obj_type)
        assert names <= {line.split()[1] for line in lines}, (obj_type, lines)


def test_cat_shows_a_virtual_network_by_uuid_and_by_fq_name(lab, objects, tmp_path):
    fq_name = list(lab.topology.network_fq_name("blue"))
    uuid = objects.fq_name_to_id("virtual-network", fq_name)
    shown = json.loads(api_cli(tmp_path, "cat", f"virtual-network/{uuid}"))
    assert (shown["fq_name"], shown["uuid"], shown["parent_type"]) == (fq_name, uuid, "project")
    subnets = [f"{s['subnet']['ip_prefix']}/{s['subnet']['ip_prefix_len']}"
               for ref in shown["network_ipam_refs"] for s in ref["attr"]["ipam_subnets"]]
    blue = lab.topology.network("blue")
    assert subnets == [str(blue.subnet), str(blue.subnet6)]
    assert {tuple(ref["to"]) for ref in shown["virtual_machine_interface_back_refs"]} == {
        lab.topology.project_fq_name + (i.name,) for i in lab.topology.interfaces()
        if i.network == "blue"}
    assert json.loads(api_cli(tmp_path, "cat", "virtual-network/" + ":".join(fq_name))) == shown
