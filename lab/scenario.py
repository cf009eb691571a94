"""Scenario files: YAML in, a validated, frozen `Scenario` out, or every problem with file:line.

A scenario names a topology (shipped, a file, or inline), then lists steps: captures,
traffic, faults, waits, network policies (written through the configuration API), marks in what
an analyzer received, expectations and evidence to show. Validation is pure (no lab, no
I/O beyond reading the files named) and happens once, here; `mirrorlab.runner` runs the result.

    name: agent-restart
    title: Mirroring after an agent restart
    contrail: "Mirroring that did not stop, stale mirror state after agent restart"
    topology: minimal
    steps:
      - capture: {as: mon, vm: vm1}
      - ping: {as: before, from: vm1, to: vm2, count: 3}
      - fault: controller-kill
      - expect: {capture: mon, filter: icmp, packets: 6}
"""
from __future__ import annotations

import ast
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from mirrorlab import topofile
from mirrorlab.topofile import Node
from mirrorlab.topology import Topology, TopologyError

SCENARIO_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
STEP_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")
DEFAULT_ANALYZER = "interface-packet-capture"
DIRECTIONS = ("ingress", "egress", "both")
CAPTURE_STATES = ("starting", "active", "stopped", "failed")
TOP_KEYS = {"name", "title", "contrail", "description", "question", "answer", "topology", "steps"}

# Faults: the value a fault step names them by, and what it acts on.
FAULTS_ON_INTERFACE = ("interface-down", "interface-up")
FAULTS_ON_COMPUTE = ("uplink-down", "uplink-up", "vrouter-disconnect", "vrouter-reconnect")
FAULTS_ON_LINK = ("impair", "clear")
FAULTS_ON_CONTROLLER = ("controller-kill", "controller-restart", "controller-stop", "controller-start")
FAULTS_ON_ANALYZER = ("recorder-kill",)
FAULTS = FAULTS_ON_INTERFACE + FAULTS_ON_COMPUTE + FAULTS_ON_LINK + FAULTS_ON_CONTROLLER + FAULTS_ON_ANALYZER
RATE = re.compile(r"^[1-9][0-9]*(bit|kbit|mbit|gbit)$")
# Network policy rules, in the compact form (see PolicyRule): the values Contrail takes.
POLICY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
RULE_DIRECTIONS = ("<>", ">")
RULE_PROTOCOLS = ("any", "icmp", "tcp", "udp", "icmp6")
RULE_ACTIONS = ("pass", "deny")
PORT_RANGE = re.compile(r"^([0-9]{1,5})(?:-([0-9]{1,5}))?$")


class ScenarioError(ValueError):
    """A scenario file that cannot be run. `problems` holds one `file:line: key: message` each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


# --- the model ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bound:
    """A number that must hold: exactly `minimum` when both ends are equal, else a range
    (either end may be open)."""

    minimum: float | None
    maximum: float | None

    def holds(self, value: float) -> bool:
        """Whether `value` is within the bound."""
        return ((self.minimum is None or value >= self.minimum)
                and (self.maximum is None or value <= self.maximum))

    def __str__(self) -> str:
        if self.minimum == self.maximum:
            return f"exactly {_number(self.minimum)}"
        if self.maximum is None:
            return f"at least {_number(self.minimum)}"
        if self.minimum is None:
            return f"at most {_number(self.maximum)}"
        return f"from {_number(self.minimum)} to {_number(self.maximum)}"


def _plain(value):
    """A YAML value as its file wrote it, for messages: without the line-numbered nodes."""
    if isinstance(value, Node):
        return _plain(value.value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class Endpoint:
    """A VM interface as traffic names it: `vm`'s interface `index`."""

    vm: str
    index: int = 0


@dataclass(frozen=True)
class StartCapture:
    """Start a capture, known to later steps as `name`. On a VM interface (`vm`, `index`),
    or on the interface of analyzer `of_analyzer`'s own VM (monitoring the analyzer port)."""

    line: int
    name: str
    vm: str | None
    index: int
    of_analyzer: str | None
    direction: str
    analyzer: str | None
    limit_bytes: int | None


@dataclass(frozen=True)
class StopCapture:
    """Stop capture `capture`."""

    line: int
    capture: str


@dataclass(frozen=True)
class CreateAnalyzer:
    """Launch analyzer `name` (on `compute`, in `network`; the lab's defaults when None)."""

    line: int
    name: str
    network: str | None
    compute: str | None


@dataclass(frozen=True)
class Ping:
    """`count` pings from `source` to `target` (IPv6 with `ipv6`), `size` bytes of payload,
    `interval` seconds apart; in the background when `background` (later steps run meanwhile).
    An analyzer's own VM pings or is pinged instead with `source_analyzer`, `target_analyzer`
    (its address is known once it runs)."""

    line: int
    name: str | None
    source: Endpoint | None
    target: str | None  # an address, or a VM name
    count: int
    size: int
    interval: float
    ipv6: bool
    background: bool
    source_analyzer: str | None = None
    target_analyzer: str | None = None

    @property
    def sender(self) -> str:
        """Who pings, as reports name it: a VM, or "analyzer NAME"."""
        return self.source.vm if self.source else f"analyzer {self.source_analyzer}"

    @property
    def receiver(self) -> str:
        """Who is pinged, as reports name it: a VM or an address, or "analyzer NAME"."""
        return self.target if self.target else f"analyzer {self.target_analyzer}"


@dataclass(frozen=True)
class Iperf3:
    """iperf3 from `source` to `target` for `seconds` (UDP at `bitrate` with `udp`)."""

    line: int
    name: str | None
    source: Endpoint
    target: str
    seconds: float
    udp: bool
    bitrate: str | None


@dataclass(frozen=True)
class Probe:
    """`count` UDP datagrams or TCP connections from `source` to `target`:`port`; the target
    VM listens and counts what arrives."""

    line: int
    name: str | None
    source: Endpoint
    target: str
    protocol: str
    port: int
    count: int


@dataclass(frozen=True)
class Craft:
    """Frames built by the scapy expression `packet` (with {vm.ip}-style placeholders filled
    in), sent `count` times from `source`'s interface."""

    line: int
    source: Endpoint
    packet: str
    count: int


@dataclass(frozen=True)
class Fault:
    """Fault `action` (one of FAULTS) on `target`: a VM interface, a compute node, an analyzer
    or nothing (the controller). `loss` (percent) and `rate` apply to `impair`."""

    line: int
    action: str
    target: str | None
    index: int
    loss: int | None
    rate: str | None


@dataclass(frozen=True)
class Wait:
    """Wait `seconds`; or until capture `capture` holds `packets` frames (at most `seconds`);
    or until vRouter `vrouter` is connected or not (`connected`, at most `seconds`)."""

    line: int
    seconds: float
    capture: str | None = None
    packets: int | None = None
    vrouter: str | None = None
    connected: bool | None = None


@dataclass(frozen=True)
class ExpectPackets:
    """Capture `capture`'s recorded frames that match tshark display filter `filter` (all when
    None) number `count`, within `within` seconds."""

    line: int
    capture: str
    filter: str | None
    count: Bound
    within: float


@dataclass(frozen=True)
class ExpectLoss:
    """Traffic step `traffic`'s loss, in percent, is within `loss`."""

    line: int
    traffic: str
    loss: Bound


@dataclass(frozen=True)
class ExpectState:
    """Capture `capture` reaches state `state` within `within` seconds."""

    line: int
    capture: str
    state: str
    within: float


@dataclass(frozen=True)
class ExpectFlows:
    """vRouter `vrouter` holds `count` flows owned by capture `capture` (by flow cookie)."""

    line: int
    vrouter: str
    capture: str
    count: Bound
    within: float


@dataclass(frozen=True)
class Show:
    """Evidence for the reader: capture `capture`'s frames matching `filter` (tshark's lines,
    with each frame's direction as the monitored VM saw it), under `title`."""

    line: int
    capture: str
    filter: str | None
    title: str


@dataclass(frozen=True)
class PolicyRule:
    """One rule of a network policy, in the compact form that maps 1:1 to Contrail's
    PolicyRuleType: `direction` "<>" or ">", `protocol` (any, icmp, tcp, udp, icmp6 or a
    number), `sources` and `destinations` (a network of the topology, "any", "local" or a CIDR
    each), port ranges (inclusive; `()` for any), `action` pass or deny, and the analyzer the
    rule mirrors to (`mirror_to`, None for none)."""

    direction: str
    protocol: str
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    source_ports: tuple[tuple[int, int], ...]
    destination_ports: tuple[tuple[int, int], ...]
    action: str
    mirror_to: str | None

    def policy_rule(self, topology: Topology) -> dict:
        """The rule as Contrail's policy_rule JSON (what vnc_api's PolicyRuleType sends) for
        a lab of `topology`: networks and analyzers by fq-name."""
        def addresses(names: tuple[str, ...]) -> list[dict]:
            return [_address(topology, name) for name in names]

        def ports(ranges: tuple[tuple[int, int], ...]) -> list[dict]:
            return [{"start_port": start, "end_port": end} for start, end in ranges or ((-1, -1),)]

        actions = {"simple_action": self.action}
        if self.mirror_to is not None:
            actions["mirror_to"] = {"analyzer_name": ":".join(
                (*topology.project_fq_name, self.mirror_to))}
        return {"direction": self.direction, "protocol": self.protocol,
                "src_addresses": addresses(self.sources), "dst_addresses": addresses(self.destinations),
                "src_ports": ports(self.source_ports), "dst_ports": ports(self.destination_ports),
                "action_list": actions}


def _address(topology: Topology, name: str) -> dict:
    """An AddressType: a CIDR as a subnet, a network of the topology by fq-name, else as
    given (any, local)."""
    if "/" in name:
        cidr = ipaddress.ip_network(name, strict=False)
        return {"subnet": {"ip_prefix": str(cidr.network_address), "ip_prefix_len": cidr.prefixlen}}
    if topology.has("network", name):
        return {"virtual_network": ":".join(topology.network_fq_name(name))}
    return {"virtual_network": name}


@dataclass(frozen=True)
class Attachment:
    """A network a policy is attached to, with the policy's `sequence` (major, minor) there."""

    network: str
    sequence: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class WritePolicy:
    """Write network policy `name` through the configuration API, as a Contrail client would,
    in this order: its `rules` (creating it, or replacing its rules; None keeps them), its
    rules reordered (`order`: the current rules' positions from 1, in their new order), then
    attached to `attach` in turn and detached from `detach`."""

    line: int
    name: str
    rules: tuple[PolicyRule, ...] | None
    order: tuple[int, ...] | None
    attach: tuple[Attachment, ...]
    detach: tuple[str, ...]


@dataclass(frozen=True)
class Mark:
    """Note how many frames analyzer `analyzer`'s interface has received so far (its raw
    capture), once it has received nothing new for a moment, as point `name` of the scenario."""

    line: int
    name: str
    analyzer: str


@dataclass(frozen=True)
class ExpectAnalyzer:
    """The frames analyzer `analyzer`'s interface received (its raw capture, headers and all,
    decoded with the Juniper header on UDP 8099) after mark `since` (from the start when None)
    and up to mark `until` (up to now when None) that match display filter `filter` number
    `count`, within `within` seconds. Policy copies belong to no capture: this is where they
    are counted."""

    line: int
    analyzer: str
    filter: str | None
    count: Bound
    since: str | None
    until: str | None
    within: float


@dataclass(frozen=True)
class ShowReceived:
    """Evidence for the reader: the frames analyzer `analyzer`'s interface received between
    marks `since` and `until` that match `filter`, each with the vRouter address it came from,
    its UDP source port and the Juniper header's VNs, under `title`."""

    line: int
    analyzer: str
    filter: str | None
    since: str | None
    until: str | None
    title: str


Step = Union[StartCapture, StopCapture, CreateAnalyzer, Ping, Iperf3, Probe, Craft, Fault, Wait,
             WritePolicy, Mark, ExpectPackets, ExpectLoss, ExpectState, ExpectFlows, ExpectAnalyzer,
             Show, ShowReceived]
TRAFFIC = (Ping, Iperf3, Probe)
EXPECTATIONS = (ExpectPackets, ExpectLoss, ExpectState, ExpectFlows, ExpectAnalyzer)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario: its names, the field issue it mirrors (`contrail`), the question
    it asks (training exercises), its topology and its steps."""

    name: str
    source: str
    title: str
    contrail: str | None
    description: str | None
    question: str | None
    answer: str | None
    topology: Topology
    topology_ref: str  # how the file named its topology, for the report
    steps: tuple[Step, ...]

    @property
    def expectations(self) -> tuple[Step, ...]:
        """The steps that decide whether the scenario passes."""
        return tuple(step for step in self.steps if isinstance(step, EXPECTATIONS))


# --- loading --------------------------------------------------------------------------------

def load(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raise `ScenarioError` listing every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ScenarioError([f"{path}: cannot read: {err.strerror}"]) from None
    return parse(text, str(path), base=path.parent)


def parse(text: str, source: str = "<string>", base: Path | None = None) -> Scenario:
    """Validate scenario YAML `text`; `source` names it in messages, `base` is the folder a
    topology file is looked for in."""
    try:
        root = topofile.compose(text, source)
    except TopologyError as err:
        raise ScenarioError(err.problems) from None
    if root is None or not isinstance(root.value, dict):
        raise ScenarioError([f"{source}:1: the file must be a mapping with keys "
                             f"{', '.join(sorted(TOP_KEYS))}"])
    return _Validator(source, base or Path(".")).scenario(root)


class _Validator:
    """Collects every problem of one scenario file while building its model."""

    def __init__(self, source: str, base: Path):
        self.source = source
        self.base = base
        self.problems: list[str] = []
        self.topology: Topology | None = None
        self.captures: dict[str, int] = {}    # name -> line of the step that starts it
        self.traffic: dict[str, int] = {}
        self.analyzers = {DEFAULT_ANALYZER}
        self.policies: dict[str, int] = {}    # name -> how many rules it has
        self.attached: dict[str, set[str]] = {}   # policy name -> networks it is attached to
        self.marks: dict[str, int] = {}
        self.mark_analyzers: dict[str, str] = {}  # mark -> the analyzer it counts

    def add(self, node: Node, where: str, message: str) -> None:
        """Record a problem at `node`'s line."""
        self.problems.append(f"{self.source}:{node.line}: {where}: {message}")

    def scenario(self, root: Node) -> Scenario:
        """The whole file."""
        self.keys(root, TOP_KEYS, "", required={"name", "topology", "steps"})
        name = self.text(root, "name", "", pattern=SCENARIO_NAME,
                         rule="a lowercase letter, then up to 39 letters, digits or '-'")
        texts = {key: self.text(root, key, "") for key in
                 ("title", "contrail", "description", "question", "answer")}
        topology_ref = self.topology_of(root)
        steps: list[Step] = []
        steps_node = root.value.get("steps")
        if steps_node is not None:
            if not isinstance(steps_node.value, list) or not steps_node.value:
                self.add(steps_node, "steps", "must be a non-empty list")
            else:
                for position, node in enumerate(steps_node.value):
                    step = self.step(node, f"steps[{position}]")
                    if step is not None:
                        steps.append(step)
        if steps_node is not None and isinstance(steps_node.value, list) and steps_node.value \
                and not any(isinstance(step, EXPECTATIONS) for step in steps) and not self.problems:
            self.add(steps_node, "steps", "no expectation: a scenario must check something "
                                          "(expect: ...)")
        if (texts["question"] is None) != (texts["answer"] is None):
            self.add(root, "question", "a training exercise gives both 'question' and 'answer'")
        if self.problems:
            raise ScenarioError(self.problems)
        return Scenario(name=name, source=self.source, title=texts["title"] or name,
                        contrail=texts["contrail"], description=texts["description"],
                        question=texts["question"], answer=texts["answer"],
                        topology=self.topology, topology_ref=topology_ref, steps=tuple(steps))

    # --- generic checks

    def keys(self, node: Node, allowed: set[str], where: str, required: set[str] = frozenset()) -> bool:
        """Whether `node` is a mapping; every unknown or missing key is a problem."""
        if not isinstance(node.value, dict):
            self.add(node, where or "file", "must be a mapping")
            return False
        for key, value in node.value.items():
            if key not in allowed:
                self.add(value, f"{where}.{key}" if where else key,
                         f"unknown key '{key}' (allowed: {', '.join(sorted(allowed))})")
        for key in sorted(required - node.value.keys()):
            self.add(node, where or key, f"missing key '{key}'")
        return True

    def text(self, node: Node, key: str, where: str, pattern: re.Pattern | None = None,
             rule: str = "", default: str | None = None) -> str | None:
        """The string under `key`, or `default` when absent."""
        value = node.value.get(key)
        if value is None or value.value is None:
            return default
        label = f"{where}.{key}" if where else key
        if not isinstance(value.value, str) or (pattern and not pattern.match(value.value)):
            self.add(value, label, f"'{_plain(value.value)}' is not valid ({rule or 'a string'})")
            return default
        return value.value

    def number(self, node: Node, key: str, where: str, default: float | None, low: float,
               high: float, integer: bool = False) -> float | None:
        """The number under `key` within [low, high], or `default` when absent."""
        value = node.value.get(key)
        if value is None:
            return default
        number = value.value
        kind = (int,) if integer else (int, float)
        if isinstance(number, bool) or not isinstance(number, kind) or not low <= number <= high:
            self.add(value, f"{where}.{key}", f"'{number}' is not {'an integer' if integer else 'a number'} "
                                              f"from {_number(low)} to {_number(high)}")
            return default
        return number

    def flag(self, node: Node, key: str, where: str) -> bool:
        """The boolean under `key` (false when absent)."""
        value = node.value.get(key)
        if value is None:
            return False
        if not isinstance(value.value, bool):
            self.add(value, f"{where}.{key}", f"'{value.value}' is not true or false")
            return False
        return value.value

    def bound(self, node: Node, key: str, where: str, high: float) -> Bound | None:
        """A count or percentage: a number (exactly), or {min, max}."""
        value = node.value.get(key)
        if value is None:
            return None
        label = f"{where}.{key}"
        if isinstance(value.value, dict):
            if not self.keys(value, {"min", "max"}, label):
                return None
            low = self.number(value, "min", label, None, 0, high)
            top = self.number(value, "max", label, None, 0, high)
            if low is None and top is None:
                self.add(value, label, "give 'min', 'max' or both")
                return None
            if low is not None and top is not None and low > top:
                self.add(value, label, f"min {_number(low)} is above max {_number(top)}")
                return None
            return Bound(low, top)
        number = self.number(node, key, where, None, 0, high)
        return None if number is None else Bound(number, number)

    def step_name(self, node: Node, where: str, kind: dict[str, int], required: bool) -> str | None:
        """The `as` name a later step refers to; unique among its kind."""
        name = self.text(node, "as", where, pattern=STEP_NAME,
                         rule="a lowercase letter, then up to 30 letters, digits, '-' or '_'")
        if name is None:
            if required and "as" not in node.value:
                self.add(node, where, "missing key 'as' (the name later steps use)")
            return None
        if name in kind:
            self.add(node.value["as"], f"{where}.as", f"'{name}' is used already (line {kind[name]})")
            return None
        kind[name] = node.line
        return name

    def reference(self, node: Node, key: str, where: str, known: dict[str, int], kind: str) -> str | None:
        """The name under `key` of an earlier step of `kind`."""
        name = self.text(node, key, where)
        if name is None:
            if key not in node.value:
                self.add(node, where, f"missing key '{key}'")
            return None
        if name not in known:
            self.add(node.value[key], f"{where}.{key}",
                     f"no {kind} '{name}' before this step (known: {', '.join(known) or 'none'})")
            return None
        return name

    # --- topology and the names in it

    def topology_of(self, root: Node) -> str:
        """Resolve and validate the topology: a shipped name, a file, or an inline mapping."""
        node = root.value.get("topology")
        if node is None:
            return ""
        try:
            if isinstance(node.value, dict):
                self.topology = topofile.from_node(node, self.source, "topology")
                return "inline"
            if not isinstance(node.value, str):
                self.add(node, "topology", "give a shipped topology's name, a file, or a mapping")
                return ""
            reference = node.value
            path = Path(reference)
            if path.suffix in (".yaml", ".yml") and not path.is_absolute():
                path = self.base / path
            self.topology = topofile.load(topofile.locate(path if path.suffix else reference))
            return reference
        except TopologyError as err:
            for problem in err.problems:
                self.problems.append(problem if problem.startswith(f"{self.source}:")
                                     else f"{self.source}:{node.line}: topology: {problem}")
            return ""

    def endpoint(self, node: Node, key: str, where: str) -> Endpoint | None:
        """A VM interface: `vm` or `vm-ethN`."""
        name = self.text(node, key, where)
        if name is None:
            if key not in node.value:
                self.add(node, where, f"missing key '{key}'")
            return None
        vm, _, index = name.partition("-eth")
        if self.topology is None:
            return None
        if not self.topology.has("vm", vm) or (index and not index.isdigit()):
            self.add(node.value[key], f"{where}.{key}", f"unknown VM '{name}' (known: "
                     f"{', '.join(v.name for v in self.topology.vms)})")
            return None
        position = int(index or 0)
        if position >= len(self.topology.vm(vm).interfaces):
            self.add(node.value[key], f"{where}.{key}", f"VM '{vm}' has no interface {position}")
            return None
        return Endpoint(vm, position)

    def address(self, node: Node, key: str, where: str, ipv6: bool) -> str | None:
        """A traffic target: a VM name (its first interface's address) or an address."""
        name = self.text(node, key, where)
        if name is None:
            if key not in node.value:
                self.add(node, where, f"missing key '{key}'")
            return None
        try:
            ipaddress.ip_address(name)
            return name
        except ValueError:
            pass
        if self.topology is not None and not self.topology.has("vm", name):
            self.add(node.value[key], f"{where}.{key}", f"'{name}' is neither an address nor a VM")
            return None
        if self.topology is not None and ipv6 and self.topology.vm(name).interfaces[0].ip6 is None:
            self.add(node.value[key], f"{where}.{key}", f"VM '{name}' has no IPv6 address "
                                                        f"(give its network a subnet6)")
            return None
        return name

    def compute(self, node: Node, key: str, where: str) -> str | None:
        """The name of a compute node of the topology."""
        name = self.text(node, key, where)
        if name is None or self.topology is None:
            return name
        if not self.topology.has("compute", name):
            self.add(node.value[key], f"{where}.{key}", f"unknown compute node '{name}' (known: "
                     f"{', '.join(c.name for c in self.topology.computes)})")
            return None
        return name

    def analyzer(self, node: Node, key: str, where: str) -> str | None:
        """The name of the default analyzer or of one an earlier step created."""
        name = self.text(node, key, where)
        if name is not None and name not in self.analyzers:
            self.add(node.value[key], f"{where}.{key}", f"no analyzer '{name}' before this step "
                     f"(known: {', '.join(sorted(self.analyzers))}; create one with 'analyzer:')")
            return None
        return name

    # --- steps

    def step(self, node: Node | None, where: str) -> Step | None:
        """One step: a mapping with exactly one key naming its kind."""
        if node is None or not isinstance(node.value, dict) or len(node.value) != 1:
            self.add(node or Node(None, 1), where,
                     f"a step is a mapping with one key, its kind: {', '.join(STEP_KINDS)}")
            return None
        (kind, body), = node.value.items()
        build = STEP_KINDS.get(kind)
        if build is None:
            self.add(body, f"{where}.{kind}", f"unknown step '{kind}' (steps: {', '.join(STEP_KINDS)})")
            return None
        return build(self, body, f"{where}.{kind}")

    def capture_step(self, node: Node, where: str) -> StartCapture | None:
        if not self.keys(node, {"as", "vm", "of_analyzer", "direction", "analyzer", "limit_bytes"}, where):
            return None
        name = self.step_name(node, where, self.captures, required=True)
        if ("vm" in node.value) == ("of_analyzer" in node.value):
            self.add(node, where, "give either 'vm' (a VM interface) or 'of_analyzer' (the "
                                  "analyzer VM's own interface)")
            return None
        endpoint = self.endpoint(node, "vm", where) if "vm" in node.value else None
        of_analyzer = self.analyzer(node, "of_analyzer", where)
        direction = self.text(node, "direction", where, default="both")
        if direction not in DIRECTIONS:
            self.add(node.value["direction"], f"{where}.direction",
                     f"'{direction}' is not a direction ({', '.join(DIRECTIONS)})")
        analyzer = self.analyzer(node, "analyzer", where)
        limit = self.number(node, "limit_bytes", where, None, 1, 1 << 40, integer=True)
        if name is None or (endpoint is None and of_analyzer is None):
            return None
        return StartCapture(node.line, name, endpoint.vm if endpoint else None,
                            endpoint.index if endpoint else 0, of_analyzer, direction, analyzer,
                            limit)

    def stop_step(self, node: Node, where: str) -> StopCapture | None:
        wrapped = Node({"capture": node}, node.line)
        name = self.reference(wrapped, "capture", where, self.captures, "capture")
        return None if name is None else StopCapture(node.line, name)

    def analyzer_step(self, node: Node, where: str) -> CreateAnalyzer | None:
        if not self.keys(node, {"name", "network", "compute"}, where, required={"name"}):
            return None
        name = self.text(node, "name", where, pattern=re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"),
                         rule="letters, digits, '.', '_' or '-'")
        network = self.text(node, "network", where)
        if network is not None and self.topology is not None and not self.topology.has("network", network):
            self.add(node.value["network"], f"{where}.network", f"unknown network '{network}'")
        compute = self.compute(node, "compute", where)
        if name is None:
            return None
        if name in self.analyzers:
            self.add(node.value["name"], f"{where}.name", f"analyzer '{name}' exists already")
            return None
        self.analyzers.add(name)
        return CreateAnalyzer(node.line, name, network, compute)

    def ping_step(self, node: Node, where: str) -> Ping | None:
        if not self.keys(node, {"as", "from", "from_analyzer", "to", "to_analyzer", "count", "size",
                                "interval", "ipv6", "background"}, where):
            return None
        name = self.step_name(node, where, self.traffic, required=False)
        for vm_key, vm_text, analyzer_key in (("from", "a VM", "from_analyzer"),
                                              ("to", "a VM or an address", "to_analyzer")):
            if (vm_key in node.value) == (analyzer_key in node.value):
                self.add(node, where, f"give either '{vm_key}' ({vm_text}) or '{analyzer_key}' "
                                      f"(an analyzer's own VM)")
                return None
        ipv6 = self.flag(node, "ipv6", where)
        if ipv6 and "to_analyzer" in node.value:
            self.add(node.value["ipv6"], f"{where}.ipv6", "analyzers have no IPv6 address")
            return None
        source = self.endpoint(node, "from", where) if "from" in node.value else None
        source_analyzer = self.analyzer(node, "from_analyzer", where)
        target = self.address(node, "to", where, ipv6) if "to" in node.value else None
        target_analyzer = self.analyzer(node, "to_analyzer", where)
        count = self.number(node, "count", where, 3, 1, 1000, integer=True)
        size = self.number(node, "size", where, 56, 0, 65000, integer=True)
        interval = self.number(node, "interval", where, 0.2, 0.01, 10)
        background = self.flag(node, "background", where)
        if (source is None and source_analyzer is None) or (target is None and target_analyzer is None):
            return None
        return Ping(node.line, name, source, target, count, size, interval, ipv6, background,
                    source_analyzer, target_analyzer)

    def iperf3_step(self, node: Node, where: str) -> Iperf3 | None:
        if not self.keys(node, {"as", "from", "to", "seconds", "udp", "bitrate"}, where,
                         required={"from", "to"}):
            return None
        name = self.step_name(node, where, self.traffic, required=False)
        source = self.endpoint(node, "from", where)
        target = self.address(node, "to", where, False)
        seconds = self.number(node, "seconds", where, 1, 0.5, 60)
        udp = self.flag(node, "udp", where)
        bitrate = self.text(node, "bitrate", where, pattern=re.compile(r"^[1-9][0-9]*[KMG]?$"),
                            rule="bits per second, e.g. 10M")
        if source is None or target is None:
            return None
        return Iperf3(node.line, name, source, target, seconds, udp, bitrate)

    def probe_step(self, node: Node, where: str) -> Probe | None:
        if not self.keys(node, {"as", "from", "to", "protocol", "port", "count"}, where,
                         required={"from", "to", "protocol"}):
            return None
        name = self.step_name(node, where, self.traffic, required=False)
        source = self.endpoint(node, "from", where)
        target = self.address(node, "to", where, False)
        protocol = self.text(node, "protocol", where)
        if protocol is not None and protocol not in ("udp", "tcp"):
            self.add(node.value["protocol"], f"{where}.protocol", f"'{protocol}' is not udp or tcp")
        port = self.number(node, "port", where, 5555, 1, 65535, integer=True)
        count = self.number(node, "count", where, 3, 1, 1000, integer=True)
        if source is None or target is None or protocol not in ("udp", "tcp"):
            return None
        return Probe(node.line, name, source, target, protocol, port, count)

    def craft_step(self, node: Node, where: str) -> Craft | None:
        if not self.keys(node, {"from", "packet", "count"}, where, required={"from", "packet"}):
            return None
        source = self.endpoint(node, "from", where)
        packet = self.text(node, "packet", where)
        count = self.number(node, "count", where, 1, 1, 1000, integer=True)
        if packet is not None:
            try:
                filled = fill_placeholders(packet, self.topology) if self.topology else packet
                ast.parse(filled, mode="eval")
            except KeyError as err:
                self.add(node.value["packet"], f"{where}.packet", str(err.args[0]))
                return None
            except SyntaxError as err:
                self.add(node.value["packet"], f"{where}.packet",
                         f"not a Python (scapy) expression: {err.msg}")
                return None
        if source is None or packet is None:
            return None
        return Craft(node.line, source, packet, count)

    def fault_step(self, node: Node, where: str) -> Fault | None:
        if isinstance(node.value, str):
            node = Node({node.value: Node(None, node.line)}, node.line)
        if not isinstance(node.value, dict):
            self.add(node, where, f"a fault's name ({', '.join(FAULTS)}), or a mapping")
            return None
        actions = [key for key in node.value if key in FAULTS]
        if len(actions) != 1:
            unknown = [key for key in node.value if key not in (*FAULTS, "loss", "rate")]
            self.add(node, where, (f"unknown fault '{unknown[0]}'" if unknown and not actions
                                   else "name exactly one fault") + f" (faults: {', '.join(FAULTS)})")
            return None
        action = actions[0]
        allowed = {action} | ({"loss", "rate"} if action == "impair" else set())
        if not self.keys(node, allowed, where):
            return None
        target_where = f"{where}.{action}"
        index, loss, rate, target = 0, None, None, node.value[action].value
        if action in FAULTS_ON_CONTROLLER:
            if target is not None:
                self.add(node.value[action], target_where, "takes no value (the lab has one controller)")
            return Fault(node.line, action, None, 0, None, None)
        if action in FAULTS_ON_INTERFACE:
            endpoint = self.endpoint(node, action, where)
            if endpoint is None:
                return None
            target, index = endpoint.vm, endpoint.index
        elif action in FAULTS_ON_COMPUTE:
            target = self.compute(node, action, where)
        elif action in FAULTS_ON_ANALYZER:
            target = self.analyzer(node, action, where)
        else:  # a link: a VM interface, or a compute node's fabric uplink
            target = self.text(node, action, where)
            if target is not None and self.topology is not None:
                if self.topology.has("compute", target):
                    pass
                else:
                    endpoint = self.endpoint(node, action, where)
                    if endpoint is None:
                        return None
                    target, index = endpoint.vm, endpoint.index
            if action == "impair":
                loss = self.number(node, "loss", where, None, 1, 100, integer=True)
                rate = self.text(node, "rate", where, pattern=RATE, rule="e.g. 500kbit, 10mbit")
                if loss is None and rate is None:
                    self.add(node, where, "impair needs 'loss' (percent) or 'rate' (e.g. 1mbit)")
                    return None
        if target is None:
            if node.value[action].value is None:
                self.add(node, target_where, "needs a value: what the fault acts on")
            return None
        return Fault(node.line, action, target, index, loss, rate)

    def wait_step(self, node: Node, where: str) -> Wait | None:
        if not isinstance(node.value, dict):
            seconds = self.number(Node({"seconds": node}, node.line), "seconds", where, None, 0, 600)
            return None if seconds is None else Wait(node.line, seconds)
        if not self.keys(node, {"capture", "packets", "vrouter", "connected", "timeout"}, where):
            return None
        timeout = self.number(node, "timeout", where, 10, 0.1, 600)
        if "capture" in node.value:
            capture = self.reference(node, "capture", where, self.captures, "capture")
            packets = self.number(node, "packets", where, None, 1, 10 ** 7, integer=True)
            if packets is None:
                self.add(node, where, "waiting for a capture needs 'packets'")
            return None if capture is None or packets is None else Wait(node.line, timeout, capture, packets)
        if "vrouter" in node.value:
            vrouter = self.compute(node, "vrouter", where)
            connected = self.flag(node, "connected", where) if "connected" in node.value else True
            return None if vrouter is None else Wait(node.line, timeout, vrouter=vrouter, connected=connected)
        self.add(node, where, "give a number of seconds, or 'capture' and 'packets', or 'vrouter'")
        return None

    def expect_step(self, node: Node, where: str) -> Step | None:
        if not isinstance(node.value, dict):
            self.add(node, where, "must be a mapping")
            return None
        within = self.number(node, "within", where, 5, 0, 600)
        if "traffic" in node.value:
            if not self.keys(node, {"traffic", "loss"}, where, required={"loss"}):
                return None
            traffic = self.reference(node, "traffic", where, self.traffic, "traffic step")
            loss = self.bound(node, "loss", where, 100)
            return None if traffic is None or loss is None else ExpectLoss(node.line, traffic, loss)
        if "flows" in node.value:
            if not self.keys(node, {"vrouter", "capture", "flows", "within"}, where,
                             required={"vrouter", "capture"}):
                return None
            vrouter = self.compute(node, "vrouter", where)
            capture = self.reference(node, "capture", where, self.captures, "capture")
            count = self.bound(node, "flows", where, 10 ** 6)
            if None in (vrouter, capture, count):
                return None
            return ExpectFlows(node.line, vrouter, capture, count, within)
        if "state" in node.value:
            if not self.keys(node, {"capture", "state", "within"}, where, required={"capture"}):
                return None
            capture = self.reference(node, "capture", where, self.captures, "capture")
            state = self.text(node, "state", where)
            if state not in CAPTURE_STATES:
                self.add(node.value["state"], f"{where}.state",
                         f"'{state}' is not a capture state ({', '.join(CAPTURE_STATES)})")
                return None
            return None if capture is None else ExpectState(node.line, capture, state, within)
        if "analyzer" in node.value:
            if not self.keys(node, {"analyzer", "filter", "packets", "since", "until", "within"},
                             where, required={"packets"}):
                return None
            analyzer = self.analyzer(node, "analyzer", where)
            count = self.bound(node, "packets", where, 10 ** 7)
            display_filter = self.text(node, "filter", where)  # tshark checks it (runner.check_filters)
            span = self.marks_of(node, where, analyzer)
            if span is None or analyzer is None or count is None:
                return None
            return ExpectAnalyzer(node.line, analyzer, display_filter, count, *span, within)
        if "packets" in node.value:
            if not self.keys(node, {"capture", "filter", "packets", "within"}, where,
                             required={"capture"}):
                return None
            capture = self.reference(node, "capture", where, self.captures, "capture")
            count = self.bound(node, "packets", where, 10 ** 7)
            display_filter = self.text(node, "filter", where)  # tshark checks it (runner.check_filters)
            if capture is None or count is None:
                return None
            return ExpectPackets(node.line, capture, display_filter, count, within)
        self.add(node, where, "expect what? give 'packets' (with 'capture' or 'analyzer'), "
                              "'loss' (with 'traffic'), 'state' (with 'capture') or 'flows' (with "
                              "'vrouter' and 'capture')")
        return None

    def policy_step(self, node: Node, where: str) -> WritePolicy | None:
        if not self.keys(node, {"name", "rules", "order", "attach", "detach"}, where, required={"name"}):
            return None
        name = self.text(node, "name", where, pattern=POLICY_NAME,
                         rule="a letter or digit, then up to 62 letters, digits, '.', '_' or '-'")
        if name is None:
            return None
        given = [key for key in ("rules", "order", "attach", "detach") if key in node.value]
        if not given:
            self.add(node, where, "give 'rules' (write them), 'order' (reorder them), 'attach' "
                                  "or 'detach' (networks)")
            return None
        if name not in self.policies and "rules" not in node.value:
            self.add(node, where, f"no policy '{name}' before this step: its first step gives "
                                  f"its 'rules'")
            return None
        if "rules" in node.value and "order" in node.value:
            self.add(node.value["order"], f"{where}.order", "give 'rules' or 'order', not both "
                                                             "(order reorders the rules written before)")
            return None
        rules = self.policy_rules(node.value["rules"], f"{where}.rules") if "rules" in node.value else None
        order = (self.rule_order(node.value["order"], f"{where}.order", self.policies[name])
                 if "order" in node.value else None)
        attached = set(self.attached.get(name, set()))
        attach = self.attachments(node.value.get("attach"), f"{where}.attach")
        attached |= {a.network for a in attach or ()}
        detach = self.policy_networks(node.value.get("detach"), f"{where}.detach")
        for position, network in enumerate(detach or ()):
            if network not in attached:
                self.add(node.value["detach"].value[position], f"{where}.detach[{position}]",
                         f"policy '{name}' is not attached to '{network}' here (attached: "
                         f"{', '.join(sorted(attached)) or 'none'})")
                detach = None
        if None in (attach, detach) or ("rules" in node.value and rules is None) \
                or ("order" in node.value and order is None):
            return None
        if rules is not None:
            self.policies[name] = len(rules)
        self.attached[name] = attached - set(detach)
        return WritePolicy(node.line, name, rules, order, attach, detach)

    def policy_rules(self, node: Node, where: str) -> tuple[PolicyRule, ...] | None:
        """A policy's rules: a list of compact rules (maybe empty)."""
        if not isinstance(node.value, list):
            self.add(node, where, "must be a list of rules")
            return None
        rules = [self.policy_rule(rule, f"{where}[{position}]") for position, rule in enumerate(node.value)]
        return None if None in rules else tuple(rules)

    def policy_rule(self, node: Node, where: str) -> PolicyRule | None:
        """One rule in the compact form (see `PolicyRule`)."""
        if not self.keys(node, {"direction", "protocol", "src", "dst", "src_ports", "dst_ports",
                                "action", "mirror_to"}, where, required={"src", "dst"}) \
                or not {"src", "dst"} <= node.value.keys():
            return None
        ok = True
        direction = self.text(node, "direction", where, default="<>")
        if direction not in RULE_DIRECTIONS:
            self.add(node.value["direction"], f"{where}.direction",
                     f"'{direction}' is not a direction ('<>' both ways, '>' one way)")
            ok = False
        protocol = node.value.get("protocol")
        protocol = "any" if protocol is None else protocol.value
        if isinstance(protocol, int) and not isinstance(protocol, bool) and 0 <= protocol <= 255:
            protocol = str(protocol)
        elif protocol not in RULE_PROTOCOLS:
            self.add(node.value["protocol"], f"{where}.protocol", f"'{protocol}' is not a protocol "
                     f"({', '.join(RULE_PROTOCOLS)} or a number 0-255)")
            ok = False
        sources = self.rule_addresses(node, "src", where)
        destinations = self.rule_addresses(node, "dst", where)
        source_ports = self.rule_ports(node, "src_ports", where)
        destination_ports = self.rule_ports(node, "dst_ports", where)
        action = self.text(node, "action", where, default="pass")
        if action not in RULE_ACTIONS:
            self.add(node.value["action"], f"{where}.action", f"'{action}' is not pass or deny")
            ok = False
        mirror_to = self.analyzer(node, "mirror_to", where)
        if "mirror_to" in node.value and mirror_to is None:
            ok = False
        if not ok or None in (sources, destinations, source_ports, destination_ports):
            return None
        return PolicyRule(direction, protocol, sources, destinations, source_ports,
                          destination_ports, action, mirror_to)

    def rule_addresses(self, node: Node, key: str, where: str) -> tuple[str, ...] | None:
        """A rule's side: a network, any, local or a CIDR, or a list of them."""
        value = node.value[key]
        items = value.value if isinstance(value.value, list) else [value]
        label = f"{where}.{key}"
        if not items:
            self.add(value, label, "give a network, any, local or a CIDR")
            return None
        found = []
        for position, item in enumerate(items):
            at = f"{label}[{position}]" if isinstance(value.value, list) else label
            name = item.value
            if not isinstance(name, str):
                self.add(item, at, f"'{_plain(name)}' is not a network, any, local or a CIDR")
                continue
            if "/" in name:
                try:
                    ipaddress.ip_network(name)
                except ValueError as err:
                    self.add(item, at, f"'{name}' is not a CIDR ({err})")
                    continue
            elif name not in ("any", "local") and self.topology is not None \
                    and not self.topology.has("network", name):
                self.add(item, at, f"unknown network '{name}' (known: any, local, "
                                   f"{', '.join(n.name for n in self.topology.networks)}; or a CIDR)")
                continue
            found.append(name)
        return tuple(found) if len(found) == len(items) else None

    def rule_ports(self, node: Node, key: str, where: str) -> tuple[tuple[int, int], ...] | None:
        """A rule's ports: any, a port, a range 'N-M', or a list of them; `()` for any."""
        value = node.value.get(key)
        if value is None:
            return ()
        items = value.value if isinstance(value.value, list) else [value]
        ranges = []
        for item in items:
            port = item.value
            if port == "any":
                return ()
            text = str(port) if isinstance(port, int) and not isinstance(port, bool) else port
            match = PORT_RANGE.match(text) if isinstance(text, str) else None
            start, end = (int(match.group(1)), int(match.group(2) or match.group(1))) if match else (0, -1)
            if not match or end > 65535 or start > end:
                self.add(item, f"{where}.{key}", f"'{_plain(port)}' is not any, a port (0-65535) or a "
                                                 f"range such as 8000-8080")
                return None
            ranges.append((start, end))
        return tuple(ranges)

    def rule_order(self, node: Node, where: str, count: int) -> tuple[int, ...] | None:
        """A new order of a policy's `count` rules: their positions from 1, each once."""
        positions = node.value if isinstance(node.value, list) else None
        numbers = [item.value for item in positions or []]
        if not all(type(number) is int for number in numbers) or sorted(numbers) != list(range(1, count + 1)):
            self.add(node, where, f"must list the rules' positions 1 to {count}, each once, in "
                                  f"their new order (e.g. {list(range(count, 0, -1))})")
            return None
        return tuple(numbers)

    def attachments(self, node: Node | None, where: str) -> tuple[Attachment, ...] | None:
        """Networks to attach a policy to, in turn: a name, or {network, major, minor}."""
        if node is None:
            return ()
        if not isinstance(node.value, list) or not node.value:
            self.add(node, where, "must be a list of networks")
            return None
        found = []
        for position, item in enumerate(node.value):
            at = f"{where}[{position}]"
            if isinstance(item.value, dict):
                if not self.keys(item, {"network", "major", "minor"}, at, required={"network"}):
                    return None
                network = self.policy_network(item.value["network"], f"{at}.network")
                major = self.number(item, "major", at, 0, 0, 2 ** 31 - 1, integer=True)
                minor = self.number(item, "minor", at, 0, 0, 2 ** 31 - 1, integer=True)
                found.append(None if network is None else Attachment(network, (major, minor)))
            else:
                network = self.policy_network(item, at)
                found.append(None if network is None else Attachment(network))
        return None if None in found else tuple(found)

    def policy_networks(self, node: Node | None, where: str) -> tuple[str, ...] | None:
        """Networks of the topology, as a list."""
        if node is None:
            return ()
        if not isinstance(node.value, list) or not node.value:
            self.add(node, where, "must be a list of networks")
            return None
        found = [self.policy_network(item, f"{where}[{position}]") for position, item in enumerate(node.value)]
        return None if None in found else tuple(found)

    def policy_network(self, node: Node, where: str) -> str | None:
        """A network of the topology."""
        name = node.value
        if self.topology is None:
            return None
        if not isinstance(name, str) or not self.topology.has("network", name):
            self.add(node, where, f"unknown network '{_plain(name)}' (known: "
                                  f"{', '.join(n.name for n in self.topology.networks)})")
            return None
        return name

    def mark_step(self, node: Node, where: str) -> Mark | None:
        if not self.keys(node, {"as", "analyzer"}, where, required={"analyzer"}):
            return None
        name = self.step_name(node, where, self.marks, required=True)
        analyzer = self.analyzer(node, "analyzer", where)
        if name is None or analyzer is None:
            self.marks.pop(name, None)  # later steps are told of the marks that count something
            return None
        self.mark_analyzers[name] = analyzer
        return Mark(node.line, name, analyzer)

    def marks_of(self, node: Node, where: str, analyzer: str | None) -> tuple[str | None, str | None] | None:
        """The marks `since` and `until` (None when left out) of what `analyzer` received;
        None when one is not an earlier mark of that analyzer."""
        marks = {key: self.reference(node, key, where, self.marks, "mark")
                 for key in ("since", "until") if key in node.value}
        for key, mark in marks.items():
            if mark is not None and analyzer is not None and self.mark_analyzers[mark] != analyzer:
                self.add(node.value[key], f"{where}.{key}", f"mark '{mark}' counts analyzer "
                         f"'{self.mark_analyzers[mark]}', not '{analyzer}'")
                return None
        if None in marks.values():
            return None
        return marks.get("since"), marks.get("until")

    def show_step(self, node: Node, where: str) -> Show | ShowReceived | None:
        if isinstance(node.value, dict) and "analyzer" in node.value:
            if not self.keys(node, {"analyzer", "filter", "since", "until", "title"}, where):
                return None
            analyzer = self.analyzer(node, "analyzer", where)
            display_filter = self.text(node, "filter", where)  # tshark checks it (runner.check_filters)
            title = self.text(node, "title", where)
            span = self.marks_of(node, where, analyzer)
            if span is None or analyzer is None:
                return None
            return ShowReceived(node.line, analyzer, display_filter, *span,
                                title or f"what analyzer {analyzer} received")
        if not self.keys(node, {"capture", "filter", "title"}, where, required={"capture"}):
            return None
        capture = self.reference(node, "capture", where, self.captures, "capture")
        display_filter = self.text(node, "filter", where)  # tshark checks it (runner.check_filters)
        title = self.text(node, "title", where)
        if capture is None:
            return None
        return Show(node.line, capture, display_filter, title or f"capture {capture}")


STEP_KINDS = {
    "capture": _Validator.capture_step, "stop": _Validator.stop_step,
    "analyzer": _Validator.analyzer_step, "ping": _Validator.ping_step,
    "iperf3": _Validator.iperf3_step, "probe": _Validator.probe_step,
    "craft": _Validator.craft_step, "fault": _Validator.fault_step, "wait": _Validator.wait_step,
    "policy": _Validator.policy_step, "mark": _Validator.mark_step,
    "expect": _Validator.expect_step, "show": _Validator.show_step,
}

PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9]*)(?:-eth([0-9]+))?\.(ip|ip6|mac)\}")


def fill_placeholders(text: str, topology: Topology) -> str:
    """`text` with each {VM.ip}, {VM.ip6}, {VM.mac} (or {VM-ethN.ip}...) replaced by that VM
    interface's value, quoted; KeyError naming an unknown VM, interface or value."""
    def value(match: re.Match) -> str:
        vm, index, field = match.group(1), int(match.group(2) or 0), match.group(3)
        if not topology.has("vm", vm):
            raise KeyError(f"{match.group(0)}: unknown VM '{vm}'")
        interfaces = topology.vm(vm).interfaces
        if index >= len(interfaces):
            raise KeyError(f"{match.group(0)}: VM '{vm}' has no interface {index}")
        found = getattr(interfaces[index], field)
        if found is None:
            raise KeyError(f"{match.group(0)}: VM '{vm}' has no IPv6 address")
        return repr(str(found))
    return PLACEHOLDER.sub(value, text)


def target_address(topology: Topology, target: str, ipv6: bool = False) -> str:
    """The address traffic goes to: `target` itself, or VM `target`'s first interface's."""
    if not topology.has("vm", target):
        return target
    interface = topology.vm(target).interfaces[0]
    return str(interface.ip6 if ipv6 else interface.ip)
