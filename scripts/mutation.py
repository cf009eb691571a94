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
caught per module and every survivor with its line.
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

    def __init__(self, module: str, skipped: set[str]):
        self.module = module
        self.skipped = skipped
        self.mutants: list[Mutant] = []

    def _add(self, node: ast.AST, replacement: ast.AST | str, description: str) -> None:
        text = replacement if isinstance(replacement, str) else f"({ast.unparse(replacement)})"
        self.mutants.append(Mutant(self.module, (node.lineno, node.col_offset),
                                   (node.end_lineno, node.end_col_offset), text,
                                   f"line {node.lineno}: {description}"))

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
    tree = ast.parse((REPO / module).read_text())
    finder = _Finder(module, SKIPPED_FUNCTIONS.get(module, set()))
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
    """Print the score per module and every survivor; return the overall share caught."""
    caught_all = 0
    for module in modules:
        mine = [m for m in mutants if m.module == module]
        caught = sum(outcomes[m] != "survived" for m in mine)
        caught_all += caught
        share = 100.0 * caught / len(mine) if mine else 100.0
        print(f"{module}: {caught}/{len(mine)} caught ({share:.1f}%)")
        for mutant in mine:
            if outcomes[mutant] == "survived":
                print(f"    survived  {mutant.description}")
    total = len(mutants)
    share = 100.0 * caught_all / total if total else 100.0
    print(f"all: {caught_all}/{total} caught ({share:.1f}%)")
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
