"""`python -m bench` (or `scripts/bench`): run the benchmarks and write the results.

    scripts/bench                 the full run: every figure, labs of 10, 50, 100, 250 and 1000 VMs
    scripts/bench --quick         fewer repetitions, shorter streams, labs of 10 and 50 VMs only
    scripts/bench --only capture,forwarding
    scripts/bench --only scale --scale-sizes 1000:50    (only the lab of 1000 VMs on 50 nodes)
    scripts/bench --only soak --soak-seconds 120
    scripts/bench --only load --load-clients 30 --load-seconds 20
    scripts/bench --render bench/results/latest.json    (rewrite the Markdown of a run's JSON)

Results go to bench/results/: DATE[-quick].json (every figure), DATE[-quick].md (every table)
and, for a full run, latest.json and latest.md (the short summary for the README).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import signal
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from bench import (
    bare, capture, completeness, forwarding, load, machine, mirror_lab, report, scale, soak,
)
from bench.common import REPO, STATE_DIR, down_leftover_lab, log, running_lab

SECTIONS = ("bare", "capture", "completeness", "forwarding", "scale", "soak", "load")
RESULTS = REPO / "bench" / "results"

# Sizes of a full and a quick run.
FULL = {"capture_repetitions": 25, "completeness_seconds": 3, "completeness_search_steps": 5,
        "forwarding_seconds": 5,
        "forwarding_repetitions": 3, "sizes": scale.SIZES, "controller_size": 1000,
        "soak_seconds": 180, "load_seconds": 20, "load_clients": 30,
        "load_rates": list(load.OFFERED_RATES)}
QUICK = {"capture_repetitions": 5, "completeness_seconds": 1, "completeness_search_steps": 2,
         "forwarding_seconds": 2,
         "forwarding_repetitions": 1, "sizes": scale.QUICK_SIZES, "controller_size": 50,
         "soak_seconds": 30, "load_seconds": 6, "load_clients": 30, "load_rates": [300, 600]}


def _interrupted(_signum, _frame):
    raise KeyboardInterrupt  # so that every lab and namespace is taken down on the way out


class Run:
    """One benchmark run: its settings, its results so far, and where they are written."""

    def __init__(self, quick: bool, sections: list[str], output: Path, **overrides):
        self.settings = {**(QUICK if quick else FULL)}
        self.settings.update({k: v for k, v in overrides.items() if v is not None})
        self.quick = quick
        self.sections = sections
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.base = output / (stamp + ("-quick" if quick else ""))
        self.output = output
        self.results = {"kind": "quick" if quick else "full", "sections": sections,
                        "settings": {k: v for k, v in self.settings.items()},
                        "machine": machine.describe(), "busy": {"start": machine.busy()},
                        "errors": {}}

    def section(self, name: str, function, *args):
        """Run one benchmark; keep its result, or its error, and write what we have."""
        log(f"--- {name}")
        started = time.monotonic()
        try:
            value = function(*args)
            self.results[name] = value
            return value
        except KeyboardInterrupt:
            raise
        except Exception as err:
            log(f"{name} failed: {err}")
            self.results["errors"][name] = f"{type(err).__name__}: {err}"[-3000:]
            traceback.print_exc()
            return None
        finally:
            self.results.setdefault("durations", {})[name] = round(time.monotonic() - started, 1)
            self.write()

    def write(self, final: bool = False) -> None:
        """Write the JSON and Markdown files (and latest.* at the end of a full run)."""
        self.output.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.results, indent=2)
        self.base.with_suffix(".json").write_text(text + "\n")
        self.base.with_suffix(".md").write_text(report.full(self.results))
        if final and not self.quick and self.sections == list(SECTIONS):
            (self.output / "latest.json").write_text(text + "\n")
            (self.output / "latest.md").write_text(report.summary(self.results))


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; exit 0 unless the run itself could not be made."""
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions, shorter streams, only the 10 and 50 VM labs")
    parser.add_argument("--only", help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--soak-seconds", type=float, metavar="N",
                        help=f"how long the soak churns (full run {FULL['soak_seconds']}, "
                             f"quick {QUICK['soak_seconds']})")
    parser.add_argument("--scale-sizes", type=_sizes, metavar="VMS:NODES,...",
                        help="the labs the scale section brings up (full run "
                             + ",".join(f"{v}:{c}" for v, c in FULL["sizes"]) + ")")
    parser.add_argument("--load-seconds", type=float, metavar="N",
                        help=f"how long the concurrent clients of the load run (full run "
                             f"{FULL['load_seconds']}, quick {QUICK['load_seconds']})")
    parser.add_argument("--load-clients", type=int, metavar="N",
                        help=f"concurrent clients of the load ({FULL['load_clients']})")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="measure nothing: rewrite the Markdown of a run's JSON file")
    args = parser.parse_args(argv)
    if args.render:
        return render(args.render)
    sections = args.only.split(",") if args.only else list(SECTIONS)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}")
    sections = [s for s in SECTIONS if s in sections]

    signal.signal(signal.SIGTERM, _interrupted)
    STATE_DIR.parent.mkdir(parents=True, exist_ok=True)
    lock = open(f"{STATE_DIR}.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"scripts/bench: another benchmark run holds {STATE_DIR}.lock", file=sys.stderr)
        return 1

    for option, value in (("--soak-seconds", args.soak_seconds),
                          ("--load-seconds", args.load_seconds), ("--load-clients", args.load_clients)):
        if value is not None and value <= 0:
            parser.error(f"{option} must be positive")
    run = Run(args.quick, sections, args.output, soak_seconds=args.soak_seconds,
              load_seconds=args.load_seconds, load_clients=args.load_clients,
              sizes=args.scale_sizes)
    settings = run.settings
    log(f"{run.results['kind']} run of {', '.join(sections)}; results in {run.base}.json/.md")
    try:
        with tempfile.TemporaryDirectory(prefix="mirrorlab-bench-") as workdir:
            workdir = Path(workdir)
            bare_limits = None
            if "bare" in sections:
                def measure_bare():
                    with bare.bare_setups() as setups:
                        run.results["bare_packet_rates"] = completeness.bare_packet_rates(
                            setups, settings["completeness_seconds"])
                        return forwarding.measure_bare(setups, settings["forwarding_seconds"],
                                                       settings["forwarding_repetitions"])
                bare_limits = run.section("bare", measure_bare)
            if {"capture", "completeness", "forwarding"} & set(sections):
                _mirror_sections(run, workdir, bare_limits)
            if "scale" in sections:
                def measure_scale():
                    entries, controller = scale.measure(workdir, settings["sizes"],
                                                        settings["controller_size"])
                    run.results["controller"] = controller
                    return entries
                run.section("scale", measure_scale)
            if "soak" in sections:
                run.section("soak", soak.measure, settings["soak_seconds"])
            if "load" in sections:
                run.section("load", load.measure, settings["load_seconds"], settings["load_clients"],
                            settings["load_rates"])
    except KeyboardInterrupt:
        log("interrupted; labs were taken down")
        run.results["errors"]["run"] = "interrupted"
        return 130
    finally:
        down_leftover_lab()
        run.results["busy"]["end"] = machine.busy()
        run.write(final=True)
        log(f"results: {run.base}.json and {run.base}.md")
    return 0


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    """--scale-sizes: "1000:50,250:25" -> ((1000, 50), (250, 25))."""
    try:
        sizes = tuple((int(vms), int(nodes)) for vms, nodes in
                      (size.split(":") for size in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected VMS:NODES[,VMS:NODES...], "
                                         f"for example 1000:50") from None
    if any(vms < 1 or nodes < 1 for vms, nodes in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be positive")
    return sizes


def render(path: Path) -> int:
    """Rewrite the Markdown beside a run's JSON (latest.json: latest.md, the summary)."""
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        print(f"scripts/bench: cannot read the run {path}: {err}", file=sys.stderr)
        return 1
    if path.name == "latest.json":
        path.with_suffix(".md").write_text(report.summary(results))
    else:
        path.with_suffix(".md").write_text(report.full(results))
    print(f"wrote {path.with_suffix('.md')}")
    return 0


def _mirror_sections(run: Run, workdir: Path, bare_limits: dict | None) -> None:
    """Capture latency, completeness and forwarding cost, on one lab."""
    settings = run.settings
    lab_report: dict = {}
    try:
        with running_lab(mirror_lab.write_topology(workdir), lab_report) as lab:
            mirror = mirror_lab.prepare(lab)
            run.results["mirror_lab"] = {"topology": mirror_lab.TOPOLOGY,
                                         "analyzer_launch_seconds": mirror.launch_seconds,
                                         "lab": lab_report}  # up/down times, filled in by running_lab
            if "capture" in run.sections:
                run.section("capture", capture.measure, mirror, settings["capture_repetitions"])
            if "completeness" in run.sections:
                run.section("completeness", completeness.measure, mirror,
                            settings["completeness_seconds"], completeness.FIXED_RATES,
                            settings["completeness_search_steps"])
            if "forwarding" in run.sections:
                run.section("forwarding", forwarding.measure, mirror, settings["forwarding_seconds"],
                            settings["forwarding_repetitions"], bare_limits)
    except KeyboardInterrupt:
        raise
    except Exception as err:
        log(f"mirroring lab failed: {err}")
        run.results["errors"]["mirror_lab"] = f"{type(err).__name__}: {err}"[-3000:]


if __name__ == "__main__":
    sys.exit(main())
