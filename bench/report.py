"""Numbers from the benchmark's raw results: percentiles, the table, the JSON and the plot."""

from __future__ import annotations

import argparse
import itertools
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.loadgen import Result


@dataclass
class Block:
    results: list[Result]
    seconds: float
    cpu_seconds: float = 0.0


DIRECT, RELAY = "direct", "bare relay"


@dataclass
class Level:
    concurrency: int
    blocks: dict[str, list[Block]] = field(default_factory=dict)  # by target: direct, the relay, each gateway
    whole: dict[str, list[Block]] = field(default_factory=dict)  # non-streamed requests, one at a time
    peak_rss_mb: dict[str, float] = field(default_factory=dict)


@dataclass
class Row:
    """One target at one concurrency, against the direct path measured in the same rounds."""

    concurrency: int
    target: str
    streams: int
    ttft_ms: dict[str, float]
    added_ttft_p50_ms: float
    added_ttft_p99_ms: float
    gap_p99_ms: float
    total_time_ratio: float
    errors: int
    cpu_ms_per_stream: float | None
    cpu_us_per_chunk: float | None
    peak_rss_mb: float | None
    whole_added_p50_ms: float | None = None  # a non-streamed request's added time to its whole answer
    whole_added_p99_ms: float | None = None

    def line(self) -> str:
        def number(value: float | None, spec: str) -> str:
            return "-" if value is None else format(value, spec)

        t = self.ttft_ms
        return (
            f"{self.concurrency:>5} {self.target:<32} {self.streams:>6} {t['p50']:>8.2f} {t['p99']:>8.2f} "
            f"{self.added_ttft_p50_ms:>+9.2f} {self.added_ttft_p99_ms:>+9.2f} {self.gap_p99_ms:>8.2f} "
            f"{self.total_time_ratio:>7.3f} {self.errors:>4} {number(self.cpu_ms_per_stream, '.2f'):>9} "
            f"{number(self.cpu_us_per_chunk, '.1f'):>8} {number(self.peak_rss_mb, '.1f'):>7}"
            + (
                f"   whole: {self.whole_added_p50_ms:+.2f} / {self.whole_added_p99_ms:+.2f}"
                if self.whole_added_p50_ms is not None and self.whole_added_p99_ms is not None
                else ""
            )
        )


HEADER = (
    "conc. target                           streams TTFT p50      p99 added p50 added p99  gap p99 total x  err "
    "cpu ms/st µs/chunk  RSS MB   whole: added p50 / p99\n" + "-" * 150
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


def rows(level: Level, tokens: int) -> list[Row]:
    direct = level.blocks[DIRECT]
    direct_ttfts = ttfts(direct)
    direct_totals = [r.total for b in direct for r in b.results if r.ok]
    direct_whole = totals(level.whole.get(DIRECT, []))
    out = []
    for target, blocks in level.blocks.items():
        values = ttfts(blocks)
        streams = sum(len(b.results) for b in blocks)
        ok_totals = [r.total for b in blocks for r in b.results if r.ok]
        measured = target != DIRECT
        cpu = sum(b.cpu_seconds for b in blocks)
        whole = totals(level.whole.get(target, []))
        out.append(
            Row(
                concurrency=level.concurrency,
                target=target,
                streams=streams,
                ttft_ms={f"p{q}": percentile(values, q) for q in (50, 90, 99)},
                added_ttft_p50_ms=percentile(values, 50) - percentile(direct_ttfts, 50),
                added_ttft_p99_ms=percentile(values, 99) - percentile(direct_ttfts, 99),
                gap_p99_ms=percentile(gaps(blocks), 99),
                total_time_ratio=mean(ok_totals) / mean(direct_totals) if ok_totals and direct_totals else float("nan"),
                errors=sum(not r.ok for b in blocks for r in b.results),
                cpu_ms_per_stream=cpu * 1000 / streams if measured else None,
                cpu_us_per_chunk=cpu * 1e6 / (streams * tokens) if measured else None,
                peak_rss_mb=level.peak_rss_mb.get(target.split(",")[0]),
                whole_added_p50_ms=percentile(whole, 50) - percentile(direct_whole, 50) if whole and measured else None,
                whole_added_p99_ms=percentile(whole, 99) - percentile(direct_whole, 99) if whole and measured else None,
            )
        )
    return out


def totals(blocks: list[Block]) -> list[float]:
    return [r.total * 1000 for b in blocks for r in b.results if r.ok]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def write_outputs(args: argparse.Namespace, levels: list[Level]) -> None:
    table = [row for level in levels for row in rows(level, args.tokens)]
    print("\n" + HEADER)
    for row in table:
        print(row.line())
    errors = sum(row.errors for row in table)
    print(f"\n{errors} streams failed" if errors else "\nevery stream completed")
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"transports-w{args.workers}"
    report = {
        "machine": {
            "cores": __import__("os").cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": [asdict(row) for row in table],
        "errors": sorted(
            {r.error for lv in levels for bs in lv.blocks.values() for b in bs for r in b.results if r.error}
        )[:20],
    }
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(table, args.out / f"{name}.png", "added TTFT at p99, by target")
    print(f"\nwrote {args.out / (name + '.json')} and {args.out / (name + '.png')}")


def plot(table: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    for target in dict.fromkeys(row.target for row in table if row.target != DIRECT):
        mine = [row for row in table if row.target == target]
        axes.plot([r.concurrency for r in mine], [r.added_ttft_p99_ms for r in mine], marker="o", label=target)
    axes.set_xscale("log")
    axes.set_yscale("symlog", linthresh=1)
    axes.set_xlabel("concurrent streams")
    axes.set_ylabel("ms added to time to first token, p99")
    axes.set_title(title)
    axes.axhline(0, color="grey", linewidth=0.6)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
