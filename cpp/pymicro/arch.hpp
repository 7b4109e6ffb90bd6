// One executor, compiled several times: the interface between an ISA build of
// kernels.inl and whoever dispatches to it (the Python module, the wasm ABI).
#pragma once

#include "parse.hpp"

namespace pymicro {

struct ArchOps {
  const char* name;   // "avx512", "avx2", "sse2", "generic", "wasm-simd128"
  uint32_t lanes;     // float32 lanes per vector
  uint32_t tile;      // samples per batched tile
  // Bytes of plan memory for a parsed blob (weights repacked for this ISA).
  uint64_t (*plan_bytes)(const BlobView* v);
  // Builds the plan into `mem` (64-byte aligned, plan_bytes long). Infallible
  // for a view that parse() accepted. The plan is immutable afterwards.
  void (*build_plan)(const BlobView* v, void* mem);
  // Floats of scratch one call to run() needs (64-byte aligned).
  uint64_t (*workspace_floats)(const void* plan);
  // Class probabilities for n rows of x (row-major, input_size each) into out
  // (n * n_classes). If attn is not null, writes the first attention layer's
  // weights (n * its input width). Rows holding NaN or Inf get NaN outputs; the
  // return value is how many rows did. No allocation; thread-safe per plan.
  uint64_t (*run)(const void* plan, const float* x, uint64_t n, float* out, float* attn,
                  float* workspace);
  // The roofline probe: `rounds` rounds of 12 independent vector FMAs (as many chains
  // as the micro-kernel keeps), writing a result to *sink so nothing is optimised away.
  // Returns the scalar multiply-adds done; timed by the caller, it gives this ISA's
  // peak FMA rate on this core, the ceiling any dense layer can reach.
  uint64_t (*fma_probe)(uint64_t rounds, float* sink);
  // y[i] = the kernels' own exp(x[i]) for i < n (for tests of its accuracy and range).
  void (*exp_into)(const float* x, float* y, uint64_t n);
  // run() on rows `stride` floats apart (>= input_size; the model reads the first input_size
  // of each): an ensemble member reading its run of the container's columns in place. Same
  // bits as run() row by row. pf[0..pf_bytes) is asked into the cache, spread over the tiles.
  uint64_t (*run_strided)(const void* plan, const float* x, uint64_t stride, uint64_t n, float* out,
                          float* attn, float* workspace, const void* pf, uint64_t pf_bytes);
};

}  // namespace pymicro
