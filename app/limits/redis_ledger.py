"""The shared ledger: every limit and budget in Redis, each step one server-side script, so that workers
and replicas count together and no two calls can both take the last of a limit.

One round trip before a model call (``take``) and one after it (``settle``); a route that calls no
model and has a requests-per-minute limit makes one (``count``). The sliding windows use Redis's own
clock, so replicas whose clocks differ still share one minute.

Keys, under ``{prefix}:`` and the gateway key's name: ``rpm`` (a sorted set of request times),
``streams`` (a sorted set of stream slots by lease end), ``tpm`` (a hash of tokens by second),
``day:YYYY-MM-DD`` and ``month:YYYY-MM`` (hashes of requests, tokens, input, output, cached, cost).
"""

from __future__ import annotations

import math
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from app.limits.ledger import (
    DAY_TTL,
    MONTH_TTL,
    Ask,
    Hold,
    LedgerUnavailableError,
    Refusal,
    Spent,
    day_of,
    day_resets,
    month_of,
    month_resets,
)

POOL_WAIT_SECONDS = 10.0

# Shared by the scripts: the server's clock, and the minute window of requests.
PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function per_minute(key, allowed)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - 60000)
  local n = redis.call('ZCARD', key)
  if n >= allowed then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return {'requests_per_minute', tostring(tonumber(oldest[2]) + 60000 - now), tostring(n), tostring(allowed)}
  end
  return nil
end
"""

# KEYS: rpm, streams, tpm, day, month. ARGV: member, rpm, streams, lease_ms, tpm, tokens, cost,
# tokens/day, tokens/month, cost/day, cost/month, ms to the day's end, ms to the month's end, day and
# month TTLs. A limit of -1 is none. Returns {} and the tpm second when let through, else the refusal.
TAKE = (
    PRELUDE
    + """
local member, rpm, streams, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tpm, tokens, cost = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local second = math.floor(now / 1000)
if rpm >= 0 then
  local refused = per_minute(KEYS[1], rpm)
  if refused then return refused end
end
if streams >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local n = redis.call('ZCARD', KEYS[2])
  if n >= streams then return {'concurrent_streams', '1000', tostring(n), tostring(streams)} end
end
if tpm >= 0 then
  local flat = redis.call('HGETALL', KEYS[3])
  local used, buckets = 0, {}
  for i = 1, #flat, 2 do
    local at, n = tonumber(flat[i]), tonumber(flat[i + 1])
    if at <= second - 60 then redis.call('HDEL', KEYS[3], flat[i])
    else used = used + n; table.insert(buckets, {at, n}) end
  end
  if tokens > tpm then return {'request_too_large', '60000', tostring(tokens), tostring(tpm)} end
  if used + tokens > tpm then
    table.sort(buckets, function(a, b) return a[1] < b[1] end)
    local freed, wait = used, 60000
    for _, bucket in ipairs(buckets) do
      freed = freed - bucket[2]
      if freed + tokens <= tpm then wait = math.max(1000, (bucket[1] + 60 - second) * 1000); break end
    end
    return {'tokens_per_minute', tostring(wait), tostring(used), tostring(tpm)}
  end
end
local day = redis.call('HMGET', KEYS[4], 'tokens', 'cost')
local month = redis.call('HMGET', KEYS[5], 'tokens', 'cost')
local checks = {
  {'tokens_per_day', tonumber(ARGV[8]), tonumber(day[1] or '0'), tokens, ARGV[12]},
  {'tokens_per_month', tonumber(ARGV[9]), tonumber(month[1] or '0'), tokens, ARGV[13]},
  {'cost_per_day', tonumber(ARGV[10]), tonumber(day[2] or '0'), cost, ARGV[12]},
  {'cost_per_month', tonumber(ARGV[11]), tonumber(month[2] or '0'), cost, ARGV[13]},
}
for _, c in ipairs(checks) do
  if c[2] >= 0 and (c[3] + c[4] > c[2] or c[3] >= c[2]) then
    return {c[1], c[5], tostring(c[3]), tostring(c[2])}
  end
end
if rpm >= 0 then
  redis.call('ZADD', KEYS[1], now, member)
  redis.call('PEXPIRE', KEYS[1], 60000)
end
if streams >= 0 then
  redis.call('ZADD', KEYS[2], now + lease, member)
  redis.call('PEXPIRE', KEYS[2], lease)
end
if tpm >= 0 then
  redis.call('HINCRBY', KEYS[3], second, tokens)
  redis.call('EXPIRE', KEYS[3], 120)
end
for i, key in ipairs({KEYS[4], KEYS[5]}) do
  redis.call('HINCRBY', key, 'requests', 1)
  redis.call('HINCRBY', key, 'tokens', tokens)
  redis.call('HINCRBYFLOAT', key, 'cost', cost)
  redis.call('EXPIRE', key, tonumber(ARGV[13 + i]))
end
return {tostring(second)}
"""
)

# KEYS: streams, tpm, day, month. ARGV: member, second (-1: no tpm), requests, input, output, cached,
# tokens delta, cost delta, day and month TTLs.
SETTLE = """
redis.call('ZREM', KEYS[1], ARGV[1])
local delta = tonumber(ARGV[7])
if tonumber(ARGV[2]) >= 0 and delta ~= 0 and redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[2], delta)
end
for i, key in ipairs({KEYS[3], KEYS[4]}) do
  redis.call('HINCRBY', key, 'requests', ARGV[3])
  redis.call('HINCRBY', key, 'input', ARGV[4])
  redis.call('HINCRBY', key, 'output', ARGV[5])
  redis.call('HINCRBY', key, 'cached', ARGV[6])
  redis.call('HINCRBY', key, 'tokens', delta)
  redis.call('HINCRBYFLOAT', key, 'cost', ARGV[8])
  redis.call('EXPIRE', key, tonumber(ARGV[8 + i]))
end
return 1
"""

# KEYS: rpm. ARGV: member, rpm.
COUNT = (
    PRELUDE
    + """
local refused = per_minute(KEYS[1], tonumber(ARGV[2]))
if refused then return refused end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 60000)
return {}
"""
)


class RedisLedger:
    shared = True

    def __init__(self, url: str, prefix: str = "gateway", timeout: float = 0.5, connections: int = 64):
        # Short timeouts: a Redis that went away must cost a request half a second at most, once. A
        # bounded pool that makes a call wait for a free connection: each script takes well under a
        # millisecond, while an unbounded one would open a connection per call in flight, and the
        # default one refuses calls beyond its 100 ("Too many connections") at 100 streams and more.
        # The wait for a free connection is bounded apart: thousands of calls at once queue for seconds,
        # which is load, not an outage (a Redis that is down fails at its connect timeout instead).
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=connections,
            timeout=POOL_WAIT_SECONDS,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        self.pool = pool
        self.client: redis.Redis = redis.Redis(connection_pool=pool)
        self.prefix = prefix
        self.take_script = self.client.register_script(TAKE)
        self.settle_script = self.client.register_script(SETTLE)
        self.count_script = self.client.register_script(COUNT)

    def name(self, key: str, what: str) -> str:
        return f"{self.prefix}:{key}:{what}"

    async def take(self, ask: Ask, now: float) -> Hold | Refusal:
        limits, budgets = ask.limits, ask.budgets
        day, month = day_of(now), month_of(now)
        keys = [self.name(ask.key, what) for what in ("rpm", "streams", "tpm", f"day:{day}", f"month:{month}")]
        args = [
            ask.member,
            *(none_as(-1, v) for v in (limits.requests_per_minute, limits.concurrent_streams)),
            math.ceil(ask.lease * 1000),
            none_as(-1, limits.tokens_per_minute),
            ask.tokens,
            repr(ask.cost),
            *(none_as(-1, v) for v in (budgets.tokens_per_day, budgets.tokens_per_month)),
            *(none_as(-1, v) for v in (budgets.cost_per_day, budgets.cost_per_month)),
            math.ceil((day_resets(now) - now) * 1000),
            math.ceil((month_resets(now) - now) * 1000),
            DAY_TTL,
            MONTH_TTL,
        ]
        answer = await self.run(self.take_script, keys, args)
        if len(answer) == 4:
            return refusal_of(answer)
        slot, minute = limits.concurrent_streams is not None, limits.tokens_per_minute is not None
        return Hold(ask.key, ask.member, int(answer[0]), day, month, ask.tokens, ask.cost, slot, minute)

    async def settle(self, hold: Hold | None, key: str, spent: Spent, now: float) -> None:
        day, month = (hold.day, hold.month) if hold is not None else (day_of(now), month_of(now))
        keys = [self.name(key, what) for what in ("streams", "tpm", f"day:{day}", f"month:{month}")]
        reserved_tokens, reserved_cost = (hold.tokens, hold.cost) if hold is not None else (0, 0.0)
        args = [
            hold.member if hold is not None else "",
            hold.second if hold is not None and hold.minute else -1,
            0 if hold is not None else 1,  # a reservation already counted the request
            spent.input_tokens,
            spent.output_tokens,
            spent.cached_tokens,
            spent.tokens - reserved_tokens,
            repr(spent.cost - reserved_cost),
            DAY_TTL,
            MONTH_TTL,
        ]
        await self.run(self.settle_script, keys, args)

    async def count(self, key: str, member: str, per_minute: int, now: float) -> Refusal | None:
        answer = await self.run(self.count_script, [self.name(key, "rpm")], [member, per_minute])
        return refusal_of(answer) if answer else None

    async def usage(self, key: str, days: list[str], month: str) -> tuple[list[Spent], Spent]:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.hgetall(self.name(key, f"day:{day}"))
                pipe.hgetall(self.name(key, f"month:{month}"))
                rows = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise LedgerUnavailableError(str(exc)) from exc
        spent = [spent_of(row) for row in rows]
        return spent[:-1], spent[-1]

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self.client.aclose()
        await self.pool.disconnect()  # a pool handed to the client is not the client's to close

    async def run(self, script: Any, keys: list[str], args: list[object]) -> list[bytes]:
        try:
            answer: list[bytes] = await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise LedgerUnavailableError(str(exc)) from exc
        return answer


def none_as(default: int, value: float | None) -> object:
    return default if value is None else (repr(value) if isinstance(value, float) else value)


def refusal_of(answer: list[bytes]) -> Refusal:
    limit, wait_ms, used, allowed = (part.decode() for part in answer)
    return Refusal(limit, float(wait_ms) / 1000, float(used), float(allowed))


def spent_of(row: dict[bytes, bytes]) -> Spent:
    def number(field: bytes) -> int:
        return int(row.get(field, b"0"))

    cost = float(row.get(b"cost", b"0"))
    return Spent(number(b"requests"), number(b"input"), number(b"output"), number(b"cached"), number(b"tokens"), cost)
