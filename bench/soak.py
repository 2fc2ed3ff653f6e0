"""The soak (the fourth part of ``make bench``): 10,000 streams through one gateway worker, 1000 at a
time, with its resident size read after every thousand. Flat means what the worker holds does not
grow with the streams it has served: no pooled connection, task, buffer or log record left behind.

    python -m bench.soak --transports native aiohttp --streams 10000 --concurrency 1000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import uvloop

from bench.loadgen import request_bytes, run_block
from bench.run import BODY, HOST, ROOT, TRANSPORTS, free_port, rss_mb, start_gateway, start_upstream, wait_for_port


@dataclass
class Soaked:
    streams: int
    errors: int
    rss_mb: list[float]  # after each block
    growth_after_first_mb: float  # the last block's size less the second's: pools and buffers grown by then


async def soak(port: int, pid: int, args: argparse.Namespace) -> Soaked:
    payload = request_bytes(HOST, port, BODY)
    await run_block(HOST, port, payload, 8, 2, args.timeout)  # warm-up: imports, pools
    sizes: list[float] = []
    errors = streams = 0
    spread = (args.ttft_ms + args.tokens * args.delay_ms) / 1000
    while streams < args.streams:
        results = await run_block(HOST, port, payload, args.concurrency, 1, args.timeout, spread)
        streams += len(results)
        errors += sum(not r.ok for r in results)
        sizes.append(round(rss_mb([pid], "VmRSS:"), 1))
    settled = sizes[1] if len(sizes) > 1 else sizes[0]
    return Soaked(streams, errors, sizes, round(sizes[-1] - settled, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transports", nargs="+", default=list(TRANSPORTS), choices=TRANSPORTS)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--ttft-ms", type=float, default=50)
    parser.add_argument("--delay-ms", type=float, default=5)
    parser.add_argument("--tokens", type=int, default=50)
    args = parser.parse_args()
    report: dict[str, Soaked] = {}
    with tempfile.TemporaryDirectory() as tmp:
        upstream_port = free_port()
        upstream = start_upstream(upstream_port, args)
        try:
            for transport in args.transports:
                port = free_port()
                config = f"http: {{transport: {transport}}}\n"
                gateway = start_gateway(port, upstream_port, Path(tmp), transport, config)
                try:
                    wait_for_port(port, gateway, f"the gateway over {transport}")
                    report[transport] = uvloop.run(soak(port, gateway.pid, args))
                finally:
                    stop(gateway)
                print(f"{transport}: {report[transport]}", flush=True)
        finally:
            stop(upstream)
    print(f"\nsoak: {args.streams} streams, {args.concurrency} at a time, one worker; RSS (MB) after each block")
    for transport, row in report.items():
        print(f"{transport:<8} errors {row.errors}, RSS {row.rss_mb}, since the second: {row.growth_after_first_mb:+}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps({t: asdict(row) for t, row in report.items()}, indent=2) + "\n")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=15)


if __name__ == "__main__":
    main()
