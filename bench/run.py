"""``make bench``: the gateway over each transport beneath httpx, beside the bare relay and the direct
path, at 1 to 1000 concurrent streams.

Starts the synthetic upstream, a bare byte relay (the floor of the Python stack) and one gateway
process per transport (``openai/bench`` pointed at the upstream through OPENAI_BASE_URL). For each
concurrency and round it runs a block straight to the upstream, one through the relay and one
through each gateway, in an order that turns each round, so drift of the machine falls on all of
them. At one stream it also times a non-streamed request. Prints a table, writes JSON and a plot.
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
from bench.report import DIRECT, RELAY, Block, Level, write_outputs

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
STREAMS_EACH = {1: 20, 10: 8, 100: 5, 500: 3, 1000: 2}
BODY = b'{"model":"openai/bench","stream":true,"messages":[{"role":"user","content":"hello"}]}'
WHOLE_BODY = BODY.replace(b'"stream":true', b'"stream":false')
TRANSPORTS = ("native", "aiohttp", "httpx")


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


def rss_mb(pids: list[int], field: str = "VmHWM:") -> float:
    """The largest of the processes' peak (``VmHWM:``) or current (``VmRSS:``) resident sizes."""
    sizes = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                sizes.append(int(line.split()[1]) / 1024)
    return max(sizes, default=0.0)


def start_gateway(
    port: int, upstream_port: int, workdir: Path, name: str, config: str, **env: str
) -> subprocess.Popen[bytes]:
    """A gateway process in front of the upstream, its access log (LOG_LEVEL=info) in ``workdir``."""
    path = workdir / f"{name}.yaml"
    path.write_text(config)
    environment = {
        **os.environ,
        "PORT": str(port),
        "LOG_LEVEL": "info",
        "GATEWAY_CONFIG": str(path),
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": f"http://{HOST}:{upstream_port}/v1",
        "DATABASE_URL": f"sqlite:///{workdir}/{name}.db",
        **env,
    }
    log = (workdir / f"{name}.log").open("wb")
    command = [sys.executable, "-m", "app"]
    return subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)


class Targets:
    """Where a block of streams can go: the upstream itself, the relay, or a gateway; and their processes."""

    def __init__(self, upstream_port: int) -> None:
        self.ports: dict[str, int] = {DIRECT: upstream_port}
        self.pids: dict[str, int] = {}

    def add(self, name: str, port: int, pid: int) -> None:
        self.ports[name], self.pids[name] = port, pid

    def gateways(self) -> list[str]:
        return [name for name in self.ports if name not in (DIRECT, RELAY)]

    def turned(self, round_number: int) -> list[str]:
        """The direct path first (every other row is measured against it), then the others in turn."""
        others = [name for name in self.ports if name != DIRECT]
        shift = round_number % len(others)
        return [DIRECT, *others[shift:], *others[:shift]]


async def measure(args: argparse.Namespace, targets: Targets) -> list[Level]:
    for name in targets.gateways():  # warm-up: imports, pools, the store's connection and schema
        await run_block(HOST, targets.ports[name], request_bytes(HOST, targets.ports[name], BODY), 4, 2, args.timeout)
    if args.conversation_levels:
        await conversation_payloads(targets.ports[targets.gateways()[0]], 4)
    spread = (args.ttft_ms + args.tokens * args.delay_ms) / 1000  # one stream's length
    levels = []
    for concurrency in args.levels:
        each = STREAMS_EACH.get(concurrency, 1)
        level = Level(concurrency)
        for round_number in range(args.rounds):
            for name in targets.turned(round_number):
                port = targets.ports[name]
                block = await timed(targets, name, request_bytes(HOST, port, BODY), concurrency, each, args, spread)
                level.blocks.setdefault(name, []).append(block)
                if concurrency == 1:  # a whole answer, one at a time: its added latency
                    whole = await timed(targets, name, request_bytes(HOST, port, WHOLE_BODY), 1, each, args, 0, True)
                    level.whole.setdefault(name, []).append(whole)
            if concurrency in args.conversation_levels:
                first = targets.gateways()[0]
                payloads = await conversation_payloads(targets.ports[first], concurrency)
                block = await timed(targets, first, payloads, concurrency, each, args, spread)
                level.blocks.setdefault(f"{first}, conversation_id", []).append(block)
        level.peak_rss_mb = {name: rss_mb(process_tree(pid)) for name, pid in targets.pids.items()}
        levels.append(level)
        print(f"{concurrency} streams measured", flush=True)
    return levels


async def conversation_payloads(port: int, clients: int) -> list[bytes]:
    """A new conversation per client (made before the timed block), and the request that continues it."""
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
        created = [await client.post("/api/v1/conversations") for _ in range(clients)]
    ids = [response.raise_for_status().json()["id"] for response in created]
    return [request_bytes(HOST, port, BODY[:-1] + b',"conversation_id":"%s"}' % i.encode()) for i in ids]


async def timed(
    targets: Targets,
    name: str,
    payload: bytes | list[bytes],
    concurrency: int,
    each: int,
    args: argparse.Namespace,
    spread: float,
    whole: bool = False,
) -> Block:
    """One block of streams to ``name``, with the CPU its process tree spent meanwhile."""
    pids = process_tree(targets.pids[name]) if name in targets.pids else []
    cpu, start = cpu_seconds(pids), time.perf_counter()
    port = targets.ports[name]
    results: list[Result] = await run_block(HOST, port, payload, concurrency, each, args.timeout, spread, whole)
    return Block(results, time.perf_counter() - start, cpu_seconds(pids) - cpu)


def start_bare_relay(upstream_port: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "UPSTREAM": f"http://{HOST}:{upstream_port}", "PORT": str(port)}
    relay = subprocess.Popen([sys.executable, "-m", "bench.bare_relay"], cwd=ROOT, env=env)
    wait_for_port(port, relay, "the bare relay")
    return relay, port


def start_upstream(port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    shape = ["--ttft-ms", str(args.ttft_ms), "--delay-ms", str(args.delay_ms), "--tokens", str(args.tokens)]
    upstream = subprocess.Popen([sys.executable, "-m", "bench.upstream", "--port", str(port), *shape], cwd=ROOT)
    wait_for_port(port, upstream, "the upstream")
    return upstream


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The gateway beside the bare relay and the direct path.")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=2, help="blocks per target and level")
    parser.add_argument("--transports", nargs="+", default=list(TRANSPORTS), choices=TRANSPORTS)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--ttft-ms", type=float, default=50)
    parser.add_argument("--delay-ms", type=float, default=5)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=120, help="seconds one stream may take")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--no-relay", action="store_true", help="leave out the bare relay")
    parser.add_argument(
        "--conversation-levels",
        type=int,
        nargs="*",
        default=[100],
        help="levels that also get a row (over the first transport) with a conversation_id on every request",
    )
    parser.add_argument("--database-url", help="the conversation store (default: SQLite in a scratch directory)")
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            upstream_port = free_port()
            processes.append(start_upstream(upstream_port, args))
            targets = Targets(upstream_port)
            if not args.no_relay:
                relay, relay_port = start_bare_relay(upstream_port)
                processes.append(relay)
                targets.add(RELAY, relay_port, relay.pid)
            env = {"WORKERS": str(args.workers), **({"DATABASE_URL": args.database_url} if args.database_url else {})}
            for transport in args.transports:
                port = free_port()
                config = f"http: {{transport: {transport}}}\n"
                gateway = start_gateway(port, upstream_port, Path(tmp), transport, config, **env)
                processes.append(gateway)
                wait_for_port(port, gateway, f"the gateway over {transport}")
                targets.add(f"gateway/{transport}", port, gateway.pid)
            print(
                f"transports: {' '.join(args.transports)}; workers={args.workers}; shape: ttft {args.ttft_ms} ms, "
                f"{args.tokens} tokens {args.delay_ms} ms apart; cores: {os.cpu_count()}",
                flush=True,
            )
            levels = uvloop.run(measure(args, targets))
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait(timeout=15)
    write_outputs(args, levels)


if __name__ == "__main__":
    main()
