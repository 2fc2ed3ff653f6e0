"""Numbers from the benchmark's raw results: percentiles, the table, the JSON and the plot."""

from __future__ import annotations

import argparse
import itertools
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import Result


@dataclass
class Block:
    results: list[Result]
    seconds: float
    cpu_seconds: float = 0.0


@dataclass
class Level:
    concurrency: int
    direct: list[Block] = field(default_factory=list)
    gateway: list[Block] = field(default_factory=list)
    bare: list[Block] = field(default_factory=list)  # the bare-relay floor, when measured
    conversation: list[Block] = field(default_factory=list)  # through the gateway, each client on a conversation
    peak_rss_mb: float = 0.0


@dataclass
class Summary:
    concurrency: int
    streams: int
    direct_ttft_ms: dict[str, float]
    gateway_ttft_ms: dict[str, float]
    added_ttft_p50_ms: float
    added_ttft_p99_ms: float
    direct_gap_p99_ms: float
    gateway_gap_p99_ms: float
    total_time_ratio: float
    streams_per_second: float
    errors_direct: int
    errors_gateway: int
    cpu_ms_per_stream: float
    cpu_us_per_chunk: float
    peak_rss_mb: float
    bare_added_ttft_p50_ms: float | None = None
    bare_added_ttft_p99_ms: float | None = None
    conversation_added_ttft_p50_ms: float | None = None
    conversation_added_ttft_p99_ms: float | None = None
    errors_conversation: int | None = None
    conversation_cpu_ms_per_stream: float | None = None

    def line(self) -> str:
        g = self.gateway_ttft_ms
        return (
            f"{self.concurrency:>5} {self.streams:>6} {g['p50']:>8.2f} {g['p90']:>8.2f} {g['p99']:>8.2f} "
            f"{self.added_ttft_p50_ms:>+9.2f} {self.added_ttft_p99_ms:>+9.2f} {self.gateway_gap_p99_ms:>8.2f} "
            f"{self.total_time_ratio:>7.3f} {self.streams_per_second:>8.1f} "
            f"{self.errors_direct:>4}/{self.errors_gateway:<4} "
            f"{self.cpu_ms_per_stream:>8.2f} {self.cpu_us_per_chunk:>8.1f} {self.peak_rss_mb:>7.1f}"
            + (
                f"   bare relay: {self.bare_added_ttft_p50_ms:+.2f} / {self.bare_added_ttft_p99_ms:+.2f}"
                if self.bare_added_ttft_p50_ms is not None and self.bare_added_ttft_p99_ms is not None
                else ""
            )
            + (
                f"   with conversation_id: {self.conversation_added_ttft_p50_ms:+.2f} / "
                f"{self.conversation_added_ttft_p99_ms:+.2f}, {self.errors_conversation} errors, "
                f"{self.conversation_cpu_ms_per_stream:.2f} cpu ms/st"
                if self.conversation_added_ttft_p50_ms is not None and self.conversation_added_ttft_p99_ms is not None
                else ""
            )
        )


HEADER = (
    "conc. streams  TTFT p50   p90      p99   added p50 added p99  gap p99  total x  streams/s err d/g "
    "cpu ms/st µs/chunk RSS MB\n" + "-" * 132
)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ttfts(blocks: list[Block]) -> list[float]:
    return [r.ttft * 1000 for b in blocks for r in b.results if r.ok and r.tokens]


def gaps(blocks: list[Block]) -> list[float]:
    return [
        (later - earlier) * 1000
        for b in blocks
        for r in b.results
        if r.ok
        for earlier, later in itertools.pairwise(r.tokens)
    ]


def summarize(level: Level, tokens: int) -> Summary:
    direct, gateway = ttfts(level.direct), ttfts(level.gateway)
    spread = {f"p{q}": percentile(gateway, q) for q in (50, 90, 99)}
    streams = sum(len(b.results) for b in level.gateway)
    ok_direct = [r.total for b in level.direct for r in b.results if r.ok]
    ok_gateway = [r.total for b in level.gateway for r in b.results if r.ok]
    cpu = sum(b.cpu_seconds for b in level.gateway)
    return Summary(
        concurrency=level.concurrency,
        streams=streams,
        direct_ttft_ms={f"p{q}": percentile(direct, q) for q in (50, 90, 99)},
        gateway_ttft_ms=spread,
        added_ttft_p50_ms=percentile(gateway, 50) - percentile(direct, 50),
        added_ttft_p99_ms=percentile(gateway, 99) - percentile(direct, 99),
        direct_gap_p99_ms=percentile(gaps(level.direct), 99),
        gateway_gap_p99_ms=percentile(gaps(level.gateway), 99),
        total_time_ratio=(sum(ok_gateway) / len(ok_gateway)) / (sum(ok_direct) / len(ok_direct))
        if ok_gateway and ok_direct
        else float("nan"),
        streams_per_second=streams / sum(b.seconds for b in level.gateway),
        errors_direct=sum(not r.ok for b in level.direct for r in b.results),
        errors_gateway=sum(not r.ok for b in level.gateway for r in b.results),
        cpu_ms_per_stream=cpu * 1000 / streams,
        cpu_us_per_chunk=cpu * 1e6 / (streams * tokens),
        peak_rss_mb=level.peak_rss_mb,
        bare_added_ttft_p50_ms=percentile(ttfts(level.bare), 50) - percentile(direct, 50) if level.bare else None,
        bare_added_ttft_p99_ms=percentile(ttfts(level.bare), 99) - percentile(direct, 99) if level.bare else None,
        **conversation_fields(level, direct),
    )


def conversation_fields(level: Level, direct: list[float]) -> dict[str, Any]:
    """The row with a conversation_id, when measured: its added TTFT against the same direct path."""
    if not level.conversation:
        return {}
    with_conversation = ttfts(level.conversation)
    streams = sum(len(b.results) for b in level.conversation)
    return {
        "conversation_cpu_ms_per_stream": sum(b.cpu_seconds for b in level.conversation) * 1000 / streams,
        "conversation_added_ttft_p50_ms": percentile(with_conversation, 50) - percentile(direct, 50),
        "conversation_added_ttft_p99_ms": percentile(with_conversation, 99) - percentile(direct, 99),
        "errors_conversation": sum(not r.ok for b in level.conversation for r in b.results),
    }


def write_outputs(args: argparse.Namespace, levels: list[Level]) -> None:
    summaries = [summarize(level, args.tokens) for level in levels]
    print("\n" + HEADER)
    for summary in summaries:
        print(summary.line())
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"{args.transport}-w{args.workers}"
    report = {
        "machine": {
            "cores": __import__("os").cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "levels": [asdict(s) for s in summaries],
        "errors": sorted({r.error for lv in levels for b in lv.gateway + lv.direct for r in b.results if r.error})[:20],
    }
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(summaries, args.out / f"{name}.png", f"added TTFT through the gateway ({name})")
    print(f"\nwrote {args.out / (name + '.json')} and {args.out / (name + '.png')}")


def plot(summaries: list[Summary], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [s.concurrency for s in summaries]
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    axes.plot(x, [s.added_ttft_p50_ms for s in summaries], marker="o", label="added TTFT p50")
    axes.plot(x, [s.added_ttft_p99_ms for s in summaries], marker="s", label="added TTFT p99")
    floor_p50 = [s.bare_added_ttft_p50_ms for s in summaries if s.bare_added_ttft_p50_ms is not None]
    floor_p99 = [s.bare_added_ttft_p99_ms for s in summaries if s.bare_added_ttft_p99_ms is not None]
    if len(floor_p50) == len(floor_p99) == len(summaries):
        axes.plot(x, floor_p50, linestyle="--", label="bare relay p50 (floor)")
        axes.plot(x, floor_p99, linestyle=":", label="bare relay p99 (floor)")
    axes.set_xscale("log")
    axes.set_yscale("symlog", linthresh=1)
    lowest = min(s.added_ttft_p50_ms for s in summaries)
    axes.set_ylim(bottom=min(-0.5, lowest * 1.5))
    axes.set_xlabel("concurrent streams")
    axes.set_ylabel("milliseconds added to time to first token")
    axes.set_title(title)
    axes.axhline(0, color="grey", linewidth=0.6)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
