"""``make bench``, second part: what hedging does to the time to first token with one slow deployment.

Two synthetic upstreams: the primary sends every tenth stream's first token after a second (the
others after 50 ms, like the fast one). One alias tries the primary, then the other; its twin
hedges after 200 ms. Both run the same streams, interleaved in rounds, at a steady concurrency;
the table gives TTFT p50, p90 and p99, and how many upstream streams each needed.

    python -m bench.hedging --streams 400 --concurrency 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import uvloop

from bench.loadgen import request_bytes, run_block
from bench.report import percentile
from bench.run import HOST, ROOT, free_port, wait_for_port

HEDGE_AFTER = 0.2
SLOW_EVERY, SLOW_TTFT_MS, TTFT_MS = 10, 1000, 50


def upstream(port: int, *extra: str) -> subprocess.Popen[bytes]:
    shape = ["--ttft-ms", str(TTFT_MS), "--delay-ms", "5", "--tokens", "20"]
    return subprocess.Popen([sys.executable, "-m", "bench.upstream", "--port", str(port), *shape, *extra], cwd=ROOT)


def config(slow_port: int, fast_port: int) -> str:
    deployments = "[{provider: primary, model: bench}, {provider: spare, model: bench}]"
    return (
        "providers:\n"
        f"  primary: {{type: openai, base_url: 'http://{HOST}:{slow_port}/v1', api_key: bench}}\n"
        f"  spare: {{type: openai, base_url: 'http://{HOST}:{fast_port}/v1', api_key: bench}}\n"
        "models:\n"
        f"  plain: {{deployments: {deployments}}}\n"
        f"  hedged: {{deployments: {deployments}, hedge_after_seconds: {HEDGE_AFTER}}}\n"
    )


async def measure(port: int, streams: int, concurrency: int, rounds: int) -> dict[str, list[float]]:
    ttfts: dict[str, list[float]] = {"plain": [], "hedged": []}
    each = max(1, streams // (concurrency * rounds))
    for _ in range(rounds):
        for alias in ttfts:
            body = b'{"model":"%s","stream":true,"messages":[{"role":"user","content":"hi"}]}' % alias.encode()
            results = await run_block(HOST, port, request_bytes(HOST, port, body), concurrency, each, 60, 0.2)
            failed = [r for r in results if not r.ok]
            if failed:
                raise SystemExit(f"bench: {len(failed)} {alias} streams failed: {failed[0].error or failed[0].status}")
            ttfts[alias] += [r.ttft * 1000 for r in results]
    return ttfts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=400, help="streams per alias")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    slow_port, fast_port, gateway_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "gateway.yaml").write_text(config(slow_port, fast_port))
        slow = upstream(slow_port, "--slow-every", str(SLOW_EVERY), "--slow-ttft-ms", str(SLOW_TTFT_MS))
        fast = upstream(fast_port)
        env = {**os.environ, "PORT": str(gateway_port), "GATEWAY_CONFIG": f"{tmp}/gateway.yaml", "LOG_LEVEL": "warning"}
        env["DATABASE_URL"] = f"sqlite:///{tmp}/conversations.db"
        gateway = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env)
        try:
            for port, process, what in ((slow_port, slow, "slow upstream"), (fast_port, fast, "fast upstream")):
                wait_for_port(port, process, what)
            wait_for_port(gateway_port, gateway, "the gateway")
            ttfts = uvloop.run(measure(gateway_port, args.streams, args.concurrency, args.rounds))
        finally:
            for process in (gateway, slow, fast):
                process.terminate()
                process.wait(timeout=15)
    print(
        f"hedging: every {SLOW_EVERY}th stream of the primary takes {SLOW_TTFT_MS} ms to its first token "
        f"(else {TTFT_MS} ms); hedge after {HEDGE_AFTER * 1000:g} ms; {args.concurrency} streams at once"
    )
    print(f"{'alias':<8} {'streams':>7} {'TTFT p50':>9} {'p90':>8} {'p99':>8}")
    table = {}
    for alias, values in ttfts.items():
        row = {q: round(percentile(values, q), 1) for q in (50, 90, 99)}
        table[alias] = {"streams": len(values), **{f"p{q}": v for q, v in row.items()}}
        print(f"{alias:<8} {len(values):>7} {row[50]:>9.1f} {row[90]:>8.1f} {row[99]:>8.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hedging.json").write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
