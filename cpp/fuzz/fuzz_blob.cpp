// Fuzz target for the blob parser and the executor behind it.
//
// Build it with libFuzzer (clang, -fsanitize=fuzzer,address,undefined) or, with
// any C++17 compiler, with cpp/fuzz/driver.cpp as main(); the exact commands are
// in docs/blob-format.md, "Fuzzing and sanitizers".
//
// Every input is parsed twice: with the checksum (what load() does) and without
// it, so that mutated bytes reach the deep field checks even though they break
// the CRC. A blob the parser accepts must then be safe to use: its strings are
// walked, a plan is built and one row and a batch (a full tile plus a partial
// one) run through the baseline executor. Besides the sanitizers, the harness
// traps on broken invariants: an error offset past the end, an unterminated
// message, a probability outside [0, 1], or a row whose single-row and batched
// results differ.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pymicro/arch.hpp"

// The baseline (4 lanes, portable vector code) unless an x86 ISA build is asked for
// with -DPM_FUZZ_AVX512 or -DPM_FUZZ_AVX2 and the matching -m flags of CMakeLists.txt:
// then the same kernels as cpp/arch/arch_avx512.cpp or arch_avx2.cpp (wider tiles, the
// 8x8 transpose, MAXPS/MINPS, VSCALEFPS) run under the sanitizers too.
#if defined(PM_FUZZ_AVX512)
#include <immintrin.h>
#define PM_X86_MINMAX 1
#define PM_LANES 16
#define PM_NR 3
#define PM_MR 4
#define PM_ARCH_NAME "fuzz-avx512"
#elif defined(PM_FUZZ_AVX2)
#include <immintrin.h>
#define PM_X86_MINMAX 1
#define PM_LANES 8
#define PM_NR 3
#define PM_ARCH_NAME "fuzz-avx2"
#else
#define PM_LANES 4
#define PM_NR 2
#define PM_ARCH_NAME "fuzz-baseline"
#endif

namespace pymicro {
namespace arch_fuzz {
#include "pymicro/kernels.inl"
}  // namespace arch_fuzz
}  // namespace pymicro
#include "pymicro/container.hpp"  // ensembles: a PMBC input goes through parse_container

namespace {

using namespace pymicro;

[[noreturn]] void invariant_failed(const char* what) {
  fprintf(stderr, "fuzz_blob: invariant violated: %s\n", what);
  abort();
}
#define CHECK(cond) \
  do { if (!(cond)) invariant_failed(#cond); } while (0)

void check_status(const Status& st, uint64_t size) {
  CHECK(!st.ok);
  CHECK(st.offset <= size);
  CHECK(memchr(st.message, 0, sizeof st.message) != nullptr);
  CHECK(st.message[0] != 0);
}

// Strings of an accepted blob must lie inside its string section.
void walk_strings(const BlobView& v) {
  const uint8_t* lo = v.base;
  const uint8_t* hi = v.base + v.size - kFooterSize;
  auto walk = [&](uint64_t pos, uint64_t n) {
    for (uint64_t i = 0; i < n; ++i) {
      StringRef s = next_string(v, &pos);
      CHECK(reinterpret_cast<const uint8_t*>(s.data) >= lo);
      CHECK(reinterpret_cast<const uint8_t*>(s.data) + s.size <= hi);
      volatile uint8_t sink = 0;
      for (uint32_t k = 0; k < s.size; ++k) sink ^= uint8_t(s.data[k]);
      (void)sink;
    }
  };
  walk(v.labels_pos, v.n_classes);
  walk(v.features_pos, v.n_features);
  walk(v.meta_pos, 2ull * v.n_meta);
}

void* aligned(uint64_t bytes) {
  void* p = aligned_alloc(64, (bytes + 63) / 64 * 64);
  CHECK(p != nullptr);
  return p;
}

void execute(const BlobView& v, const uint8_t* data, size_t size) {
  const ArchOps& ops = arch_fuzz::ops;
  void* plan = aligned(ops.plan_bytes(&v));
  ops.build_plan(&v, plan);
  float* ws = static_cast<float*>(aligned(4 * ops.workspace_floats(plan)));

  uint32_t attn_width = 0;
  for (uint32_t l = 0; l < v.n_layers && !attn_width; ++l)
    if (v.layers[l].kind == kAttention) attn_width = v.layers[l].in;

  // A tile and a bit (forces a partial tile); the rows come from the input bytes.
  const uint64_t rows = arch_fuzz::T + 3, I = v.input_size, C = v.n_classes;
  float* x = static_cast<float*>(malloc(4 * rows * I));
  float* out = static_cast<float*>(malloc(4 * rows * C));
  float* one = static_cast<float*>(malloc(4 * C));
  float* attn = attn_width ? static_cast<float*>(malloc(4 * rows * attn_width)) : nullptr;
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < size && i < 4096; ++i) h = (h ^ data[i]) * 16777619u;
  for (uint64_t i = 0; i < rows * I; ++i) {
    h = h * 1664525u + 1013904223u;
    x[i] = float(int32_t(h >> 8) - (1 << 23)) / float(1 << 21);  // about [-4, 4)
  }
  const uint64_t nan_row = rows - 2;
  x[nan_row * I + (h % I)] = __builtin_nanf("");

  uint64_t bad = ops.run(plan, x, rows, out, attn, ws);
  CHECK(bad >= 1 && bad <= rows);  // the NaN row is always reported
  for (uint64_t r = 0; r < rows; ++r) {
    for (uint64_t c = 0; c < C; ++c) {
      float p = out[r * C + c];
      if (r == nan_row) CHECK(p != p);
      if (p == p) CHECK(p >= 0.0f && p <= 1.0f + 1e-6f);
    }
    // One row through the latency path must give bit-identical probabilities.
    ops.run(plan, x + r * I, 1, one, nullptr, ws);
    bool finite = true;
    for (uint64_t c = 0; c < C; ++c) finite = finite && one[c] == one[c] && out[r * C + c] == out[r * C + c];
    if (finite) CHECK(memcmp(one, out + r * C, 4 * C) == 0);
    // A row is bad (NaN: bad input, or float32 overflow inside) alike on both paths.
    CHECK((one[0] != one[0]) == (out[r * C] != out[r * C]));
  }
  ops.run(plan, x, 1, out, attn, ws);  // the single-row path with attention output

  free(attn);
  free(one);
  free(out);
  free(x);
  free(ws);
  free(plan);
}

// An accepted container: its strings lie inside it, and the whole ensemble runs (a chunk
// and a bit, through every combiner's code) with the same invariants as a single model.
void execute_container(const ContainerView& v, const uint8_t* data, size_t size) {
  const uint8_t* lo = v.base;
  const uint8_t* hi = v.base + v.size - kFooterSize;
  uint64_t pos = v.labels_pos;
  const uint64_t counts[4] = {v.n_classes, v.n_members, v.n_features, 2ull * v.n_meta};
  const uint64_t starts[4] = {v.labels_pos, v.names_pos, v.features_pos, v.meta_pos};
  for (int list = 0; list < 4; ++list) {
    pos = starts[list];
    for (uint64_t i = 0; i < counts[list]; ++i) {
      StringRef s = next_container_string(v, &pos);
      CHECK(reinterpret_cast<const uint8_t*>(s.data) >= lo);
      CHECK(reinterpret_cast<const uint8_t*>(s.data) + s.size <= hi);
    }
  }
  for (uint32_t m = 0; m < v.n_members; ++m) {
    walk_strings(v.members[m].blob);
    CHECK(v.members[m].blob.base >= lo && v.members[m].blob.base + v.members[m].blob.size <= hi);
  }
  const ArchOps& ops = arch_fuzz::ops;
  void* mem = aligned(ensemble_plan_bytes(v, ops));
  const EnsemblePlan* P = build_ensemble_plan(v, ops, mem);
  float* ws = static_cast<float*>(aligned(4 * ensemble_workspace_floats(*P)));
  const uint64_t rows = kEnsembleChunk + 5, I = v.input_size, C = v.n_classes;
  float* x = static_cast<float*>(malloc(4 * rows * I));
  float* out = static_cast<float*>(malloc(4 * rows * C));
  float* one = static_cast<float*>(malloc(4 * C));
  float* attn = P->attn_width ? static_cast<float*>(malloc(4 * rows * P->attn_width)) : nullptr;
  float* members = static_cast<float*>(malloc(4 * rows * P->n_members * C));
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < size && i < 4096; ++i) h = (h ^ data[i]) * 16777619u;
  for (uint64_t i = 0; i < rows * I; ++i) {
    h = h * 1664525u + 1013904223u;
    x[i] = float(int32_t(h >> 8) - (1 << 23)) / float(1 << 21);
  }
  const uint64_t nan_row = rows - 2;
  x[nan_row * I + (h % I)] = __builtin_nanf("");
  uint64_t bad = run_ensemble(*P, x, rows, out, attn, members, ws);
  CHECK(bad >= 1 && bad <= rows);
  for (uint64_t r = 0; r < rows; ++r) {
    for (uint64_t c = 0; c < C; ++c) {
      float p = out[r * C + c];
      if (r == nan_row) CHECK(p != p);
      if (p == p) CHECK(p >= 0.0f && p <= 1.0f + 1e-5f);
    }
    if (r % 37 && r + 1 != rows) continue;  // a sample of rows alone: the batch's bits
    run_ensemble(*P, x + r * I, 1, one, nullptr, nullptr, ws);
    bool finite = true;
    for (uint64_t c = 0; c < C; ++c) finite = finite && one[c] == one[c] && out[r * C + c] == out[r * C + c];
    if (finite) CHECK(memcmp(one, out + r * C, 4 * C) == 0);
    CHECK((one[0] != one[0]) == (out[r * C] != out[r * C]));
  }
  free(members);
  free(attn);
  free(one);
  free(out);
  free(x);
  free(ws);
  free(mem);
}

void fuzz_container(const uint8_t* blob, size_t size) {
  static ContainerView v;  // about 100 KiB: keep it off the stack
  Status st;
  bool with_crc = parse_container(blob, size, &v, &st, true);
  if (!with_crc) check_status(st, size);
  Status st2;
  bool ok = parse_container(blob, size, &v, &st2, false);
  if (!ok) check_status(st2, size);
  if (with_crc) CHECK(ok);
  if (ok) {
    CHECK(v.base == blob && v.size == size);
    execute_container(v, blob, size);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exactly sized heap copy, so that reading one byte past the end is caught.
  uint8_t* blob = static_cast<uint8_t*>(malloc(size ? size : 1));
  if (size) memcpy(blob, data, size);

  if (is_container(blob, size)) {
    fuzz_container(blob, size);
    free(blob);
    return 0;
  }
  static BlobView v;  // about 10 KiB: keep it off the stack
  Status st;
  bool with_crc = parse(blob, size, &v, &st, true);
  if (!with_crc) check_status(st, size);
  Status st2;
  bool ok = parse(blob, size, &v, &st2, false);
  if (!ok) check_status(st2, size);
  if (with_crc) CHECK(ok);
  if (ok) {
    CHECK(v.base == blob && v.size == size);
    walk_strings(v);
    execute(v, blob, size);
  }
  free(blob);
  return 0;
}
