"""``make bench``, third part: what Redis-backed limits and budgets cost a request, at 100 streams.

One synthetic upstream and two gateways in front of it: one with no keys, one whose key has every
limit and budget (requests and tokens per minute, streams in flight, tokens and cost per day, a
price) counted in the machine's Redis. Blocks of 100 concurrent streams go to each in turn; the
table gives added TTFT p50 and p99 against the direct path, CPU per stream, and the Redis commands
each request made (from Redis's own command statistics).

    python -m bench.limits --concurrency 100 --rounds 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import redis
import uvloop

from bench.loadgen import request_bytes, run_block
from bench.report import percentile
from bench.run import BODY, HOST, ROOT, cpu_seconds, free_port, process_tree, start_gateway, wait_for_port

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
KEY = "bench-key"
LIMITED = (
    "auth:\n"
    "  keys:\n"
    f"    - name: bench\n      key: {KEY}\n"
    "      rate_limits: {requests_per_minute: 1000000, tokens_per_minute: 1000000000, concurrent_streams: 100000}\n"
    "      budgets: {tokens_per_day: 1000000000000, cost_per_day: 1000000}\n"
    "prices:\n  openai/bench: {input: 1, output: 2}\n"
)


ENV = {"REDIS_URL": REDIS_URL, "LOG_LEVEL": "warning"}


def with_key(payload: bytes) -> bytes:
    return payload.replace(b"\r\n\r\n", b"\r\nauthorization: Bearer %s\r\n\r\n" % KEY.encode(), 1)


def script_calls(store: redis.Redis) -> int:
    stats = store.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval", "ping"))


async def measure(ports: dict[str, int], pids: dict[str, int], args: argparse.Namespace) -> dict[str, object]:
    store = redis.Redis.from_url(REDIS_URL)
    payloads = {
        "direct": request_bytes(HOST, ports["direct"], BODY),
        "no limits": request_bytes(HOST, ports["no limits"], BODY),
        "Redis limits": with_key(request_bytes(HOST, ports["Redis limits"], BODY)),
    }
    for name in ("no limits", "Redis limits"):  # warm-up: imports, pools, the scripts loaded
        await run_block(HOST, ports[name], payloads[name], 4, 2, 60)
    ttfts: dict[str, list[float]] = {name: [] for name in payloads}
    cpu: dict[str, float] = {"no limits": 0.0, "Redis limits": 0.0}
    calls, streams = 0, 0
    for _ in range(args.rounds):
        for name, payload in payloads.items():
            tree = process_tree(pids[name]) if name in pids else []
            before, before_calls = cpu_seconds(tree), script_calls(store)
            results = await run_block(HOST, ports[name], payload, args.concurrency, args.each, 60, 0.3)
            failed = [r for r in results if not r.ok]
            if failed:
                raise SystemExit(f"bench: {len(failed)} {name} streams failed: {failed[0].error or failed[0].status}")
            ttfts[name] += [r.ttft * 1000 for r in results]
            if name in cpu:
                cpu[name] += cpu_seconds(tree) - before
            if name == "Redis limits":
                calls += script_calls(store) - before_calls
                streams += len(results)
    store.close()
    direct = ttfts["direct"]
    rows: dict[str, object] = {}
    for name in ("no limits", "Redis limits"):
        values, count = ttfts[name], len(ttfts[name])
        rows[name] = {
            "streams": count,
            "added_ttft_p50_ms": round(percentile(values, 50) - percentile(direct, 50), 2),
            "added_ttft_p99_ms": round(percentile(values, 99) - percentile(direct, 99), 2),
            "cpu_ms_per_stream": round(cpu[name] * 1000 / count, 3),
        }
    rows["redis_scripts_per_request"] = round(calls / streams, 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--each", type=int, default=3, help="streams per client per block")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        print(f"bench.limits: no Redis answers at {REDIS_URL} ({exc}); set REDIS_URL to measure the limits")
        return
    upstream_port = free_port()
    ports = {"direct": upstream_port, "no limits": free_port(), "Redis limits": free_port()}
    shape = ["--ttft-ms", "50", "--delay-ms", "5", "--tokens", "50"]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        upstream = subprocess.Popen(
            [sys.executable, "-m", "bench.upstream", "--port", str(upstream_port), *shape], cwd=ROOT
        )
        prefix = f"bench-{uuid.uuid4().hex}"
        plain = start_gateway(ports["no limits"], upstream_port, workdir, "plain", "", **ENV)
        config = f"limits: {{redis_prefix: {prefix}}}\n{LIMITED}"
        limited = start_gateway(ports["Redis limits"], upstream_port, workdir, "limited", config, **ENV)
        processes = {"no limits": plain, "Redis limits": limited}
        try:
            wait_for_port(upstream_port, upstream, "the upstream")
            for name, process in processes.items():
                wait_for_port(ports[name], process, name)
            rows = uvloop.run(measure(ports, {n: p.pid for n, p in processes.items()}, args))
        finally:
            for process in (plain, limited, upstream):
                process.terminate()
                process.wait(timeout=15)
            store = redis.Redis.from_url(REDIS_URL)
            keys = list(store.scan_iter(match=f"{prefix}:*"))
            if keys:
                store.delete(*keys)
            store.close()
    print(f"limits: {args.concurrency} streams at once, 50 tokens 5 ms apart, upstream TTFT 50 ms; Redis {REDIS_URL}")
    print(f"{'gateway':<13} {'streams':>7} {'added p50':>10} {'added p99':>10} {'cpu ms/st':>10}")
    for name in ("no limits", "Redis limits"):
        row = rows[name]
        assert isinstance(row, dict)
        print(
            f"{name:<13} {row['streams']:>7} {row['added_ttft_p50_ms']:>+10.2f} {row['added_ttft_p99_ms']:>+10.2f} "
            f"{row['cpu_ms_per_stream']:>10.3f}"
        )
    print(f"Redis scripts per request: {rows['redis_scripts_per_request']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "limits.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
