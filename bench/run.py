"""``make bench``: the gateway beside the direct path, at 1 to 1000 concurrent streams.

Starts the synthetic upstream and the gateway (``openai/bench`` pointed at the upstream through
OPENAI_BASE_URL), then for each concurrency runs direct and through-the-gateway blocks in turn,
so that drift of the machine falls on both. Prints a table, writes JSON and a plot.
Loopback only; every stream has a timeout, so the run is bounded.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvloop

from bench.loadgen import Result, request_bytes, run_block
from bench.report import Block, Level, summarize, write_outputs

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
STREAMS_EACH = {1: 20, 10: 8, 100: 5, 500: 3, 1000: 2}
BODY = b'{"model":"openai/bench","stream":true,"messages":[{"role":"user","content":"hello"}]}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: {what} exited early with status {process.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench: {what} did not start within 30 s")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's workers), from /proc."""
    pids, index = [pid], 0
    while index < len(pids):
        for task in Path(f"/proc/{pids[index]}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            pids += [int(child) for child in children]
        index += 1
    return pids


def cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pids: list[int]) -> float:
    peaks = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks, default=0.0)


async def measure(
    args: argparse.Namespace, upstream_port: int, gateway_port: int, gateway_pid: int, bare_port: int | None
) -> list[Level]:
    direct = request_bytes(HOST, upstream_port, BODY)
    through = request_bytes(HOST, gateway_port, BODY)
    await run_block(HOST, gateway_port, through, 4, 2, args.timeout)  # warm-up: imports, pools
    await conversation_payloads(gateway_port, 4)  # warm-up: the store's connection and schema
    spread = (args.ttft_ms + args.tokens * args.delay_ms) / 1000  # one stream's length
    levels = []
    for concurrency in args.levels:
        each = STREAMS_EACH.get(concurrency, 1)
        level = Level(concurrency)
        for _ in range(args.rounds):
            level.direct.append(await timed(direct, upstream_port, concurrency, each, args.timeout, spread))
            if bare_port is not None:
                bare = request_bytes(HOST, bare_port, BODY)
                level.bare.append(await timed(bare, bare_port, concurrency, each, args.timeout, spread))
            pids = process_tree(gateway_pid)
            before = cpu_seconds(pids)
            block = await timed(through, gateway_port, concurrency, each, args.timeout, spread)
            block.cpu_seconds = cpu_seconds(pids) - before
            level.gateway.append(block)
            if concurrency in args.conversation_levels:
                payloads = await conversation_payloads(gateway_port, concurrency)
                before = cpu_seconds(pids)
                block = await timed(payloads, gateway_port, concurrency, each, args.timeout, spread)
                block.cpu_seconds = cpu_seconds(pids) - before
                level.conversation.append(block)
        level.peak_rss_mb = peak_rss_mb(process_tree(gateway_pid))
        levels.append(level)
        print(summarize(level, args.tokens).line(), flush=True)
    return levels


async def conversation_payloads(port: int, clients: int) -> list[bytes]:
    """A new conversation per client (made before the timed block), and the request that continues it."""
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
        created = [await client.post("/api/v1/conversations") for _ in range(clients)]
    ids = [response.raise_for_status().json()["id"] for response in created]
    return [request_bytes(HOST, port, BODY[:-1] + b',"conversation_id":"%s"}' % i.encode()) for i in ids]


async def timed(
    payload: bytes | list[bytes], port: int, concurrency: int, each: int, stream_timeout: float, spread: float
) -> Block:
    start = time.perf_counter()
    results: list[Result] = await run_block(HOST, port, payload, concurrency, each, stream_timeout, spread)
    return Block(results, time.perf_counter() - start)


def start_bare_relay(upstream_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "UPSTREAM": f"http://{HOST}:{upstream_port}", "PORT": str(port)}
    relay = subprocess.Popen([sys.executable, "-m", "bench.bare_relay"], cwd=ROOT, env=env)
    wait_for_port(port, relay, "the bare relay")
    return relay, port


def start_processes(
    args: argparse.Namespace, workdir: Path
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], int, int]:
    upstream_port, gateway_port = free_port(), free_port()
    shape = ["--ttft-ms", str(args.ttft_ms), "--delay-ms", str(args.delay_ms), "--tokens", str(args.tokens)]
    upstream = subprocess.Popen(
        [sys.executable, "-m", "bench.upstream", "--port", str(upstream_port), *shape], cwd=ROOT
    )
    config = workdir / "gateway.yaml"
    config.write_text(f"http: {{transport: {args.transport}}}\n")
    env = {
        **os.environ,
        "PORT": str(gateway_port),
        "WORKERS": str(args.workers),
        "LOG_LEVEL": "info",
        "GATEWAY_CONFIG": str(config),
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": f"http://{HOST}:{upstream_port}/v1",
        "DATABASE_URL": args.database_url or f"sqlite:///{workdir}/conversations.db",
    }
    log = (workdir / "gateway.log").open("wb")
    gateway = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(upstream_port, upstream, "the upstream")
    wait_for_port(gateway_port, gateway, "the gateway")
    return upstream, gateway, upstream_port, gateway_port


def main() -> None:
    parser = argparse.ArgumentParser(description="Streaming benchmark: the gateway beside the direct path.")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 10, 100, 500, 1000])
    parser.add_argument("--rounds", type=int, default=2, help="direct/gateway block pairs per level")
    parser.add_argument("--transport", default="aiohttp", help="what runs beneath httpx in the gateway")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--ttft-ms", type=float, default=50)
    parser.add_argument("--delay-ms", type=float, default=5)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=120, help="seconds one stream may take")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--bare-relay", action="store_true", help="also measure a bare byte relay, the floor")
    parser.add_argument(
        "--conversation-levels",
        type=int,
        nargs="*",
        default=[100],
        help="levels that also get a row with a conversation_id on every request",
    )
    parser.add_argument("--database-url", help="the conversation store (default: SQLite in a scratch directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        upstream, gateway, upstream_port, gateway_port = start_processes(args, Path(tmp))
        relay, bare_port = start_bare_relay(upstream_port) if args.bare_relay else (None, None)
        try:
            print(
                f"transport={args.transport} workers={args.workers} shape: ttft {args.ttft_ms} ms, "
                f"{args.tokens} tokens {args.delay_ms} ms apart; cores: {os.cpu_count()}",
                flush=True,
            )
            levels = uvloop.run(measure(args, upstream_port, gateway_port, gateway.pid, bare_port))
        finally:
            for process in (relay, gateway, upstream):
                if process is None:
                    continue
                process.terminate()
                process.wait(timeout=15)
    write_outputs(args, levels)


if __name__ == "__main__":
    main()
