"""`python -m bench.pcap_index [PACKETS]`: what the controller's pcap index costs on a large
capture file: the process's resident memory (RSS) before and after indexing, the time of the
first count (the first GET of a capture) and of reading the last page of packets.

It writes a synthetic pcap of PACKETS frames (default 2,000,000, about the 2.8 GB capture of
issue 8 in packet count) to a temporary directory and prints the figures; it never fails on a
number. Not part of `scripts/bench`, which runs labs.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from mirrorlab.controller.pcapfile import PcapIndex
from mirrorlab.pcap import PCAP_HEADER, record_bytes

FRAME = bytes(60)
BATCH = 10_000


def rss_mib() -> float:
    """This process's resident memory, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def write_pcap(path: Path, packets: int) -> None:
    """A pcap of `packets` 60-byte frames."""
    with open(path, "wb") as pcap:
        pcap.write(PCAP_HEADER)
        for start in range(0, packets, BATCH):
            pcap.write(b"".join(record_bytes(float(n), FRAME) for n in range(start, min(start + BATCH, packets))))


def main(argv: list[str] | None = None) -> int:
    """Measure and print."""
    args = sys.argv[1:] if argv is None else argv
    packets = int(args[0]) if args else 2_000_000
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "big.pcap"
        write_pcap(path, packets)
        index = PcapIndex()
        before = rss_mib()
        started = time.perf_counter()
        counted = index.count(path)
        first_count = time.perf_counter() - started
        after = rss_mib()
        started = time.perf_counter()
        records, _total = index.records(path, packets - 200, 200)
        last_page = time.perf_counter() - started
        print(f"{counted[0]:,} packets, {path.stat().st_size / 2**20:.0f} MiB file")
        print(f"RSS before indexing {before:.1f} MiB, after {after:.1f} MiB (+{after - before:.1f} MiB)")
        print(f"first count {first_count:.2f} s; last page of {len(records)} packets {last_page * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
