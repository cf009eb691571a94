"""End-to-end: a capture's destination (Contrail's mirror_to) through the CLI and REST API of
the real lab."""
from __future__ import annotations

import json

DEFAULT_ANALYZER = "interface-packet-capture"


def test_cli_destination_flags_reach_the_api_and_errors_name_the_field(clean_lab, target):
    """`capture start` without destination flags goes to the default analyzer the default way
    (dynamic, Juniper header, UDP 8099), shown whole by `capture show --json` and in words by
    `capture show`; a bad flag value is refused with the field named and starts nothing."""
    lab = clean_lab
    started = json.loads(lab.cli("capture", "start", "--vm", target.vm, "--json").stdout)
    analyzer = next(a for a in lab.api("GET", "/api/analyzers").json()
                    if a["name"] == DEFAULT_ANALYZER)
    assert started["mirror_to"] == {
        "analyzer_name": DEFAULT_ANALYZER, "analyzer_ip_address": analyzer["ip"],
        "analyzer_mac_address": analyzer["mac"], "routing_instance": analyzer["network"],
        "udp_port": 8099, "juniper_header": True, "nh_mode": "dynamic", "static_nh_header": None,
        "nic_assisted_mirroring": False, "nic_assisted_mirroring_vlan": None}
    shown = json.loads(lab.cli("capture", "show", str(started["id"]), "--json").stdout)
    assert shown["mirror_to"] == started["mirror_to"]
    assert f"[{analyzer['ip']} udp 8099, Juniper header]" in lab.cli(
        "capture", "show", str(started["id"])).stdout

    refused = lab.cli("capture", "start", "--vm", target.vm, "--nh-mode", "static",
                      "--vtep-ip", "192.168.100.200", "--vtep-mac", "02:fa:00:00:00:c8",
                      "--vni", "16777216", check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "mirror_to.static_nh_header.vni" in refused.stderr
    assert [c["id"] for c in lab.api("GET", "/api/captures", params={"state": "active"}).json()] \
        == [started["id"]]
