"""The parts of the `Lab` driver that need no running lab: the REST client against a stand-in
server, decoding `ovs-ofctl dump-flows`, resolving topologies, and refusals before anything
starts."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mirrorlab import ApiError, Lab, LabError, UsageError, topofile
from mirrorlab.client import ApiClient
from mirrorlab.driver import InstalledFlow, parse_flows
from mirrorlab.topofile import resolve as resolve_topology
from mirrorlab.errors import ApiUnreachable
from mirrorlab.topology import TopologyError

# Real output of `ovs-ofctl -O OpenFlow13 dump-flows vr-compute1` of the minimal lab with a
# capture (id 3) of vm1's egress.
DUMP = """\
 cookie=0x10000000797a6cc, duration=16.110s, table=0, n_packets=0, n_bytes=0, priority=100,mpls,in_port=1,mpls_label=100 actions=decap(),decap(packet_type(ns=0,type=0)),set_field:0x1->reg0,goto_table:1
 cookie=0x1000000868f255d, duration=16.110s, table=0, n_packets=17, n_bytes=1490, priority=100,in_port=2,dl_src=02:00:0a:01:01:03 actions=set_field:0x1->reg0,set_field:0x2->reg1,goto_table:1
 cookie=0x10000005f1366a3, duration=16.110s, table=0, n_packets=1, n_bytes=90, priority=0 actions=drop
 cookie=0x2000003746ffebe, duration=0.424s, table=3, n_packets=0, n_bytes=0, priority=100,reg1=0x2 actions=clone(load:0->NXM_OF_IN_PORT[],encap(mpls),set_field:524291->mpls_label,output:1000),goto_table:4
 cookie=0x1234, duration=1.2s, table=2, n_packets=4, n_bytes=400, idle_age=3, priority=7,udp actions=drop
 cookie=0x1000000aeab3220, duration=16.102s, table=6, n_packets=34, n_bytes=2980, priority=0 actions=goto_table:7
"""


def test_flows_are_decoded_with_owner_capture_and_counters_in_table_order():
    flows = parse_flows(DUMP)
    assert [(f.table, f.priority) for f in flows] == [(0, 100), (0, 100), (0, 0), (2, 7), (3, 100), (6, 0)]
    vm1, mpls = flows[0], flows[1]  # same table and priority: by match
    assert mpls == InstalledFlow(0, 100, 0x10000000797a6cc, "mpls,in_port=1,mpls_label=100",
                                 "decap(),decap(packet_type(ns=0,type=0)),set_field:0x1->reg0,goto_table:1")
    assert (mpls.owner, mpls.capture) == ("base", None)
    assert (vm1.match, vm1.packets, vm1.bytes) == ("in_port=2,dl_src=02:00:0a:01:01:03", 17, 1490)
    assert (flows[2].match, flows[2].actions) == ("", "drop")
    foreign = flows[3]
    assert (foreign.owner, foreign.capture, foreign.match) == (None, None, "udp")
    mirror = flows[4]
    assert (mirror.owner, mirror.capture, mirror.table) == ("capture", 3, 3)
    assert mirror.actions.endswith("output:1000),goto_table:4")


def test_lines_that_are_not_flows_are_skipped_and_absent_fields_take_their_defaults():
    flows = parse_flows("OFPST_FLOW reply (OF1.3) (xid=0x2):\n table=3, priority=0 actions=drop\n"
                        " cookie=0x5, n_packets=2, n_bytes=84, in_port=1 actions=drop\n")
    assert flows == [InstalledFlow(0, 32768, 5, "in_port=1", "drop"), InstalledFlow(3, 0, 0, "", "drop")]
    assert flows[0].packets == 2


def test_flows_equal_whatever_their_counters_and_the_no_stats_form_decodes_alike():
    with_stats = parse_flows(DUMP)
    no_stats = parse_flows(DUMP.replace("n_packets=17, n_bytes=1490, ", "")
                           .replace(", duration=16.110s", ""))
    assert with_stats == no_stats
    assert no_stats[1].packets == 0


def test_a_shipped_name_a_path_and_a_topology_resolve_to_the_same_lab(tmp_path):
    by_name, path = resolve_topology("minimal")
    assert path == topofile.locate("minimal").resolve()
    copy = tmp_path / "copy.yaml"
    copy.write_text(path.read_text())
    from_file, copy_path = resolve_topology(copy)
    assert (from_file.vms, from_file.networks, copy_path) == (by_name.vms, by_name.networks, copy.resolve())
    assert resolve_topology(by_name) == (by_name, None)
    with pytest.raises(TopologyError, match="not a shipped topology"):
        resolve_topology("nosuchlab")


@pytest.mark.parametrize("name", ["default", "minimal", "large"])
def test_a_topology_written_out_reads_back_equal(name):
    topology = topofile.load(topofile.locate(name))
    assert topofile.parse(topofile.dump(topology), topology.source) == topology


def test_refusals_before_anything_starts(tmp_path):
    with pytest.raises(UsageError, match="not loopback"):
        Lab("minimal", state_dir=tmp_path, api_host="0.0.0.0")
    with pytest.raises(LabError, match="no lab is running"):
        Lab.attach(tmp_path / "nothing")
    lab = Lab("minimal", state_dir=tmp_path / "new", api_port=8999)
    assert (lab.api_url, lab.state_dir, lab.running, lab.down()) == (
        "http://127.0.0.1:8999", tmp_path / "new", False, [])


def test_a_vm_the_lab_does_not_run_is_named_with_the_running_ones(tmp_path):
    (tmp_path / "lab.json").write_text(json.dumps({
        "api_port": 1, "hosts": [{"name": "vm1", "pid": 1, "start": -1}]}))
    lab = Lab.attach(tmp_path)
    with pytest.raises(UsageError, match=r"unknown vm 'vm9' \(running: vm1\)"):
        lab.exec("vm9", "true")
    with pytest.raises(LabError, match="vm 'vm1' is not running"):
        lab.exec_command("vm1", "true")


class StandIn(BaseHTTPRequestHandler):
    """Plays the controller's API: /ok answers with what it was sent, /pcap with bytes,
    /refused with the API's JSON error, /broken with a non-JSON error page."""

    seen: list = []

    def _answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        StandIn.seen.append((self.command, self.path, self.headers.get("Authorization"), body))
        status, payload = {
            "/ok": (200, json.dumps({"got": json.loads(body or b"null")}).encode()),
            "/pcap": (200, b"\x0a\x0d\x0d\x0a"),
            "/refused": (409, json.dumps({"error": "analyzer 'a' has captures", "field": "name"}).encode()),
            "/broken": (502, b"Bad Gateway"),
        }[self.path]
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args):
        """Quiet."""


@pytest.fixture
def stand_in():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    StandIn.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_client_sends_json_without_nulls_and_the_token(stand_in, tmp_path):
    client = ApiClient(stand_in, token="tok")
    assert client.post("/ok", {"vm": "vm1", "analyzer": None}) == {"got": {"vm": "vm1"}}
    assert client.put("/ok") == {"got": {}}
    assert client.download("/pcap", tmp_path / "x.pcapng").read_bytes() == b"\x0a\x0d\x0d\x0a"
    assert [(m, auth) for m, _, auth, _ in StandIn.seen] == [("POST", "Bearer tok"), ("PUT", "Bearer tok"),
                                                             ("GET", "Bearer tok")]


def test_refusals_carry_the_status_and_the_apis_message(stand_in):
    client = ApiClient(stand_in)
    with pytest.raises(ApiError) as refused:
        client.delete("/refused")
    assert (refused.value.status, refused.value.message) == (409, "analyzer 'a' has captures")
    with pytest.raises(ApiError) as broken:
        client.get("/broken")
    assert (broken.value.status, broken.value.message) == (502, "Bad Gateway")
    assert StandIn.seen[0][2] is None  # no token, no header


def test_a_controller_that_does_not_answer_is_named_with_its_address():
    with pytest.raises(ApiUnreachable, match=r"the controller's API at http://127.0.0.1:9/api/x does not answer"):
        ApiClient("http://127.0.0.1:9").get("/api/x")
    assert issubclass(ApiUnreachable, LabError) and issubclass(ApiError, LabError)
