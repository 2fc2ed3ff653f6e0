"""Where one request's fixed cost goes: a sampling profile (py-spy) of one gateway worker serving
streams one after another, each as short as a stream gets (one token), so that what is left is what
every request pays once: reading and checking the body, routing, building the upstream request, the
clients beneath httpx, the access line, the metrics. Only samples that hold the GIL count: a thread
that waits costs nothing.

    python -m bench.profile --transport native --seconds 20

Prints the CPU per request, then the gateway's own functions by the time spent in them and in what
they call (inclusive), in µs per request, and the libraries' share. Loopback only.
"""

from __future__ import annotations

import argparse
import collections
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from bench.loadgen import request_bytes, run_block
from bench.run import (
    BODY,
    HOST,
    ROOT,
    TRANSPORTS,
    cpu_seconds,
    free_port,
    start_gateway,
    start_upstream,
    wait_for_port,
)

FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^:]+)(?::\d+)?\)$")
OURS = ("app/", "providers/")


def frames(stack: str) -> list[tuple[str, str]]:
    """(function, file) from the root to the leaf of one py-spy raw stack."""
    out = []
    for frame in stack.split(";"):
        match = FRAME.match(frame)
        out.append((match["function"], match["file"]) if match else (frame, ""))
    return out


def library(file: str) -> str:
    """Who a frame belongs to: our module, or the library's top-level package."""
    if file.startswith(OURS):
        return file
    parts = file.split("/")
    return parts[0].removesuffix(".py") if parts else "?"


def digest(raw: Path, requests: int, rate: int, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    owners: collections.Counter[str] = collections.Counter()
    callers: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        chain = frames(stack)
        seen = {f"{file}:{function}" for function, file in chain if file.startswith(OURS)}
        for name in seen:
            inclusive[name] += count
        owners[library(chain[-1][1])] += count
        ours = [f"{file}:{function}" for function, file in chain if file.startswith(OURS)]
        innermost = ours[-1] if ours else "outside the gateway's code"
        callers[f"{innermost} -> {library(chain[-1][1])}"] += count
    per_request = 1e6 / rate / requests  # µs of CPU per sample, per request

    def rows(counter: collections.Counter[str]) -> list[str]:
        return [f"  {count * per_request:>8.1f} µs  {name}" for name, count in counter.most_common(top)]

    return "\n".join(
        [
            f"{total} samples, {requests} requests: {total * per_request:.0f} µs sampled per request",
            "the gateway's functions, inclusive (µs per request):",
            *rows(inclusive),
            "where the samples' innermost frame is (µs per request):",
            *rows(owners),
            "the gateway's innermost function, and where its time went (µs per request):",
            *rows(callers),
        ]
    )


async def load(port: int, seconds: float) -> int:
    """Streams one after another on one connection for ``seconds``; how many completed."""
    payload, done, deadline = request_bytes(HOST, port, BODY), 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        results = await run_block(HOST, port, payload, 1, 50, 30)
        failed = [r for r in results if not r.ok]
        if failed:
            raise SystemExit(f"bench.profile: a stream failed: {failed[0].error or failed[0].status}")
        done += len(results)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", default="native", choices=TRANSPORTS)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=int, default=997, help="samples a second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--tokens", type=int, default=1)
    parser.add_argument("--ttft-ms", type=float, default=1)
    parser.add_argument("--delay-ms", type=float, default=1)
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw stacks here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        upstream_port, port = free_port(), free_port()
        upstream = start_upstream(upstream_port, args)
        config = f"http: {{transport: {args.transport}}}\n"
        gateway = start_gateway(port, upstream_port, workdir, "gateway", config)
        try:
            wait_for_port(port, gateway, "the gateway")
            uvloop.run(load(port, 3))  # warm-up: imports, pools, caches
            raw = args.raw or workdir / "profile.txt"
            spy_options = ["-g", "-p", str(gateway.pid), "-r", str(args.rate), "-f", "raw", "-o", str(raw)]
            spy = subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", *spy_options],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)  # py-spy attaches
            before = cpu_seconds([gateway.pid])
            requests = uvloop.run(load(port, args.seconds))
            cpu = cpu_seconds([gateway.pid]) - before
            spy.send_signal(signal.SIGINT)  # py-spy writes its file when interrupted
            spy.wait(timeout=30)
        finally:
            for process in (gateway, upstream):
                process.terminate()
                process.wait(timeout=15)
        print(f"transport={args.transport}: {requests} streams of {args.tokens} token(s), one at a time")
        print(f"CPU per request (from /proc): {cpu * 1e6 / requests:.0f} µs")
        print(digest(raw, requests, args.rate, args.top))


if __name__ == "__main__":
    main()
