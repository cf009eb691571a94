"""Mutation testing: put one small bug at a time into a module and see whether the unit tests
notice (scripts/mutation runs this with the project's virtualenv).

Each mutant changes one thing the way a slip of the hand would: a comparison (`<` and `<=`,
`==` and `!=`, `in` and `not in`, `is` and `is not`), an arithmetic or bit operator, `and` and
`or`, a dropped `not`, a number off by one, `True` and `False`, `+=` and `-=`, or a call
statement left out. Strings, docstrings, annotations and f-strings are left alone, and so are
the functions listed in SKIPPED_FUNCTIONS (I/O loops the unit tests cannot reach).

Every mutant runs the unit tests (`pytest -x`, the module's own test file first) in a copy of the repository under a temporary
directory, so the working tree is never changed. The heavy libraries are imported once and each
mutant runs in a forked child, which keeps a run over the listed modules to a few minutes. A
mutant is caught when the tests fail (or hang past --timeout); the report gives the share
caught per module and every survivor with its line. Survivors reviewed as equivalent (REVIEWED,
each with its reason) are shown apart and left out of the share.
"""
from __future__ import annotations

import argparse
import ast
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULES = ["controller/pipeline.py", "controller/mirroring.py", "controller/flowmodel.py",
           "lab/topofile.py", "lab/recorder.py"]
# Functions the unit tests do not run: the recorder's socket loop needs a live interface.
SKIPPED_FUNCTIONS = {"lab/recorder.py": {"main"}}
# The tests most likely to catch a mutant of each module run first, so a caught one stops early.
FIRST_TESTS = {"controller/pipeline.py": "test_pipeline.py", "controller/mirroring.py": "test_mirroring.py",
               "controller/flowmodel.py": "test_mirroring.py", "lab/topofile.py": "test_topofile.py",
               "lab/recorder.py": "test_recording.py"}
PRELOADED = ["pytest", "yaml", "networkx", "scapy.all", "os_ken.ofproto.ofproto_v1_3_parser",
             "os_ken.base.app_manager", "fastapi", "fastapi.testclient", "httpx"]

_PRIORITY = ("a flow priority moved by one keeps its order against every flow of its table "
             "(priorities there are 10 or more apart)")
_REPORTED = ("the problem is reported already; building the VM anyway reports nothing more, "
             "so the file is refused with the same problems")
# Surviving mutants reviewed as equivalent (no behaviour changes) or out of the unit tests'
# reach, by (module, source line, change), with the reason. They are reported, and left out
# of the score. A line that changes drops out of this list, and its mutants count again.
REVIEWED = {
    ("controller/pipeline.py", "flows = [flow(CLASSIFY, 0), flow(DELIVER, 0)]  # anything unknown is dropped",
     "0  ->  1"): _PRIORITY,
    ("controller/pipeline.py", "flows.append(flow(table, 0, goto=_next_slot(table)))", "0  ->  1"): _PRIORITY,
    ("controller/pipeline.py", "flows.append(flow(FORWARD, 0, goto=INGRESS_MIRROR))", "0  ->  1"): _PRIORITY,
    ("controller/pipeline.py", "flows.append(flow(CLASSIFY, 100, in_port=interface.ofport, eth_src=interface.mac,",
     "100  ->  101"): _PRIORITY,
    ("controller/pipeline.py", "flows.append(flow(DELIVER, 110, in_port=interface.ofport, **{REG_OUT_PORT: interface.ofport},",
     "110  ->  111"): _PRIORITY,
    ("controller/pipeline.py", "flows.append(flow(DELIVER, 100, **{REG_OUT_PORT: interface.ofport},",
     "100  ->  101"): _PRIORITY,
    ("controller/pipeline.py", "flows.append(flow(CLASSIFY, 100, in_port=FABRIC_PORT, eth_type=0x8847,",
     "100  ->  101"): _PRIORITY,
    ("controller/pipeline.py", "flows.append(flow(FORWARD, 300, eth_type=0x0806, arp_op=1, arp_tpa=str(member.ip),",
     "300  ->  301"): _PRIORITY,
    ("controller/pipeline.py", "flows.append(flow(FORWARD, 250, eth_type=0x0806, **in_network, goto=INGRESS_MIRROR))",
     "250  ->  251"): _PRIORITY,
    ("controller/pipeline.py", "flows.append(flow(FORWARD, 200, eth_dst=member.mac, **in_network,",
     "200  ->  201"): _PRIORITY,
    ("controller/pipeline.py", "flows.append(flow(FORWARD, 150, in_port=FABRIC_PORT, eth_dst=MULTICAST, **in_network,",
     "150  ->  151"): _PRIORITY,
    ("controller/pipeline.py", "flows.append(flow(FORWARD, 140, in_port=FABRIC_PORT, **in_network))",
     "140  ->  141"): _PRIORITY,
    ("controller/pipeline.py", "flows.append(flow(FORWARD, 100, eth_dst=member.mac, **in_network, goto=INGRESS_MIRROR,",
     "100  ->  101"): _PRIORITY,
    ("controller/pipeline.py", "flows.append(flow(FORWARD, 90, in_port=source.ofport, eth_dst=MULTICAST, **in_network,",
     "90  ->  91"): _PRIORITY,
    ("controller/pipeline.py", "flows.append(flow(FORWARD, 140, in_port=FABRIC_PORT, **in_network))",
     "leave out flows.append(flow(FORWARD, 140, in_port=FABRIC_PORT, **in_network))"):
        "without this drop, a fabric frame for no local VM meets the remote-unicast flow, whose "
        "output to the fabric port it came in on OpenFlow drops all the same",
    ("controller/mirroring.py", "ofport = next(p for p in range(FIRST_ANALYZER_PORT, 65280) if p not in taken_ports)",
     "65280  ->  65281"): "the end of a port search that never runs out in a lab",
    ("controller/mirroring.py", "vm_name = next(f\"an{n}\" for n in range(1, 10**6)",
     "10  ->  11"): "the end of a name search that never runs out in a lab",
    ("controller/mirroring.py", "vm_name = next(f\"an{n}\" for n in range(1, 10**6)",
     "6  ->  7"): "the end of a name search that never runs out in a lab",
    ("lab/topofile.py", "line = mark.line + 1 if mark else 1", "1  ->  2"):
        "PyYAML's parse errors always carry a mark",
    ("lab/topofile.py", "mapping[key] = value if value is not None else Node(None, key_node.start_mark.line + 1)",
     "key_node.start_mark.line + 1  ->  key_node.start_mark.line - 1"): "the next line sets the key's line",
    ("lab/topofile.py", "mapping[key] = value if value is not None else Node(None, key_node.start_mark.line + 1)",
     "1  ->  2"): "the next line sets the key's line",
    ("lab/topofile.py", "return Node(yaml.SafeLoader(\"\").construct_object(node, deep=True), line)",
     "True  ->  False"): "only scalars get here, and they have nothing to construct deeply",
    ("lab/recorder.py", "ETH_P_ALL = 0x0003", "3  ->  4"):
        "the packet socket of the recorder's receive loop, which the end-to-end tests run",
    ("lab/recorder.py", "self.dirty.clear()", "leave out self.dirty.clear()"):
        "flushing an already flushed file again changes nothing",
}
for _line in ("ok = False",):
    REVIEWED[("lab/topofile.py", _line, "False  ->  True")] = _REPORTED

COMPARE_SWAPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
                 ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
                 ast.Is: ast.IsNot, ast.IsNot: ast.Is}
BINOP_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
               ast.FloorDiv: ast.Mult, ast.Mod: ast.FloorDiv, ast.LShift: ast.RShift,
               ast.RShift: ast.LShift, ast.BitOr: ast.BitAnd, ast.BitAnd: ast.BitOr,
               ast.BitXor: ast.BitOr}


@dataclass(frozen=True)
class Mutant:
    """One bug: replace the source between two (line, column) positions with `text`."""

    module: str
    start: tuple[int, int]
    end: tuple[int, int]
    text: str
    description: str
    line: str  # the source line it changes, stripped

    @property
    def change(self) -> str:
        """The description without the line number."""
        return self.description.split(": ", 1)[1]

    def apply(self, source: str) -> str:
        """`source` with this mutant's change."""
        lines = source.splitlines(keepends=True)
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line))

        def position(line_col):
            line, col = line_col
            return offsets[line - 1] + len(lines[line - 1].encode()[:col].decode())

        return source[:position(self.start)] + self.text + source[position(self.end):]


class _Finder(ast.NodeVisitor):
    """Collects the mutants of one module."""

    def __init__(self, module: str, skipped: set[str], lines: list[str]):
        self.module = module
        self.lines = lines
        self.skipped = skipped
        self.mutants: list[Mutant] = []

    def _add(self, node: ast.AST, replacement: ast.AST | str, description: str) -> None:
        text = replacement if isinstance(replacement, str) else f"({ast.unparse(replacement)})"
        self.mutants.append(Mutant(self.module, (node.lineno, node.col_offset),
                                   (node.end_lineno, node.end_col_offset), text,
                                   f"line {node.lineno}: {description}",
                                   self.lines[node.lineno - 1].strip()))

    def _copy(self, node):
        return ast.parse(ast.unparse(node), mode="eval").body

    # Parts never mutated.
    def visit_FunctionDef(self, node):
        if node.name in self.skipped:
            return
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        for child in node.decorator_list + body:
            self.visit(child)
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d]:
            self.visit(default)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)

    def visit_JoinedStr(self, node):
        return

    def visit_If(self, node):
        test = node.test
        if (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
                and test.left.id == "__name__"):
            return
        self.generic_visit(node)

    # Mutations.
    def visit_Compare(self, node):
        for index, op in enumerate(node.ops):
            swap = COMPARE_SWAPS.get(type(op))
            if swap:
                mutated = self._copy(node)
                mutated.ops[index] = swap()
                self._add(node, mutated, f"{ast.unparse(node)}  ->  {ast.unparse(mutated)}")
        self.generic_visit(node)

    def visit_BinOp(self, node):
        swap = BINOP_SWAPS.get(type(node.op))
        if swap:
            mutated = self._copy(node)
            mutated.op = swap()
            self._add(node, mutated, f"{ast.unparse(node)}  ->  {ast.unparse(mutated)}")
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        swap = BINOP_SWAPS.get(type(node.op))
        if swap:
            mutated = ast.parse(ast.unparse(node)).body[0]
            mutated.op = swap()
            self._add(node, ast.unparse(mutated), f"{ast.unparse(node)}  ->  {ast.unparse(mutated)}")
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        mutated = self._copy(node)
        mutated.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self._add(node, mutated, f"{ast.unparse(node)}  ->  {ast.unparse(mutated)}")
        self.generic_visit(node)

    def visit_UnaryOp(self, node):
        if isinstance(node.op, ast.Not):
            self._add(node, f"({ast.unparse(node.operand)})", f"{ast.unparse(node)}  ->  drop 'not'")
        self.generic_visit(node)

    def visit_Constant(self, node):
        if isinstance(node.value, bool):
            self._add(node, str(not node.value), f"{node.value}  ->  {not node.value}")
        elif isinstance(node.value, int):
            self._add(node, f"({node.value + 1})", f"{node.value}  ->  {node.value + 1}")

    def visit_Expr(self, node):
        if isinstance(node.value, ast.Call):
            self._add(node, "pass", f"leave out {ast.unparse(node)}")
        self.generic_visit(node)


def find_mutants(module: str) -> list[Mutant]:
    """Every mutant of `module` (a path relative to the repository)."""
    source = (REPO / module).read_text()
    tree = ast.parse(source)
    finder = _Finder(module, SKIPPED_FUNCTIONS.get(module, set()), source.splitlines())
    for statement in tree.body:
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # the module's docstring
        finder.visit(statement)
    return finder.mutants


def copy_tree(destination: Path) -> Path:
    """A copy of what the unit tests need, without caches."""
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".git", ".venv", "artifacts",
                                    "results")
    for part in ("controller", "lab", "tests", "topologies", "pyproject.toml"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, destination / part, ignore=ignore)
        else:
            shutil.copy(source, destination / part)
    return destination


def start_child(tree: Path, mutant: Mutant | None) -> int:
    """Fork a child that runs the unit tests in `tree` with `mutant` applied; return its pid."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setpgid(0, 0)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.chdir(tree)
        sys.path.insert(0, str(tree))
        sys.dont_write_bytecode = True
        if mutant is not None:
            path = tree / mutant.module
            path.write_text(mutant.apply((REPO / mutant.module).read_text()))
        import pytest
        tests = sorted(Path("tests/unit").glob("test_*.py"),
                       key=lambda test: (test.name != FIRST_TESTS.get(getattr(mutant, "module", "")),
                                         test.name))
        code = pytest.main([*map(str, tests), "-x", "-q", "-p", "no:cacheprovider"])
        os._exit(int(code))
    except BaseException:
        os._exit(99)


def run(mutants: list[Mutant], jobs: int, timeout: float) -> dict[Mutant, str]:
    """Run every mutant; its outcome is "caught", "timeout" or "survived"."""
    for module in PRELOADED:
        __import__(module)
    outcomes: dict[Mutant, str] = {}
    with tempfile.TemporaryDirectory(prefix="mirrorlab-mutation-") as temp:
        trees = [copy_tree(Path(temp) / f"tree{n}") for n in range(jobs)]
        baseline = start_child(trees[0], None)
        if os.waitpid(baseline, 0)[1] != 0:
            raise SystemExit("the unit tests fail without any mutation; fix them first")
        pending = list(mutants)
        running: dict[int, tuple[Mutant, Path, float]] = {}
        free = list(trees)
        while pending or running:
            while pending and free:
                mutant, tree = pending.pop(0), free.pop()
                running[start_child(tree, mutant)] = (mutant, tree, time.monotonic())
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                for child, (mutant, tree, started) in list(running.items()):
                    if time.monotonic() - started > timeout:
                        os.killpg(child, signal.SIGKILL)
                        os.waitpid(child, 0)
                        outcomes[mutant] = "timeout"
                        _restore(tree, mutant)
                        free.append(tree)
                        del running[child]
                time.sleep(0.01)
                continue
            mutant, tree, _ = running.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            outcomes[mutant] = "survived" if code == 0 else "caught"
            _restore(tree, mutant)
            free.append(tree)
            done = len(outcomes)
            if done % 25 == 0:
                print(f"  {done}/{len(mutants)} mutants run", file=sys.stderr, flush=True)
    return outcomes


def _restore(tree: Path, mutant: Mutant) -> None:
    shutil.copy(REPO / mutant.module, tree / mutant.module)


def report(modules: list[str], mutants: list[Mutant], outcomes: dict[Mutant, str]) -> float:
    """Print the score per module (survivors reviewed as equivalent left out), every survivor,
    and return the overall share caught."""
    caught_all = counted_all = 0
    for module in modules:
        mine = [m for m in mutants if m.module == module]
        survivors = [m for m in mine if outcomes[m] == "survived"]
        reviewed = [m for m in survivors if (m.module, m.line, m.change) in REVIEWED]
        counted = len(mine) - len(reviewed)
        caught = len(mine) - len(survivors)
        caught_all += caught
        counted_all += counted
        share = 100.0 * caught / counted if counted else 100.0
        print(f"{module}: {caught}/{counted} caught ({share:.1f}%); {len(mine)} mutants, "
              f"{len(reviewed)} survivors reviewed as equivalent")
        for mutant in survivors:
            reason = REVIEWED.get((mutant.module, mutant.line, mutant.change))
            print(f"    {'equivalent' if reason else 'SURVIVED  '}  {mutant.description}"
                  + (f"\n                  ({reason})" if reason else ""))
    share = 100.0 * caught_all / counted_all if counted_all else 100.0
    print(f"all: {caught_all}/{counted_all} caught ({share:.1f}%)")
    return share


def main(argv: list[str] | None = None) -> int:
    """Run the mutation test over MODULES (or the modules given) and report the score."""
    parser = argparse.ArgumentParser(prog="scripts/mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", default=MODULES,
                        help=f"paths relative to the repository (default: {' '.join(MODULES)})")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds after which a mutant's test run counts as caught (hung)")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--fail-under", type=float, default=None,
                        help="exit with status 1 if less than this percentage is caught")
    args = parser.parse_args(argv)
    mutants = [m for module in args.modules for m in find_mutants(module)]
    if args.list:
        for mutant in mutants:
            print(f"{mutant.module}: {mutant.description}")
        return 0
    started = time.monotonic()
    print(f"{len(mutants)} mutants in {len(args.modules)} modules, {args.jobs} at a time",
          file=sys.stderr, flush=True)
    share = report(args.modules, mutants, run(mutants, args.jobs, args.timeout))
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 1 if args.fail_under is not None and share < args.fail_under else 0


if __name__ == "__main__":
    sys.exit(main())
