"""Live: features updated bar by bar, and ticks turned into signals, by the C++ core.

    from pymicro.live.stream import FeatureStream, Pipeline
    pipe = Pipeline(model, bar="tick", bar_size=100)   # the blob names its features
    position = pipe.on_tick(price, size, ts)          # one native call per tick
    pipe.probabilities                                # the probabilities behind it

This layer sits above evaluation and below agents (``pyproject.toml``). Its pieces:
:mod:`pymicro.live.stream` (the incremental features and the pipeline),
:mod:`pymicro.live.baselines` (the pure-Python and numpy peers the benchmarks and tests
compare against).
"""
