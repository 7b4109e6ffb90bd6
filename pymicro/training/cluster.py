"""Dask, the engine for everything pymicro runs in parallel: tuning trials, walk-forward
blocks, per-symbol and federated training.

    from pymicro.training.cluster import dask_client, scatter

    with dask_client() as client:                       # a LocalCluster sized to this machine
        data = scatter(client, {"X": X, "y": y})        # sent to the workers once, by reference
        futures = [client.submit(fit_one, data, k, pure=False) for k in range(8)]
        results = client.gather(futures)

    with dask_client("tcp://10.0.0.5:8786") as client:  # a real cluster (or $PYMICRO_DASK_SCHEDULER)
        ...

The default is an in-process ``LocalCluster`` of single-threaded worker *processes*
(tinygrad keeps global state, so one training per process), one per core this process may
use. A scheduler address (``scheduler=`` or ``$PYMICRO_DASK_SCHEDULER``) connects to a running
cluster instead (``dask scheduler`` and ``dask worker tcp://...`` on the machines, each with
``pip install 'pymicro[tune]'``). An address that does not answer raises
:class:`pymicro.ClusterError` within ``timeout`` seconds (default 5).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from pymicro.errors import ClusterError, require

__all__ = ["CONNECT_TIMEOUT", "SCHEDULER_ENV", "dask_client", "default_workers", "scatter", "scheduler_address",
           "worker_count"]

SCHEDULER_ENV = "PYMICRO_DASK_SCHEDULER"
"""Environment variable naming a Dask scheduler (``tcp://host:port``) to use instead of a local cluster."""

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a scheduler to answer before :class:`ClusterError`."""


def _distributed():
    return require("distributed", "tune", purpose="Dask clusters")


def default_workers() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def scheduler_address(scheduler: str | None = None) -> str | None:
    """``scheduler`` if given, else ``$PYMICRO_DASK_SCHEDULER`` if set, else None (a local cluster)."""
    address = scheduler if scheduler is not None else os.environ.get(SCHEDULER_ENV) or None
    if address is not None and (not isinstance(address, str) or "://" not in address and ":" not in address):
        raise ClusterError(f"a Dask scheduler address looks like tcp://host:port, got {address!r}")
    return address


@contextlib.contextmanager
def dask_client(scheduler=None, *, n_workers: int | None = None, timeout: float = CONNECT_TIMEOUT,
                processes: bool = True) -> Iterator:
    """A ``distributed.Client``, closed (with its local cluster) on exit.

    ``scheduler``: an existing ``Client`` (used as is, not closed), a scheduler address, or
    None (``$PYMICRO_DASK_SCHEDULER``, else a new ``LocalCluster`` of ``n_workers``
    single-threaded worker processes, default :func:`default_workers`). ``processes=False``
    runs the local workers as threads of this process (for callables that cannot be pickled;
    tinygrad training is then serialised by its global state, so keep the default).
    """
    distributed = _distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    address = scheduler_address(scheduler)
    cluster = None
    if address is not None:
        try:
            client = distributed.Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise ClusterError(f"the Dask scheduler at {address} did not answer within {timeout:g} s "
                               f"({type(e).__name__}: {e}); start one (`dask scheduler`, then `dask worker "
                               f"{address}`), fix the address, or unset {SCHEDULER_ENV} to use a local "
                               "cluster") from None
        except ValueError as e:
            raise ClusterError(f"cannot use the Dask scheduler address {address!r}: {e}") from None
    else:
        n = default_workers() if n_workers is None else n_workers
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ClusterError(f"n_workers must be an int >= 1, got {n_workers!r}")
        try:
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                                               dashboard_address=":0", silence_logs=logging.ERROR)
            client = distributed.Client(cluster, set_as_default=False)
        except Exception as e:  # noqa: BLE001 - any failure to start is the same story to the caller
            if cluster is not None:
                cluster.close()
            raise ClusterError(f"could not start a local Dask cluster of {n} workers: {e}") from e
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def worker_count(client) -> int:
    """Workers the client's scheduler has now."""
    return len(client.scheduler_info(n_workers=-1)["workers"]) if _accepts_n_workers(client) else \
        len(client.scheduler_info()["workers"])


def _accepts_n_workers(client) -> bool:
    import inspect

    return "n_workers" in inspect.signature(client.scheduler_info).parameters


def scatter(client, data):
    """Send ``data`` to every worker once and return a future standing for it: tasks given the
    future receive the object itself, so large arrays travel once, not once per task."""
    # a list of one: scatter splits a top-level collection (a dict by its keys), never its elements
    return client.scatter([data], broadcast=True, hash=False)[0]


def train_remote(spec, X_train, y_train, X_val, y_val, *, scheduler=None, progress=None, **train_kwargs):
    """:func:`pymicro.training.train.train` run as one task on a Dask worker (the cluster of
    :func:`dask_client`); the arrays are scattered to it. ``progress`` is replayed from the
    returned history once the task is done (the worker cannot call back into this process)."""
    from pymicro.training.train import train

    local = scheduler_address(scheduler) is None and not _is_client(scheduler)
    # locally one task needs one worker, and a thread of this process runs it without re-importing
    # the caller's __main__ (a spawned worker process would: a script without a main guard breaks)
    with dask_client(scheduler, n_workers=1 if local else None, processes=not local) as client:
        data = client.scatter((X_train, y_train, X_val, y_val), hash=False)
        future = client.submit(_train_task, spec, data, train_kwargs, train, pure=False)
        result = future.result()
    if progress is not None:
        h = result.history
        total = int(train_kwargs.get("epochs", 100))
        for i in range(len(h["val_loss"])):
            progress(i + 1, total, {k: h[k][i] for k in ("train_loss", "val_loss", "train_acc", "val_acc", "seconds")}
                     | {"best_epoch": result.best_epoch})
    return result


def _is_client(obj) -> bool:
    return type(obj).__name__ == "Client" and hasattr(obj, "submit")


def _train_task(spec, data, train_kwargs, train):
    X_train, y_train, X_val, y_val = data
    return train(spec, X_train, y_train, X_val, y_val, **train_kwargs)
