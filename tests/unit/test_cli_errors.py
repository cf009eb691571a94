"""The CLI's errors are one line each, never a traceback, whatever the names hold: run as
users run it (`python -m mirrorlab.cli`), against a stand-in HTTP server playing the controller's API,
so no lab is needed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[2]


class FakeApi(BaseHTTPRequestHandler):
    """Answers a pcap download with a few bytes and every other request 404 with the API's JSON
    error naming the last path segment, and remembers what it was asked."""

    requests: list[tuple[str, str, str | None]] = []

    def _answer(self):
        FakeApi.requests.append((self.command, self.path, self.headers.get("Authorization")))
        if self.path.split("?")[0].endswith("/pcap"):
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"pcap")
            return
        name = unquote(self.path.rsplit("/", 1)[1])
        body = json.dumps({"error": f"unknown analyzer '{name}'\nsecond line", "field": "name"}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_DELETE = do_POST = _answer

    def log_message(self, *args):
        """Quiet."""


@pytest.fixture
def fake_lab(tmp_path):
    """A state directory whose lab record points at a stand-in API with a token."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "lab.json").write_text(json.dumps({"api_port": server.server_address[1],
                                                   "api_token": "tok"}))
    FakeApi.requests = []
    yield tmp_path
    server.shutdown()


def mirrorlab(state_dir: Path, *args: str, encoding: str = "utf-8") -> subprocess.CompletedProcess:
    """Run `mirrorlab ARGS` with the lab record in `state_dir`."""
    env = {**os.environ, "MIRRORLAB_STATE_DIR": str(state_dir), "PYTHONIOENCODING": encoding}
    env.pop("MIRRORLAB_API_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "mirrorlab.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, encoding="utf-8", errors="replace",
                          timeout=60)


@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])
def test_a_non_ascii_name_reaches_the_api_and_its_error_is_one_line(fake_lab, encoding):
    """The name goes to the API percent-encoded (with the lab's token); the API's refusal is
    printed as one line, even on a terminal that cannot show the name."""
    result = mirrorlab(fake_lab, "analyzer", "delete", "ünïcödé", encoding=encoding)
    assert result.returncode == 2 and result.stdout == ""
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert result.stderr.startswith("mirrorlab: error: unknown analyzer '")
    if encoding == "utf-8":
        assert "'ünïcödé' second line" in result.stderr
    assert FakeApi.requests == [("DELETE", "/api/analyzers/%C3%BCn%C3%AFc%C3%B6d%C3%A9", "Bearer tok")]


def test_a_name_starting_with_a_dash_goes_after_double_dash(fake_lab):
    """Without '--' the error is one line saying to use it; with it the name reaches the API."""
    hinted = mirrorlab(fake_lab, "analyzer", "delete", "-x")
    assert hinted.returncode == 2 and hinted.stderr.count("\n") == 1
    assert "a name that starts with '-' goes after '--' (mirrorlab analyzer delete -- -NAME)" in hinted.stderr
    assert FakeApi.requests == []
    result = mirrorlab(fake_lab, "analyzer", "delete", "--", "-x")
    assert result.returncode == 2 and "unknown analyzer '-x'" in result.stderr
    assert FakeApi.requests[0][1] == "/api/analyzers/-x"


@pytest.mark.parametrize("args, message", [
    (["capture", "stop", "abc"], "mirrorlab capture stop: argument id: invalid int value: 'abc'"),
    (["frobnicate"], "mirrorlab: argument command_name: invalid choice: 'frobnicate'"),
    (["up", "--api-host", "0.0.0.0"], "mirrorlab: --api-host 0.0.0.0 is not loopback: give the API "
                                      "a token (--api-token or MIRRORLAB_API_TOKEN)"),
    (["capture", "list"], "mirrorlab: no lab is running; start one with `mirrorlab up`"),
])
def test_usage_errors_are_one_line(tmp_path, args, message):
    """Usage mistakes and a missing lab: one line, exit code 2 for bad input."""
    result = mirrorlab(tmp_path / "none", *args)
    assert result.returncode in (1, 2) and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(message)


def test_an_unwritable_output_file_is_one_line(fake_lab, tmp_path):
    """A file the CLI cannot write is named in one line, not a traceback."""
    result = mirrorlab(fake_lab, "capture", "pcap", "1", "-o", str(tmp_path / "no" / "dir" / "x.pcap"))
    assert result.returncode == 1 and FakeApi.requests[0][1] == "/api/captures/1/pcap?format=pcapng"
    assert result.stderr.count("\n") == 1 and "No such file or directory" in result.stderr
