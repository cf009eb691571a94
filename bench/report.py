"""Markdown from a run's results: `full` has every table, `summary` the short one for the README."""
from __future__ import annotations

from bench.forwarding import NO_CAPTURE

NOISE = ("Measured on a shared 2-core machine while other engineers ran labs and tests on it. "
         "Each lab has its own ovs-vswitchd (the bare-limit bridge runs in the machine's), but "
         "every ovs-vswitchd, iperf3 and the recorder share the two cores with whatever else runs, so these figures are noisy (tens of percent between runs): throughput (lab and bare "
         "limits), the highest forwarded rate and completeness at that rate, and the UDP "
         "with/without-capture ratios. Steadier: the TCP ratios, latency medians (p95s less so) and "
         "bring-up/tear-down times. Exact: flow counts and flows added.")

# Where the time goes, from profiling (py-spy) the code behind the figures; see bench/README.md.
NOTES: list[str] = [
    "Bring-up of 1000 VMs (26-40 s; cProfile of the lab process): 1-2 s namespace, Open vSwitch "
    "and controller; 4-5 s the Mininet host shells (8 at a time); 4-5 s the veth pairs (one ip "
    "-batch, one sysctl, ethtool per port); 1.6 s one ovs-vsctl transaction for every bridge and "
    "port; 5-6 s the VMs' set-up lines (one per VM, in its own shell, 32 at a time); the rest "
    "until every VM reaches its peer, nearly all the controller programming 25,200 flows at the "
    "pace Open vSwitch takes them. Tear-down: every shell hung up at once, the kernel deleting "
    "the VMs' namespaces and links in one batch; now and then ~10 s more in ovs-vswitchd's exit "
    "(the kernel in synchronize_rcu while it closes ~1,400 packet sockets).",
    "FlowMods: the controller's flow computation costs ~6 µs and the cookie digest ~2 µs per "
    "flow, but building and serializing os-ken's OFPFlowMod ~65 µs (cProfile): os-ken caps the "
    "controller at roughly 15k FlowMods/s of CPU; the rest of the reconcile time is Open "
    "vSwitch applying them (~300-400 a second on one connection, ~2,600-3,000 on 50). On small "
    "labs reconciling after a restart is dominated by the controller's own start (~0.5-1 s of "
    "Python imports) and Open vSwitch's reconnect backoff; on the 1000-VM lab by the FlowMods. "
    "Reading tables back (the audit) costs os-ken 80-150 µs a flow: at most 2,000 flows a "
    "second are read, 0.2-0.3 of a core on the idle 1000-VM lab.",
    "Capture cost: a capture doubles ovs-vswitchd's per-packet work (clone, encap, second "
    "output; its forwarding runs mostly on one thread, so it tops out near one core) and the "
    "analyzer's Python recorder takes 0.2-0.5 of a core at several hundred Mbit/s; on 2 cores "
    "they compete with each other and with iperf3. Copies lost at high rates never reached the "
    "analyzer's interface (recorded = at analyzer): they are lost in the datapath, not in the "
    "recorder.",
    "Under overload the copies are lost, not the monitored traffic: the vRouter pipeline sends "
    "each original before its copies, and the single-threaded userspace datapath handles a "
    "batch action by action, so when a queue overflows it is the later packets, the copies, "
    "that are dropped. At the highest rate with a remote analyzer, bv1's stream to bv2 keeps "
    "most of its rate while the analyzer gets few copies; at 50k pps copies to a remote analyzer "
    "are mostly complete. Before this order (results of 20261124-120132) the copies went first "
    "and the same run starved the monitored stream instead (bv2 received 1.2k of 285k packets).",
    "Completeness slightly above 100% at low rates (a few packets in a thousand) comes from "
    "the idle moments at the edges of the capture window, which the counters do not cover.",
]


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.1f} ms"


def _num(value, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3g}{suffix}" if abs(value) < 100 else f"{value:,.0f}{suffix}"
    return f"{value:,}{suffix}"


def _rate(run: dict) -> str:
    """A completeness run's target rate: 1k, 10k, 50k, max (N) or search N."""
    if run["rate_name"] == "max":
        return f"max ({_num(run['target_pps'])} pps)"
    if run["rate_name"] == "search":
        return f"search {_num(run['target_pps'])}"
    pps = run["target_pps"]
    return f"{pps // 1000}k" if pps % 1000 == 0 else _num(pps)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def machine_line(results: dict) -> str:
    """One line describing the machine and the code."""
    m = results["machine"]
    commit = m["git_commit"][:10] + (" (with uncommitted changes)" if m["git_dirty"] else "")
    return (f"{m['date']}, commit {commit}; {m['nproc']} CPUs ({m['cpu_model']}), "
            f"{m['memory_gib']} GiB, kernel {m['kernel']}, {m['ovs_version']}, {m['iperf3_version']}")


def _busy_line(results: dict) -> str:
    busy = results.get("busy", {})
    parts = []
    for when in ("start", "end"):
        if when in busy:
            parts.append(f"at the {when}: load average {busy[when]['loadavg'][0]}, "
                         f"{busy[when]['other_bridges']} OVS bridges of other labs")
    return "; ".join(parts)


# --- sections ------------------------------------------------------------------------------------

def capture_table(results: dict) -> str:
    c = results.get("capture")
    if not c:
        return ""
    rows = []
    for where in [key for key in c if isinstance(c[key], dict) and "start" in c[key]]:
        s = c[where]
        rows.append([f"{where} ({s['analyzer_compute']})", _ms(s["start"]["median"]), _ms(s["start"]["p95"]),
                     _ms(s["stop"]["median"]), _ms(s["stop"]["p95"]),
                     _ms(s["api_start_response"]["median"]), _ms(s["api_stop_response"]["median"]),
                     f"{s['start']['n']}" + (f" ({s['captures_without_copies']} without copies)"
                                             if s["captures_without_copies"] else "")])
    return ("### Capture start and stop latency\n\n"
            f"Traffic: {c['traffic']}. Start: POST /api/captures sent → first copy recorded; "
            "stop: DELETE sent → last copy recorded.\n\n"
            + _table(["analyzer", "start median", "start p95", "stop median", "stop p95",
                      "POST answered (median)", "DELETE answered (median)", "captures"], rows))


def completeness_table(results: dict) -> str:
    c = results.get("completeness")
    if not c:
        return ""
    rows = [[r["analyzer"], f"{r['frame_bytes']} B", _rate(r),
             _num(r["sender_pps"]), _num(r["receiver_pps"]), _num(r.get("peer_rx")),
             _num(r["monitored_packets"]),
             _num(r["analyzer_rx"]), _num(r["mirrored"]), _pct(r["delivered_to_analyzer"]),
             f"**{_pct(r['completeness'])}**", _num(r.get("ovs_vswitchd_cores")),
             _encapsulator_text(r.get("encapsulator"))]
            for r in c["runs"]]
    limits = ", ".join(f"{m['frame_bytes']}-byte frames {_num(m['forwarded_pps'])} pps "
                       f"(sender {_num(m['sent_pps'])} pps)" for m in c["max_forwarded"])
    return ("### Mirror completeness\n\n"
            f"Traffic: {c['traffic']}, {c['seconds_per_run']} s per run, capture direction "
            f"{c['direction']}. Highest rate the lab forwards without capture: {limits}.\n"
            "Monitored = packets bv1 sent + received (its interface counters); at analyzer = "
            "copies that reached the analyzer VM's interface; recorded = records in the pcap; "
            "peer got = what bv2's iperf3 read; peer rx = packets bv2's interface received "
            "(– : not measured by this run's version).\n\n"
            + "Encapsulator: copies it handled, and microseconds per copy receiving / building / "
            "sending (its own clock; the rest of a copy's cost is in Open vSwitch).\n\n"
            + _table(["destination", "frame", "target pps", "sent pps", "peer got pps", "peer rx", "monitored",
                      "at analyzer", "recorded", "reached analyzer", "completeness",
                      "ovs-vswitchd cores", "encapsulator"], rows)
            + _highest_complete_table(results))


def _highest_complete_text(entry: dict) -> str:
    """The highest complete rate of a destination and frame size, in words."""
    if entry["highest_complete_pps"] is None:
        return f"none (incomplete from {_num(entry['lowest_incomplete_pps'])} pps up)"
    if entry["lowest_incomplete_pps"] is None:
        return f"{_num(entry['highest_complete_pps'])} pps (every rate tried, up to the lab's highest)"
    return (f"{_num(entry['highest_complete_pps'])} pps "
            f"(incomplete at {_num(entry['lowest_incomplete_pps'])})")


def _highest_complete_table(results: dict) -> str:
    """The highest complete rate of each destination and frame size, with the bare limits'
    packet rates when the run measured them."""
    entries = results["completeness"].get("highest_complete")
    if not entries:
        return ""
    rows = [[e["analyzer"], f"{e['frame_bytes']} B", _highest_complete_text(e)] for e in entries]
    bare = results.get("bare_packet_rates") or {}
    limits = "; ".join(f"{name}: " + ", ".join(f"{frame}-byte frames {_num(r['forwarded_pps'])} pps"
                                               for frame, r in rates.items())
                       for name, rates in bare.items())
    return ("\n\n### Highest complete rate\n\nThe highest rate at which every copy was recorded "
            "and reached the analyzer (0 lost) while the monitored stream reached bv2 whole, searched by "
            "bisection (runs before 2026-11-25 13:20 did not require the stream)"
            + (f". Bare limits at the same frame sizes (as fast as the sender can): {limits}" if limits else "")
            + ".\n\n" + _table(["destination", "frame", "highest complete rate"], rows))


def _encapsulator_text(e: dict | None) -> str:
    """A completeness run's encapsulator figures, in a table cell."""
    if not e:
        return "–"
    return (f"{_num(e['copies'])} copies, {e['us_per_copy_receiving']} / "
            f"{e['us_per_copy_building']} / {e['us_per_copy_sending']} µs"
            + (f", {e['unknown_label']} unknown" if e["unknown_label"] else "")
            + (f", {e['send_errors']} send errors" if e["send_errors"] else ""))


def _forwarding(results: dict) -> dict | None:
    """The forwarding section of a run, if it has the figures by destination (runs before
    2026-11-25 09:00 measured one destination; their own Markdown shows them)."""
    f = results.get("forwarding")
    return f if f and "destinations" in f else None


def forwarding_table(results: dict) -> str:
    f, b = _forwarding(results), results.get("bare")
    out = ""
    if b:
        rows = [[name, _num(b[name]["tcp"]["mbps"]), _num(b[name]["udp"]["mbps"])] for name in b]
        out += ("### Bare limits (same run)\n\nveth: two namespaces on one veth pair; ovs: two "
                "namespaces on an OVS userspace bridge (datapath_type=netdev) with one NORMAL flow. "
                "Mbit/s, median.\n\n" + _table(["setup", "TCP Mbit/s", "UDP Mbit/s (1400 B)"], rows) + "\n")
    if f:
        destinations = list(f["destinations"])
        rows, cpu_rows = [], []
        for key, e in f["results"].items():
            none = e[NO_CAPTURE]
            rows.append([key.replace("_", " "), _num(none["mbps"]),
                         _num(none.get("over_veth")), _num(none.get("over_ovs"))]
                        + [f"{_num(e[w]['mbps'])} (×{_num(e[w]['over_no_capture'])})" for w in destinations])
            cpu_rows.append([key.replace("_", " ")]
                            + [" / ".join(_num(e[w]["cpu_cores"].get(name))
                                          for name in ("ovs_vswitchd", "encapsulator", "recorder"))
                               for w in (NO_CAPTURE, *destinations)])
        out += ("### Forwarding cost of a capture, by destination\n\n"
                f"iperf3, {f['seconds_per_run']} s × {f['repetitions']} (median); UDP -b 0 -l "
                f"{f['udp_payload']} (receiver's rate); capture: {f['capture']}, to each destination "
                f"of the completeness table. Same node = {f['pairs']['same_node']}, cross node = "
                f"{f['pairs']['cross_node']}. Each destination: Mbit/s (× the figure without a "
                "capture in the same run). NIC-assisted copies only what crosses the fabric: on "
                "one node it makes no copy.\n\n"
                + _table(["pair/protocol", "no capture Mbit/s", "no capture/veth", "no capture/ovs"]
                         + destinations, rows)
                + "\nCPU in cores (CPU seconds per second of the run, median): ovs-vswitchd / "
                  "mirror encapsulator / the receiving analyzer's recorder (– where none).\n\n"
                + _table(["pair/protocol", "no capture", *destinations], cpu_rows))
    return out


def scale_table(results: dict) -> str:
    s = results.get("scale")
    if not s:
        return ""
    rows = []
    for e in s:
        phases = (e.get("up") or {}).get("phases", {})
        up = e.get("up_seconds")
        # controller start (until [1/5]), fabric+vRouters, VMs, start+configure, then [4/5]
        # programming and [5/5] reachability together (the lab prints both at once)
        starts = [0.0] + [phases.get(str(i), {}).get("at") for i in range(1, 5)] + [up]
        spans = []
        for i in range(5):
            end = next((x for x in starts[i + 1:] if x is not None), None)
            spans.append(None if starts[i] is None or end is None else round(end - starts[i], 1))
        rows.append([e["vms"], e["computes"], _num(up, " s"), _num(e.get("down_seconds"), " s"),
                     _reachability(e.get("reachability")), _num(e.get("flows")),
                     _num(e.get("controller_rss_mib"), " MiB"), _num(e.get("controller_idle_cores")),
                     _num(e.get("lab_process_rss_mib"), " MiB"), _num(e.get("ovs_vswitchd_rss_mib"), " MiB"),
                     _num(e.get("memory_used_mib"), " MiB"), _open_files(e.get("open_files")),
                     " / ".join("–" if x is None else f"{x}" for x in spans),
                     e.get("error", "")[:80]])
    return ("### Lab scale\n\n`mirrorlab up` until every VM reaches its peers, `mirrorlab down`; "
            "reachability: a sample of same-network pairs on different compute nodes answered / pinged, "
            "and pairs of different networks that did not answer / pinged (one ping each, through "
            "`Lab.exec`); flows summed over the vRouters; resident memory of the controller, lab "
            "process and the lab's ovs-vswitchd, the controller's CPU on the idle lab (cores: its "
            "flow audit), the memory the machine lost while the lab ran (MemAvailable), open file "
            "descriptors / limit of the controller, lab process and ovs-vswitchd. "
            "Phases (s): controller start / fabric+vRouters / VMs / start+configure / programming+reachability.\n\n"
            + _table(["VMs", "compute nodes", "up", "down", "reachability", "flows", "controller RSS",
                      "controller idle", "lab RSS", "ovs-vswitchd RSS", "memory used", "open files",
                      "phases", "error"], rows))


def _reachability(r: dict | None) -> str:
    if not r:
        return "–"
    return (f"{r['reached']}/{r['pairs']}, isolated {r['isolated']}/{r['isolated_pairs']}"
            + (f" ({'; '.join(r['failures'][:3])})" if r["failures"] else ""))


def _open_files(files: dict | None) -> str:
    if not files:
        return "–"
    return ", ".join(f"{name} {f['open']}/{f['limit']}" for name, f in files.items() if f)


def controller_table(results: dict) -> str:
    c = results.get("controller")
    if not c:
        return ""
    if "error" in c:
        return f"### Controller\n\nfailed: {c['error']}\n"
    rows = []
    for key, label in (("one_vrouter", "one vRouter"), ("all_vrouters", "all vRouters")):
        r = c[key]
        rows.append([f"{label} ({r['vrouters']})", _num(r["flows_added"]), _num(r["controller_start_seconds"], " s"),
                     _num(r["reconnect_wait_seconds"], " s"), _num(r["reconcile_seconds"], " s"),
                     _num(r["total_seconds"], " s"), _num(r["flowmods_per_second"])])
    return (f"### Controller restart and reconciliation ({c['vms']}-VM lab)\n\n"
            "Controller stopped, `ovs-ofctl del-flows` on the vRouter(s), controller started; "
            "until their flow counts are back. Reconcile = vRouter reconnected → flows back; "
            "FlowMods/s = flows added / reconcile.\n\n"
            + _table(["vRouters emptied", "flows added", "controller start", "reconnect wait",
                      "reconcile", "total", "FlowMods/s"], rows))


def _soak_figures(s: dict) -> list[tuple[str, str]]:
    """(figure, value) pairs of a soak run, shared by its table and the summary."""
    api, flows, ping, rss = s["api_latency"], s["flows_after_churn"], s["ping"], s["controller_rss_kib"]
    aborts = len(s.get("log_emergencies") or [])
    leftover = ("–" if "error" in flows else
                f"{flows['leftover']} (active captures without flows: "
                f"{len(flows['captures_without_flows'])})")
    failed = {k: v for k, v in s["requests"].items() if k != "started"}
    return [
        ("ovs-vswitchd restarts / abort lines in its log", f"{s['restarts']} / {aborts}"),
        ("API latency, capture start (POST) p50 / p99",
         f"{_ms(api['start']['p50'])} / {_ms(api['start']['p99'])} ({api['start']['n']} requests)"),
        ("API latency, capture stop (DELETE) p50 / p99",
         f"{_ms(api['stop']['p50'])} / {_ms(api['stop']['p99'])} ({api['stop']['n']} requests)"),
        ("Operations/s (successful starts + stops)", _num(s["operations_per_second"])),
        ("Requests not succeeding", ", ".join(f"{k}: {v}" for k, v in failed.items()) or "0"),
        (f"Ping loss ({ping['what']})", f"{_pct(ping['loss'])} ({_num(ping['received'])} of "
                                        f"{_num(ping['transmitted'])} received)"),
        ("Leftover flows after the churn", leftover),
        ("Controller RSS before → after", f"{_num(_mib(rss['before']), ' MiB')} → "
                                          f"{_num(_mib(rss['after']), ' MiB')}"),
        ("Mirror check after the churn (copies recorded / expected)",
         f"{s['mirror_check'].get('recorded', '–')} / {s['mirror_check'].get('expected', '–')}"),
    ]


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


def soak_table(results: dict) -> str:
    s = results.get("soak")
    if not s:
        return ""
    return ("### Soak: capture churn and traffic\n\n"
            f"Lab {s['topology']}; {s['workers']} clients start and stop captures of random "
            f"interfaces and directions for {s['churn_seconds']} s, with ping {s['ping']['what']}; the "
            "lab's own ovs-vswitchd is watched (pid file and log). Leftover flows: flows whose "
            "cookie names a capture the API does not list as active.\n\n"
            + _table(["Figure", "Measured"], [list(row) for row in _soak_figures(s)]))


def _load_run(r: dict) -> str:
    """How a load run was driven: its clients, paced or not."""
    clients = f"{r['clients']} client{'s' if r['clients'] > 1 else ''}"
    offered = r.get("offered_per_second")
    return f"{clients}, {_num(offered)} ops/s offered" if offered else f"{clients}, unpaced"


def _exact(flows: dict) -> str:
    """Whether the flows were exact after a load run, or what was not."""
    if flows.get("exact"):
        return "exact flows afterwards"
    return (f"NOT exact afterwards ({flows.get('leftover')} leftover flows, "
            f"{flows.get('not_stopped_count')} captures not stopped, vRouters changed: "
            f"{', '.join(flows.get('vrouters_changed', {})) or 'none'})")


def load_table(results: dict) -> str:
    load = results.get("load")
    if not load:
        return ""
    rows = []
    for r in load["runs"]:
        api, cpu = r["latency"], r["cpu_cores"]
        rows.append([_load_run(r), f"{r['seconds']} s", f"**{_num(r['operations_per_second'])}**",
                     f"{_ms(api['start']['p50'])} / {_ms(api['start']['p99'])} / {_ms(api['start']['max'])}",
                     f"{_ms(api['stop']['p50'])} / {_ms(api['stop']['p99'])} / {_ms(api['stop']['max'])}",
                     f"**{_ms(api['all']['p99'])}**",
                     ", ".join(f"{k}: {v}" for k, v in r["refused"].items()) or "0",
                     " / ".join(_num(cpu.get(name)) for name in ("controller", "ovs_vswitchd", "clients")),
                     "yes" if r["flows"].get("exact") else _exact(r["flows"])])
    return ("### API load: concurrent capture start and stop\n\n"
            f"Lab {load['topology']}; each client starts a capture of its own interface slot "
            "(POST /api/captures) and stops it at once (DELETE), again and again, as fast as "
            "answered (unpaced) or paced so that all clients together offer the given rate; "
            "operations = successful starts + stops. Exact: afterwards no capture active, every "
            "started one stopped, every vRouter's flows as before the run. CPU in cores: "
            "controller / ovs-vswitchd / the clients.\n\n"
            + _table(["clients", "run", "operations/s", "start p50 / p99 / max", "stop p50 / p99 / max",
                      "p99 (all)", "refused", "CPU", "exact"], rows))


def _load_summary(load: dict) -> list[list[str]]:
    """The README's rows of a load run: unpaced runs one by one, paced ones together."""
    rows = []
    for r in load["runs"]:
        if r.get("offered_per_second"):
            continue
        api = r["latency"]
        rows.append([f"API load, {_load_run(r)}: capture start + stop operations/s, p50 / p99",
                     f"{_num(r['operations_per_second'])} ops/s; start {_ms(api['start']['p50'])} / "
                     f"{_ms(api['start']['p99'])}, stop {_ms(api['stop']['p50'])} / "
                     f"{_ms(api['stop']['p99'])}; {_exact(r['flows'])}"])
    paced = [r for r in load["runs"] if r.get("offered_per_second")]
    if paced:
        rows.append([f"API load, {paced[0]['clients']} clients paced: p99 at each offered rate",
                     "; ".join(f"{_num(r['offered_per_second'])} offered: {_num(r['operations_per_second'])} "
                               f"ops/s, p99 {_ms(r['latency']['all']['p99'])}" for r in paced)
                     + ("; exact flows after each" if all(r["flows"].get("exact") for r in paced)
                        else "; NOT exact after some")])
    return rows


def full(results: dict) -> str:
    """Every table of a run."""
    parts = [f"# mirrorlab benchmarks ({results['kind']} run)\n", machine_line(results) + ".\n",
             f"Machine activity {_busy_line(results)}.\n", NOISE + "\n"]
    if results.get("note"):  # what a run measured, when not simply its commit
        parts.insert(2, results["note"] + "\n")
    lab = results.get("mirror_lab")
    if lab:
        parts.append("Analyzer launch (POST /api/analyzers): "
                     + ", ".join(f"{k} {v} s" for k, v in lab["analyzer_launch_seconds"].items()) + ".\n")
    for render in (capture_table, completeness_table, forwarding_table, scale_table, controller_table,
                   soak_table, load_table):
        text = render(results)
        if text:
            parts.append(text)
    if results.get("errors"):
        parts.append("### Errors\n\n" + "\n".join(f"- {k}: {v}" for k, v in results["errors"].items()) + "\n")
    if NOTES:
        parts.append("### Notes\n\n" + "\n".join(f"- {n}" for n in NOTES) + "\n")
    return "\n".join(parts)


def summary(results: dict) -> str:
    """The short table for the README."""
    rows = []
    c = results.get("capture")
    if c:
        for label, key in (("Capture start latency (API request → first copy)", "start"),
                           ("Capture stop latency (API request → last copy)", "stop")):
            rows.append([label, "; ".join(f"{w} analyzer {_ms(c[w][key]['median'])} median, "
                                          f"{_ms(c[w][key]['p95'])} p95" for w in ("local", "remote"))])
    comp = results.get("completeness")
    if comp:
        for where in dict.fromkeys(r["analyzer"] for r in comp["runs"]):
            for frame in (64, 1400):
                runs = [r for r in comp["runs"] if r["analyzer"] == where and r["frame_bytes"] == frame]
                fixed = [r for r in runs if r["rate_name"] != "search"]
                highest = next((e for e in comp.get("highest_complete", [])
                                if e["analyzer"] == where and e["frame_bytes"] == frame), None)
                rows.append([f"Mirror completeness, {frame}-byte frames, {where}",
                             ", ".join(f"{_pct(r['completeness'])} at {_rate(r)}" for r in fixed)
                             + (f"; 100% up to {_highest_complete_text(highest)}" if highest else "")])
    f, b = _forwarding(results), results.get("bare")
    if b:
        rows.append(["Bare limits: veth pair / OVS netdev bridge",
                     f"TCP {_num(b['veth']['tcp']['mbps'])} / {_num(b['ovs']['tcp']['mbps'])} Mbit/s, "
                     f"UDP {_num(b['veth']['udp']['mbps'])} / {_num(b['ovs']['udp']['mbps'])} Mbit/s"])
    if f:
        for key, e in f["results"].items():
            pair, protocol = key.split("/")
            rows.append([f"{protocol.upper()} {pair.replace('_', ' ')}: a capture's cost (with / without)",
                         f"{_num(e[NO_CAPTURE]['mbps'])} Mbit/s without (×{_num(e[NO_CAPTURE].get('over_veth'))} "
                         f"of the bare veth pair); with a capture to "
                         + ", ".join(f"{w} ×{_num(e[w]['over_no_capture'])}" for w in f["destinations"])])
    s = results.get("scale")
    if s:
        rows.append(["Lab up / down (VMs on compute nodes)",
                     "; ".join(f"{e['vms']} on {e['computes']}: {_num(e.get('up_seconds'), ' s')} / "
                               f"{_num(e.get('down_seconds'), ' s')}" for e in s)])
        rows.append(["Flows / controller RSS",
                     "; ".join(f"{e['vms']} VMs: {_num(e.get('flows'))} / {_num(e.get('controller_rss_mib'), ' MiB')}"
                               for e in s)])
        largest = max(s, key=lambda e: e["vms"])
        if largest.get("reachability"):
            rows.append([f"{largest['vms']}-VM lab: reachability sample / memory / controller on the idle lab",
                         f"{_reachability(largest['reachability'])}; the machine's available memory "
                         f"{_num(largest.get('memory_used_mib'), ' MiB')} lower, ovs-vswitchd "
                         f"{_num(largest.get('ovs_vswitchd_rss_mib'), ' MiB')}, lab process "
                         f"{_num(largest.get('lab_process_rss_mib'), ' MiB')}; controller "
                         f"{_num(largest.get('controller_idle_cores'))} of a core"])
    ctl = results.get("controller")
    if ctl and "error" not in ctl:
        one, every = ctl["one_vrouter"], ctl["all_vrouters"]
        rows.append([f"Controller restart, {ctl['vms']}-VM lab: reconcile one vRouter / all {every['vrouters']}",
                     f"{_num(one['total_seconds'], ' s')} / {_num(every['total_seconds'], ' s')} in all "
                     f"(reconnect wait {_num(one['reconnect_wait_seconds'], ' s')} / "
                     f"{_num(every['reconnect_wait_seconds'], ' s')}); {_num(one['flows_added'])} / "
                     f"{_num(every['flows_added'])} flows in {_num(one['reconcile_seconds'], ' s')} / "
                     f"{_num(every['reconcile_seconds'], ' s')}"])
        rows.append(["Controller FlowMods/s (one / all vRouters)",
                     f"{_num(one['flowmods_per_second'])} / {_num(every['flowmods_per_second'])}"])
    soak = results.get("soak")
    if soak:
        rows += [[f"Soak ({soak['churn_seconds']} s): {figure[0].lower()}{figure[1:]}", value]
                 for figure, value in _soak_figures(soak)]
    load = results.get("load")
    if load:
        rows += _load_summary(load)
    return ("## Benchmarks\n\n"
            f"`scripts/bench` ({results['kind']} run): {machine_line(results)}; machine activity "
            f"{_busy_line(results)}. {NOISE} "
            "Details and method: bench/README.md.\n\n" + _table(["Figure", "Measured"], rows))
