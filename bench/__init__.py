"""mirrorlab benchmarks: capture latency, mirror completeness, forwarding cost, lab scale and
controller reconciliation, measured side by side in one run and written to bench/results/.

Run them with `scripts/bench` (see bench/README.md). These are measurements, not tests: a
benchmark reports its figures and never fails on a number; a section that breaks is reported
with its error and the run goes on.
"""
