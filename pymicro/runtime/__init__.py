"""The runtime: a spec, the blob writer, and the model that runs a blob.

``spec`` (architectures and presets), ``blob`` (freeze: the only blob *writer*; the parser is
the C++ core's), ``model`` (load, Model, predict over the native core), ``reference`` (numpy,
float64), ``wasm`` and ``sandbox`` (the same core in wasmtime), ``onnx_export``, ``inputs``
(the input policy every backend shares) and ``bench`` (timing against peers).

Needs numpy and the compiled core, nothing else: wasmtime and onnx are imported only by the
backends that use them.
"""
