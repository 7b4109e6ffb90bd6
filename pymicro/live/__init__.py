"""Live: features updated bar by bar, and ticks turned into signals, by the C++ core.

    from pymicro.live.stream import FeatureStream, Pipeline
    pipe = Pipeline(model, bar="tick", bar_size=100)   # the blob names its features
    position = pipe.on_tick(price, size, ts)          # one native call per tick
    pipe.probabilities                                # the probabilities behind it

This layer sits above evaluation and below agents (``pyproject.toml``). Its pieces:
:mod:`pymicro.live.stream` (the incremental features and the pipeline),
:mod:`pymicro.live.redis_stream` (ticks from a Redis stream, signals to another, applied once),
:mod:`pymicro.live.sizing` (fractional Kelly with caps), :mod:`pymicro.live.paper` (paper
fills at the next tick), :mod:`pymicro.live.syndicate` (the SQLite ledger) and
:mod:`pymicro.live.predictions` (the bounded prediction log and its performance report).
Paper trading only.
"""
