"""The one client of the lab's Contrail configuration API (what `contrail-api` serves on 8082).

It sends what Contrail's Python client `vnc_api` sends for the same calls, so the lab sees a
Contrail client: objects wrapped in their type (`{"network-policy": {...}}`), created by a POST
to their collection, updated by a PUT of the changed fields with `fq_name` and `uuid`, found by
`POST /fqname-to-id`, and the lab's token as `X-Auth-Token`. A network is attached to a policy
as `virtual_network_update` does after `add_network_policy`: the network's whole
`network_policy_refs`, each with its `attr.sequence`, in one PUT. Standard library only (the
runtime does not need `contrail-api-client`, which the tests use as the reference client).
Refusals raise `ApiError` with contrail-api's plain-text message.
"""
from __future__ import annotations

from mirrorlab.client import JsonClient, segment
from mirrorlab.errors import ApiError

POLICY = "network-policy"
NETWORK = "virtual-network"


class ConfigApiClient(JsonClient):
    """Requests to the configuration API at `base_url` (http://host:port), with the lab's
    `token` as X-Auth-Token if any."""

    def _token_headers(self) -> dict[str, str]:
        return {"X-Auth-Token": self.token} if self.token else {}

    def fq_name_to_id(self, obj_type: str, fq_name: list[str]) -> str | None:
        """The uuid of the `obj_type` object named `fq_name`, None when there is none."""
        try:
            return self.post("/fqname-to-id", {"type": obj_type, "fq_name": fq_name})["uuid"]
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def read(self, obj_type: str, obj_uuid: str) -> dict:
        """The object of `obj_type` with `obj_uuid`, as the API renders it."""
        return self.get(f"/{obj_type}/{segment(obj_uuid)}")[obj_type]

    def write_policy(self, fq_name: list[str], rules: list[dict]) -> str:
        """Create network policy `fq_name` with `rules` (Contrail's policy_rule objects), or
        give the existing one these rules; its uuid."""
        entries = {"network_policy_entries": {"policy_rule": rules}}
        policy_uuid = self.fq_name_to_id(POLICY, fq_name)
        if policy_uuid is None:
            body = {"fq_name": fq_name, "parent_type": "project", **entries}
            return self.post(f"/{POLICY}s", {POLICY: body})[POLICY]["uuid"]
        self.put(f"/{POLICY}/{segment(policy_uuid)}",
                 {POLICY: {"fq_name": fq_name, "uuid": policy_uuid, **entries}})
        return policy_uuid

    def policy_rules(self, fq_name: list[str]) -> list[dict]:
        """The rules of network policy `fq_name`, in order."""
        policy = self.read(POLICY, self._uuid(POLICY, fq_name))
        return (policy.get("network_policy_entries") or {}).get("policy_rule") or []

    def attach_policy(self, network: list[str], policy: list[str], sequence: tuple[int, int]) -> None:
        """Attach network policy `policy` to virtual network `network` with `sequence`
        (major, minor), keeping its other policies (re-attributing it if attached already)."""
        refs = [ref for ref in self._policy_refs(network) if ref["to"] != policy]
        refs.append({"to": policy, "attr": {"sequence": {"major": sequence[0], "minor": sequence[1]},
                                            "timer": None}})
        self._put_policy_refs(network, refs)

    def detach_policy(self, network: list[str], policy: list[str]) -> None:
        """Detach network policy `policy` from virtual network `network`."""
        self._put_policy_refs(network, [ref for ref in self._policy_refs(network)
                                        if ref["to"] != policy])

    def _policy_refs(self, network: list[str]) -> list[dict]:
        current = self.read(NETWORK, self._uuid(NETWORK, network)).get("network_policy_refs") or []
        return [{"to": ref["to"], "attr": ref.get("attr")} for ref in current]

    def _put_policy_refs(self, network: list[str], refs: list[dict]) -> None:
        network_uuid = self._uuid(NETWORK, network)
        self.put(f"/{NETWORK}/{segment(network_uuid)}",
                 {NETWORK: {"fq_name": network, "uuid": network_uuid, "network_policy_refs": refs}})

    def _uuid(self, obj_type: str, fq_name: list[str]) -> str:
        found = self.fq_name_to_id(obj_type, fq_name)
        if found is None:
            raise ApiError(404, f"no {obj_type} {':'.join(fq_name)}")
        return found
