"""python -m bench [SCENARIO ...] [--runtime embedded|kafka|both] [--events N] [--out FILE]
       [--against REV [--rounds N]]

Without a scenario, all but `soak` run (about 4 minutes); `python -m bench soak` runs for
--minutes on each runtime. With `--against REV`, the scenarios run on this tree and on REV in
turns, and each figure is printed for both with their ratio (`bench/ab.py`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from . import ab, backfill, inprocess, memory, projection, scenarios, soak, ui
from .machine import ROOT, describe

SCENARIOS = (
    "latency",
    "chain10",
    "fanout",
    "throughput",
    "scaling",
    "state",
    "memory",
    "failover",
    "ui",
    "backfill",
    "projection",
    "inprocess",
)
ONLY_BY_NAME = ("soak",)  # minutes long: not part of a default run


def start_broker(folder: Path) -> str:
    up = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "kafka_broker.py"), "up", "--dir", str(folder)],
        capture_output=True,
        text=True,
    )
    if up.returncode != 0:
        sys.exit(f"bench: could not start Kafka: {up.stderr.strip()}")
    return up.stdout.strip()


async def run(
    names: list[str], runtimes: list[str], args: argparse.Namespace, bootstrap: str | None
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        for runtime in runtimes:
            print(f"bench: {name} on {runtime} ...", file=sys.stderr, flush=True)
            if name == "latency":
                figures = await scenarios.trigger_latency(
                    runtime, events=args.events, warmup=args.warmup, bootstrap=bootstrap
                )
            elif name == "chain10":
                figures = await scenarios.chain10(
                    runtime,
                    runs=max(10, args.events // 20),
                    warmup=args.warmup // 20 + 1,
                    bootstrap=bootstrap,
                )
            elif name == "fanout":
                figures = await scenarios.fanout(
                    runtime, runs=max(3, args.events // 200), warmup=1, bootstrap=bootstrap
                )
            elif name == "soak":
                figures = await soak.soak(
                    runtime,
                    minutes=args.minutes,
                    rate=args.rate,
                    sample_s=args.sample_s,
                    partitions=None if args.new_partitions else args.partitions,
                    bootstrap=bootstrap,
                )
            elif name == "failover":
                if runtime != "kafka":
                    continue  # a Kafka worker's transactions
                assert bootstrap is not None
                for session_ms in args.session_timeouts_ms:
                    results[
                        f"failover/kafka/{session_ms // 1000}s"
                    ] = await scenarios.worker_failover(
                        kills=args.kills, session_timeout_ms=session_ms, bootstrap=bootstrap
                    )
                continue
            elif name == "ui":
                if runtime != "embedded":
                    continue  # the same pages over the same history queries on either runtime
                figures = await ui.ui_pages(
                    runs=args.ui_runs, loads=args.loads, chromium=args.chromium or None
                )
            elif name == "projection":
                if runtime != "embedded":
                    continue  # the embedded event log into the history
                figures = await projection.projection(runs=args.events * 2)
            elif name == "inprocess":
                if runtime != "embedded":
                    continue  # the embedded runtime in this process
                figures = await inprocess.inprocess(events=args.events * 2)
            elif name == "memory":
                if runtime != "embedded":
                    continue  # the engine's states in this process, the same on either runtime
                figures = await memory.memory(states=args.states)
            elif name == "backfill":
                results[f"backfill/planning/{runtime}"] = backfill.planning_rate(args.backfill)
                figures = await backfill.backfill(
                    runtime,
                    partitions=args.backfill,
                    max_active=args.backfill_active,
                    bootstrap=bootstrap,
                )
            elif name == "scaling":
                if runtime != "kafka":
                    continue  # one process by design
                assert bootstrap is not None
                figures = await scenarios.scaling(
                    events=args.events * 2, bootstrap=bootstrap, rounds=args.scaling_rounds
                )
            elif name == "throughput":
                figures = await scenarios.throughput(
                    runtime,
                    events=args.events * 2,
                    bootstrap=bootstrap,
                    profile=args.profile and args.profile.with_suffix(f".{runtime}.txt"),
                )
            else:
                figures = await scenarios.state_scale(
                    runtime, states=args.states, bootstrap=bootstrap
                )
            results[f"{name}/{runtime}"] = figures
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{'scenario':<22} {'measure':<22} {'n':>5} {'p50':>9} {'p95':>9} {'p99':>9} {'max':>9}"
    ]
    for key, figures in results.items():
        for measure, value in figures.items():
            if isinstance(value, dict) and "p50" in value:
                lines.append(
                    f"{key:<22} {measure:<22} {value['n']:>5} {value['p50']:>9.2f} "
                    f"{value['p95']:>9.2f} {value['p99']:>9.2f} {value['max']:>9.2f}"
                )
            elif isinstance(value, dict):
                lines.append(
                    f"{key:<22} {measure:<22} " + " ".join(f"{k}={v}" for k, v in value.items())
                )
            elif isinstance(value, list):
                lines.append(f"{key:<22} {measure:<22} {len(value)} (in the JSON)")
            else:
                lines.append(f"{key:<22} {measure:<22} {value}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, *ONLY_BY_NAME, []], default=[])
    parser.add_argument("--runtime", choices=["embedded", "kafka", "both"], default="both")
    parser.add_argument("--events", type=int, default=1000, help="measured events (latency)")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="profile the coordinator during `throughput` with pyinstrument: FILE.RUNTIME.txt "
        "(flat), .tree.txt (call tree), .pyisession (the samples)",
    )
    parser.add_argument(
        "--states",
        type=int,
        default=1_000_000,
        help="(pipeline, partition) states (state, memory)",
    )
    soaking = parser.add_argument_group("soak")
    soaking.add_argument("--minutes", type=float, default=10.0, help="how long to publish")
    soaking.add_argument(
        "--rate", type=float, default=50.0, help="external events per second, on a fixed schedule"
    )
    soaking.add_argument(
        "--partitions", type=int, default=100, help="partitions the events cycle through"
    )
    soaking.add_argument(
        "--new-partitions", action="store_true", help="a new partition per event instead"
    )
    soaking.add_argument(
        "--sample-s", type=float, default=5.0, help="seconds between samples of memory and lag"
    )
    parser.add_argument(
        "--scaling-rounds",
        type=int,
        default=2,
        help="throughput runs with one and with two coordinators, in turns (scaling)",
    )
    parser.add_argument(
        "--kills", type=int, default=10, help="workers SIGKILLed inside a transaction (failover)"
    )
    parser.add_argument(
        "--session-timeouts-ms",
        type=int,
        nargs="+",
        default=[2000, 10000],
        help="consumer-group session timeouts to run failover with",
    )
    pages = parser.add_argument_group("ui")
    pages.add_argument(
        "--ui-runs", type=int, default=1000, help="runs, one per partition, of the pipeline (ui)"
    )
    pages.add_argument("--loads", type=int, default=20, help="timed loads of each page (ui)")
    pages.add_argument(
        "--chromium",
        default=os.environ.get("EVENTFLOW_CHROMIUM") or shutil.which("chromium") or "",
        help="the browser for the pages' load times ('' to leave them out)",
    )
    backfills = parser.add_argument_group("backfill")
    backfills.add_argument("--backfill", type=int, default=10_000, help="partitions backfilled")
    backfills.add_argument(
        "--backfill-active", type=int, default=64, help="its max_active and worker concurrency"
    )
    parser.add_argument(
        "--against",
        metavar="REV",
        help="also run the scenarios on this git revision, in turns, and print the ratios",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each side with --against, alternating"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where the JSON goes (bench/results/latest.json, or ab-REV.json with --against)",
    )
    args = parser.parse_args()
    names = args.scenarios or list(SCENARIOS)
    runtimes = ["embedded", "kafka"] if args.runtime == "both" else [args.runtime]
    sys.path.insert(0, str(ROOT / "scripts"))
    from kafka_broker import KAFKA_VERSION

    machine = describe(KAFKA_VERSION if "kafka" in runtimes else None)
    print(
        f"{machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, Python "
        f"{machine['python']}, Kafka {machine['kafka']}, commit {machine['commit']}",
        flush=True,
    )
    broker_dir = Path(tempfile.mkdtemp(prefix="bench-kafka-")) / "kafka"
    bootstrap = args.bootstrap
    if "kafka" in runtimes and not bootstrap:
        bootstrap = start_broker(broker_dir)  # with --against, one broker serves both sides
    try:
        if args.against:
            compared(args, names, bootstrap)
            return
        results = asyncio.run(run(names, runtimes, args, bootstrap))
    finally:
        if "kafka" in runtimes and not args.bootstrap:
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "scripts" / "kafka_broker.py"),
                    "down",
                    "--dir",
                    str(broker_dir),
                ],
                capture_output=True,
            )
    report = {
        "machine": machine,
        "settings": {"events": args.events, "warmup": args.warmup},
        "results": results,
    }
    out = args.out or ROOT / "bench" / "results" / "latest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(table(results))
    print(f"written to {out}")


def compared(args: argparse.Namespace, names: list[str], bootstrap: str | None) -> None:
    """`--against REV`: both sides in turns; the combined report with the ratios."""
    try:
        report = ab.against(args.against, names, sys.argv[1:], args.rounds, bootstrap)
    except ab.Refused as e:
        sys.exit(f"bench: {e}")
    out = args.out or ROOT / "bench" / "results" / f"ab-{report['against']['commit'][:10]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(ab.summary(report))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
