"""The one client of the controller's REST API (the `Lab` driver and the CLI use it).

Standard library only, so the CLI starts fast and the library needs nothing the controller
does not. Answers are JSON; a refusal raises `ApiError` with the API's own message, a
controller that does not answer raises `ApiUnreachable`.
"""
from __future__ import annotations

import json
import socket
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from mirrorlab.errors import ApiError, ApiUnreachable

TIMEOUT = 120.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now, for a lab's APIs (two labs never share a port)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def segment(value) -> str:
    """`value` as one URL path segment: any character, '/' and non-ASCII too, percent-encoded."""
    return urllib.parse.quote(str(value), safe="")


def query(**params) -> str:
    """`?name=value&...` of the parameters that are not None (empty when none is given)."""
    given = {name: value for name, value in params.items() if value is not None}
    return "?" + urllib.parse.urlencode(given) if given else ""


class JsonClient:
    """JSON requests to an API of the controller at `base_url` (http://host:port), showing it
    the lab's `token` if any, as `_token_headers` says: the REST API (`ApiClient`) and the
    configuration API (`mirrorlab.vncclient.ConfigApiClient`) share this plumbing."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = TIMEOUT):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def get(self, path: str):
        """GET `path` (e.g. "/api/captures?state=active"); its JSON answer."""
        return self.request("GET", path)

    def post(self, path: str, body: dict | None = None):
        """POST `body` as JSON to `path`; the JSON answer."""
        return self.request("POST", path, body if body is not None else {})

    def put(self, path: str, body: dict | None = None):
        """PUT `body` as JSON to `path`; the JSON answer."""
        return self.request("PUT", path, body if body is not None else {})

    def delete(self, path: str, body: dict | None = None):
        """DELETE `path`; the JSON answer."""
        return self.request("DELETE", path, body)

    def request(self, method: str, path: str, body: dict | None = None):
        """`method` `path` with `body` as JSON; the JSON answer (None when the body is empty).
        Fields of `body` that are None are left out: the API takes its defaults for absent
        fields, not for null."""
        with self._open(method, path, body) as response:
            payload = self._receive(path, response.read)
        return json.loads(payload) if payload else None

    def _receive(self, path: str, read):
        """`read()`, with a connection lost or timed out on the way as `ApiUnreachable`."""
        try:
            return read()
        except (TimeoutError, ConnectionError) as err:
            raise ApiUnreachable(f"the controller's API at {self.base_url + path} stopped "
                                 f"answering ({err})") from None

    def _token_headers(self) -> dict[str, str]:
        """The headers that show the API the lab's token (none here; each API has its own)."""
        return {}

    def _open(self, method: str, path: str, body: dict | None):
        url = self.base_url + path
        data = (json.dumps({k: v for k, v in body.items() if v is not None}).encode()
                if body is not None else None)
        headers = {"Content-Type": "application/json", **self._token_headers()}
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as err:
            with err:
                raw = err.read()
            try:
                message = json.loads(raw).get("error") or err.reason
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace").strip() or err.reason
            raise ApiError(err.code, str(message)) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ApiUnreachable(f"the controller's API at {url} does not answer ({reason}); "
                                 f"is it running? (`mirrorlab controller start`)") from None


class ApiClient(JsonClient):
    """Requests to the REST API at `base_url` (http://host:port), with bearer `token` if any."""

    def _token_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def policies(self) -> dict:
        """GET /api/policies: the network policies (each with its rules and attached networks)
        and which networks they connect and mirror."""
        return self.get("/api/policies")

    def download(self, path: str, destination: str | Path) -> Path:
        """Stream the body of GET `path` into the file `destination`; return its path."""
        destination = Path(destination)
        with self._open("GET", path, None) as response, open(destination, "wb") as out:
            self._receive(path, lambda: shutil.copyfileobj(response, out, 1 << 20))
        return destination
