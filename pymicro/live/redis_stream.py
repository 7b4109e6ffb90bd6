"""Ticks from a Redis stream, signals to another: at-least-once delivery, applied exactly once.

    from pymicro.live.redis_stream import RedisSignals, publish_ticks, connect
    client, stream = connect("redis://127.0.0.1:6379/es-ticks")
    publish_ticks(client, stream, price, size, ts)          # a producer (or your feed handler)
    RedisSignals(client, model, stream=stream, bar="tick", bar_size=100).run(idle_exit=2.0)

The input stream holds one entry per tick with the fields ``price``, ``size`` and ``ts``
(seconds, the clock of :class:`~pymicro.live.stream.Pipeline`). The consumer reads it
through a consumer group (``XREADGROUP``) and writes one entry per tick to the signals
stream, **under the tick's own id**, with ``position`` and ``p_<k>_<label>`` per class.

How a tick is applied once although Redis delivers it at least once:

* The features are a fold over every tick in order, so one pipeline consumes the whole
  stream: a group serves one consumer (scale out with one group per model, not more
  consumers in a group). A consumer refuses to start beside another one of its group that
  read within ``active_ms``; entries still pending from a dead consumer are claimed.
* **A fenced lease** makes "one consumer" hold while it runs, not only at start:
  ``<signals>:lease`` is taken with ``SET NX PX`` (``lease_ms``) holding the consumer's name
  and a fencing token (``INCR <signals>:fence``, never reused), renewed while consuming
  (every ``lease_ms / 3``, and by every publication). A second consumer, of any name, is
  refused (:class:`LeaseHeldError`) while the lease is held, or waits ``lease_wait`` seconds
  for it. A consumer whose lease expired (paused, partitioned: a zombie) cannot publish: the
  publication is one Lua script that checks the lease still holds its own token before it
  writes anything, so its signals after the expiry are refused (:class:`LeaseLostError`)
  and it stops; its batch stays pending for the new holder, which claims it. Reads from the
  group go through a script with the same check, so a zombie cannot take ticks out of the
  new holder's sight either.
* A batch's signals (``XADD`` with the tick ids) and its ``XACK`` go in that one script
  (atomic in Redis): either both happened or neither did. It also refuses ids at or below
  the signals stream's last one before writing. A consumer killed anywhere before it
  leaves its batch pending and unpublished.
* On start the last signal's id is the last applied tick. The pipeline state is rebuilt by
  replaying the input stream up to that id (``XRANGE``, the loop in C++), then pending
  entries are re-read first. Any entry with an id at or below the last applied one is
  acked without being applied again (and ``XADD`` would refuse a duplicate id anyway).
* ``<signals>:meta`` records the blob's content hash and the bar settings: resuming a
  group with another model or other bars is refused (:class:`~pymicro.errors.InputError`),
  since the rebuilt state would not be the one the published signals came from.

Trimming the input stream (``MAXLEN``) below the last applied tick changes the rebuilt
state; keep the stream whole, or start a new group and signals stream.
"""

from __future__ import annotations

import contextlib
import functools
import signal as _signal
import time
from urllib.parse import urlparse

import numpy as np

from pymicro.errors import (InputError, LeaseHeldError, LeaseLostError, StreamUnavailableError,
                            require)
from pymicro.live.stream import Pipeline

REBUILD_CHUNK = 10_000


# KEYS: lease, fence. ARGV: consumer, ttl_ms. -> {1, value, token} or {0, holder, pttl}
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder then return {0, holder, redis.call('PTTL', KEYS[1])} end
local token = redis.call('INCR', KEYS[2])
local value = ARGV[1] .. '#' .. token
if not redis.call('SET', KEYS[1], value, 'NX', 'PX', ARGV[2]) then return {0, '', 0} end
return {1, value, token}
"""
# KEYS: lease. ARGV: value, ttl_ms. -> 1 renewed, 0 not ours
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: lease, ticks. ARGV: value, group, consumer, count, start ('0': own pending, '>': new)
_READ = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the lease is not held by ' .. ARGV[1])
end
return redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[2], ARGV[5])
"""
# KEYS: lease, signals, ticks. ARGV: value, group, ttl_ms, k, field_1..field_k, n,
# (id, value_1..value_k) x n, ack ids... Checks everything, then writes: XADD x n, XACK.
_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the lease is not held by ' .. ARGV[1])
end
local k = tonumber(ARGV[4])
local n = tonumber(ARGV[5 + k])
local first = 6 + k
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
if n > 0 then
  local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  if #top > 0 then
    local tms, tseq = parse(top[1][1])
    local ms, seq = parse(ARGV[first])
    if ms < tms or (ms == tms and seq <= tseq) then
      return redis.error_reply('STALE signal ' .. ARGV[first] .. ' is not after ' .. top[1][1])
    end
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local p = first
for j = 1, n do
  local args = {'XADD', KEYS[2], ARGV[p]}
  p = p + 1
  for i = 1, k do
    args[#args + 1] = ARGV[4 + i]
    args[#args + 1] = ARGV[p]
    p = p + 1
  end
  redis.call(unpack(args))
end
while p <= #ARGV do
  local ack = {'XACK', KEYS[3], ARGV[2]}
  local stop = math.min(p + 999, #ARGV)
  for i = p, stop do ack[#ack + 1] = ARGV[i] end
  redis.call(unpack(ack))
  p = stop + 1
end
return n
"""


def _redis():
    return require("redis", "live", purpose="the Redis Streams adapter")


@contextlib.contextmanager
def _reachable(client):
    redis = _redis()
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as e:
        where = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        raise StreamUnavailableError(f"cannot reach Redis at {where.get('host')}:{where.get('port')}: {e}") from None


def _guarded(fn):
    """Redis connection failures inside ``fn`` become :class:`StreamUnavailableError`."""
    @functools.wraps(fn)
    def run(first, *args, **kwargs):
        client = first if not isinstance(first, RedisSignals) else args[0] if fn.__name__ == "__init__" else first.client
        with _reachable(client):
            return fn(first, *args, **kwargs)
    return run


def connect(url: str):
    """``redis://host:port/stream`` -> (a redis-py client, the stream name)."""
    u = urlparse(url)
    if u.scheme != "redis" or not u.hostname:
        raise InputError(f"expected redis://host:port/stream, got {url!r}")
    stream = u.path.lstrip("/")
    if not stream:
        raise InputError(f"{url!r} names no stream: redis://host:port/<stream>")
    client = _redis().Redis(host=u.hostname, port=u.port or 6379, password=u.password, decode_responses=True)
    return client, stream


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@_guarded
def publish_ticks(client, stream: str, price, size, ts, *, chunk: int = 2000) -> list[str]:
    """Append ticks to ``stream`` (ids chosen by Redis, increasing); returns their ids."""
    price, size, ts = (np.asarray(a, dtype=np.float64) for a in (price, size, ts))
    if not (price.shape == size.shape == ts.shape) or price.ndim != 1:
        raise InputError("price, size and ts must be 1-D arrays of one length")
    ids: list[str] = []
    for lo in range(0, len(price), chunk):
        pipe = client.pipeline(transaction=False)
        for p, s, t in zip(price[lo:lo + chunk], size[lo:lo + chunk], ts[lo:lo + chunk]):
            pipe.xadd(stream, {"price": repr(float(p)), "size": repr(float(s)), "ts": repr(float(t))})
        ids.extend(pipe.execute())
    return ids


@_guarded
def read_signals(client, signals: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every signal in ``signals``: (tick ids, positions (n,), probabilities (n, classes))."""
    ids, pos, probs = [], [], []
    last = "-"
    while True:
        rows = client.xrange(signals, min=last, max="+", count=REBUILD_CHUNK)
        if last != "-":
            rows = rows[1:]
        if not rows:
            break
        for i, f in rows:
            ids.append(i)
            pos.append(float(f["position"]))
            probs.append([float(f[k]) for k in sorted(f) if k.startswith("p_")])
        last = rows[-1][0]
    return ids, np.asarray(pos), np.asarray(probs)


def _ticks(rows) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    ids = [i for i, _ in rows]
    try:
        arr = np.array([[float(f["price"]), float(f["size"]), float(f["ts"])] for _, f in rows], dtype=np.float64)
    except (KeyError, ValueError) as e:
        raise InputError(f"a tick entry needs numeric fields price, size, ts ({e!r})") from None
    arr = arr.reshape(-1, 3)
    return ids, arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy()


class RedisSignals:
    """A consumer-group reader of ticks that publishes one signal per tick (see the module doc)."""

    @_guarded
    def __init__(self, client, model, *, stream: str, signals: str | None = None, group: str | None = None,
                 consumer: str = "pymicro", bar: str = "volume", bar_size: float = 1000.0,
                 threshold: float = 0.5, batch: int = 500, on_signals=None, active_ms: int = 5000,
                 lease_ms: int = 5000, lease_wait: float = 0.0):
        if batch < 1:
            raise InputError(f"batch must be >= 1, got {batch}")
        if isinstance(lease_ms, bool) or not isinstance(lease_ms, int) or not 100 <= lease_ms <= 3_600_000:
            raise InputError(f"lease_ms must be a whole number of ms in [100, 3600000], got {lease_ms!r}")
        if not lease_wait >= 0:
            raise InputError(f"lease_wait must be >= 0 seconds, got {lease_wait!r}")
        self.client, self.stream, self.batch = client, stream, int(batch)
        self.pipe = Pipeline(model, bar=bar, bar_size=bar_size, threshold=threshold)
        digest = self.pipe.model.info.content_hash
        self.group = group or f"pymicro-{digest[:12]}"
        self.signals = signals or f"{stream}:signals:{self.group}"
        self.consumer = consumer
        self.on_signals = on_signals  # called after each commit: (tick ids, price, ts, positions, probabilities)
        self.labels = tuple(self.pipe.model.labels)
        self._fields = [f"p_{k:02d}_{label}" for k, label in enumerate(self.labels)]
        self._signal_fields = ["position", *self._fields]
        self.applied = 0      # ticks applied by this process (rebuilt ones not counted)
        self.skipped = 0      # deliveries of ticks already applied (acked, not applied again)
        self.rebuilt = 0      # ticks replayed from the input stream to rebuild the state
        self._check_meta({"model": digest, "bar": bar, "bar_size": repr(float(bar_size)),
                          "threshold": repr(float(threshold)), "stream": stream, "group": self.group})
        redis = _redis()
        try:
            client.xgroup_create(stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._refuse_a_second_consumer(active_ms)
        self.lease_ms = lease_ms
        self._scripts = {name: client.register_script(src) for name, src in
                         (("acquire", _ACQUIRE), ("renew", _RENEW), ("release", _RELEASE), ("publish", _PUBLISH),
                          ("read", _READ))}
        self.lease_key, self.fence_key = f"{self.signals}:lease", f"{self.signals}:fence"
        self.lease: str | None = None   # "<consumer>#<fencing token>" while held
        self.fence: int | None = None   # the fencing token
        self._acquire(lease_wait)
        self.last_id = self._rebuild()
        self._claim()
        self._pending = True  # read this consumer's pending entries before new ones
        groups = {g["name"]: g for g in client.xinfo_groups(stream)}
        self._delivered = groups[self.group]["last-delivered-id"]  # every entry up to it went to a consumer

    # -- start: meta, rebuild, claim ---------------------------------------------------------

    def _check_meta(self, meta: dict) -> None:
        key = f"{self.signals}:meta"
        for k, v in meta.items():  # the first writer sets them, every later one compares
            self.client.hsetnx(key, k, v)
        have = self.client.hgetall(key)
        wrong = {k: (have.get(k), v) for k, v in meta.items() if have.get(k) != v}
        if wrong:
            raise InputError(f"{self.signals} was written with other settings {wrong} (have, wanted): resume "
                             "with the same blob and bars, or use another group / signals stream")

    def _refuse_a_second_consumer(self, active_ms: int) -> None:
        """A group serves one pipeline: refuse to start beside another consumer of it that read
        within ``active_ms`` (a dead one's entries are claimed instead)."""
        for c in self.client.xinfo_consumers(self.stream, self.group):
            if c["name"] != self.consumer and int(c["idle"]) < active_ms:
                raise InputError(f"consumer {c['name']!r} of group {self.group!r} read {c['idle']} ms ago: a group "
                                 "feeds one pipeline (the features need every tick); stop it, or use another group")

    # -- the lease ------------------------------------------------------------------------------

    def _acquire(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            ok, value, extra = self._scripts["acquire"](keys=[self.lease_key, self.fence_key],
                                                        args=[self.consumer, self.lease_ms])
            value = value.decode() if isinstance(value, bytes) else value
            if int(ok) == 1:
                self.lease, self.fence = value, int(extra)
                self._renewed = time.monotonic()
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise LeaseHeldError(
                    f"the lease of {self.signals} is held by {value or 'another consumer'} (expires in "
                    f"{int(extra)} ms unless renewed): one consumer publishes a group's signals at a time; stop "
                    "it, wait for its lease to expire (lease_wait / --lease-wait), or use another group", value)
            time.sleep(min(0.05, left))

    def _lost(self, what: str) -> LeaseLostError:
        held, self.lease = self.lease, None
        return LeaseLostError(f"the lease {held} of {self.signals} expired or was taken over (now held by "
                              f"{self.client.get(self.lease_key) or 'nobody'}): {what}; this consumer stops")

    def renew(self) -> None:
        """Extend the lease by ``lease_ms``; :class:`LeaseLostError` if it is no longer ours."""
        if self.lease is None:
            raise LeaseLostError(f"this consumer holds no lease on {self.signals}")
        if not int(self._scripts["renew"](keys=[self.lease_key], args=[self.lease, self.lease_ms])):
            raise self._lost("it was not renewed")
        self._renewed = time.monotonic()

    def _keep_lease(self) -> None:
        if time.monotonic() - self._renewed >= self.lease_ms / 3000:
            self.renew()

    @_guarded
    def release(self) -> None:
        """Give the lease back (only if it is still ours): the next consumer need not wait."""
        if self.lease is not None:
            self._scripts["release"](keys=[self.lease_key], args=[self.lease])
            self.lease = None

    def _rebuild(self) -> str | None:
        last = self.client.xrevrange(self.signals, max="+", min="-", count=1)
        if not last:
            return None
        last_id = last[0][0]
        start = "-"
        while True:
            rows = self.client.xrange(self.stream, min=start, max=last_id, count=REBUILD_CHUNK)
            if start != "-":
                rows = rows[1:]
            if not rows:
                break
            _, p, s, t = _ticks(rows)
            self.pipe.replay_ticks(p, s, t)
            self.rebuilt += len(rows)
            start = rows[-1][0]
            self._keep_lease()
        return last_id

    def _claim(self) -> None:
        """Take over entries a dead consumer of this group left pending (one consumer a group)."""
        start = "0-0"
        while True:
            out = self.client.xautoclaim(self.stream, self.group, self.consumer, min_idle_time=0,
                                         start_id=start, count=1000)
            start = out[0]
            if start == "0-0":
                break

    # -- the loop -----------------------------------------------------------------------------

    def _group_read(self, start: str) -> list:
        """XREADGROUP (no BLOCK) inside a script that first checks the lease: a consumer whose
        lease expired cannot take ticks from the group either (they would be pending under
        its name, out of the next holder's sight)."""
        try:
            got = self._scripts["read"](keys=[self.lease_key, self.stream],
                                        args=[self.lease or "", self.group, self.consumer, self.batch, start])
        except _redis().ResponseError as e:
            if "FENCED" in str(e):
                raise self._lost("it may not read the group's ticks") from None
            raise
        if not got:
            return []
        rows = [(i, dict(zip(flat[::2], flat[1::2])) if flat else {}) for i, flat in got[0][1]]
        if start == ">" and rows:
            self._delivered = rows[-1][0]
        return rows

    def _read(self, block_ms: int | None):
        if self.lease is None:
            raise LeaseLostError(f"this consumer holds no lease on {self.signals}: it cannot read")
        if self._pending:
            rows = self._group_read("0")
            if rows:
                return rows
            self._pending = False
        rows = self._group_read(">")
        if rows or block_ms is None:
            return rows
        # wait (outside the script, which may not block) for an entry after the last delivered one
        self.client.xread({self.stream: self._delivered}, count=1, block=block_ms)
        return self._group_read(">")

    def _apply(self, rows):
        """The signals of the rows not applied yet: (all ids, [(id, fields)])."""
        all_ids = [i for i, _ in rows]
        if self.last_id is not None:
            floor = _id(self.last_id)
            fresh = [r for r in rows if _id(r[0]) > floor]
            self.skipped += len(rows) - len(fresh)
            rows = fresh
        if not rows:
            self._last_batch = None
            return all_ids, []
        ids, p, s, t = _ticks(rows)
        pos, probs = self.pipe.replay_ticks(p, s, t)
        self._last_batch = (ids, p, t, pos, probs)
        out = []
        for i, tick_id in enumerate(ids):
            f = {"position": repr(float(pos[i]))}
            f.update({name: repr(float(probs[i, k])) for k, name in enumerate(self._fields)})
            out.append((tick_id, f))
        return all_ids, out

    def _commit(self, all_ids, out) -> None:
        """Publish and ack in one Lua script that first checks the lease still holds our token."""
        if self.lease is None:
            raise LeaseLostError(f"this consumer holds no lease on {self.signals}: it cannot publish")
        args = [self.lease, self.group, self.lease_ms, len(self._signal_fields), *self._signal_fields, len(out)]
        for tick_id, fields in out:
            args.append(tick_id)
            args.extend(fields[f] for f in self._signal_fields)
        args.extend(all_ids)
        try:
            self._scripts["publish"](keys=[self.lease_key, self.signals, self.stream], args=args)
        except _redis().ResponseError as e:
            if "FENCED" in str(e):
                raise self._lost("nothing of this batch was published") from None
            raise
        self._renewed = time.monotonic()
        if out:
            self.last_id = out[-1][0]
            self.applied += len(out)
            if self.on_signals is not None and self._last_batch is not None:
                self.on_signals(*self._last_batch)

    @_guarded
    def step(self, block_ms: int | None = None) -> int:
        """Read, apply and commit one batch; returns the entries it read (0: nothing new)."""
        self._keep_lease()
        rows = self._read(block_ms)
        if not rows:
            return 0
        all_ids, out = self._apply(rows)
        self._commit(all_ids, out)
        return len(rows)

    def run(self, *, idle_exit: float | None = None, max_ticks: int | None = None, block_ms: int = 200) -> int:
        """Consume until ``idle_exit`` seconds pass with nothing new (None: forever) or
        ``max_ticks`` entries were read; SIGTERM stops it after the batch in hand. Returns the
        entries read."""
        stop = []
        old = None
        try:
            old = _signal.signal(_signal.SIGTERM, lambda *_: stop.append(1))
        except ValueError:  # not the main thread
            pass
        read, idle_since = 0, time.monotonic()
        try:
            while not stop and (max_ticks is None or read < max_ticks):
                n = self.step(block_ms)
                read += n
                if n:
                    idle_since = time.monotonic()
                elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                    break
        finally:
            if old is not None:
                _signal.signal(_signal.SIGTERM, old)
        self.release()  # a clean stop: the next consumer need not wait for the lease to expire
        return read


__all__ = ["LeaseHeldError", "LeaseLostError", "RedisSignals", "StreamUnavailableError", "connect", "publish_ticks",
           "read_signals"]
