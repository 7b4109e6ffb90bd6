// pymicro.wasm: the C ABI over the one blob parser and the one executor.
//
// This file is the whole wasm32 program. It includes the same headers the
// native module does (cpp/pymicro/parse.hpp, cpp/pymicro/kernels.inl) inside a
// namespace of its own with PM_LANES 4 (one v128 = four float32 lanes) and
// PM_NR 2, exactly as cpp/arch/arch_sse2.cpp does natively. It links no libc
// and imports nothing: the host sees exported functions and one exported
// linear memory, and nothing else. Memory is handed out by a bump allocator
// over that linear memory (see "Memory" in wasm/README.md); it grows with
// memory.grow, which the host's memory cap can refuse, and every export that
// needs memory reports that refusal instead of trapping.
//
// The exports, their contract and the call sequence are documented in
// wasm/README.md; keep the two in step (kAbiVersion below).
#include "pymicro/arch.hpp"

#define PM_LANES 4
#define PM_NR 2
#define PM_ARCH_NAME "wasm32-simd128"

namespace pymicro {
namespace arch_wasm {
#include "pymicro/kernels.inl"
}  // namespace arch_wasm
}  // namespace pymicro
#include "pymicro/container.hpp"  // ensembles: pm_load takes a PMBC container as well
#include "pymicro/stream.hpp"     // the incremental features (pm_stream_*): freestanding, no heap

#if !defined(__wasm32__)
#error "wasm/pymicro_wasm.cpp is the wasm32 build; the native build uses cpp/arch/*.cpp"
#endif
#if !defined(__wasm_simd128__) || !defined(__wasm_relaxed_simd__)
#error "build pymicro.wasm with SIMD128 and relaxed-simd (-msimd128 -mrelaxed-simd; zig: -mcpu=generic+simd128+relaxed_simd)"
#endif

using namespace pymicro;

#define PM_EXPORT(name) extern "C" __attribute__((export_name(#name), visibility("default")))

// The compiler may lower copies and zeroing loops to these calls; with no libc
// the program defines them itself (a plain byte loop; bulk-memory builds lower
// most of them to memory.copy / memory.fill anyway).
extern "C" {
void* memcpy(void* dst, const void* src, unsigned long n) {
  auto* d = static_cast<unsigned char*>(dst);
  auto* s = static_cast<const unsigned char*>(src);
  while (n--) *d++ = *s++;
  return dst;
}
void* memmove(void* dst, const void* src, unsigned long n) {
  auto* d = static_cast<unsigned char*>(dst);
  auto* s = static_cast<const unsigned char*>(src);
  if (d < s) {
    while (n--) *d++ = *s++;
  } else {
    d += n;
    s += n;
    while (n--) *--d = *--s;
  }
  return dst;
}
void* memset(void* dst, int c, unsigned long n) {
  auto* d = static_cast<unsigned char*>(dst);
  while (n--) *d++ = static_cast<unsigned char>(c);
  return dst;
}
}

extern "C" unsigned char __heap_base;  // provided by wasm-ld: first byte past data and stack

namespace {

constexpr uint32_t kAbiVersion = 1;
constexpr uint32_t kPage = 65536;

// Return codes of pm_load.
constexpr int32_t kOk = 0;
constexpr int32_t kBlobInvalid = 1;   // pm_error_message / pm_error_offset say why
constexpr int32_t kOutOfMemory = 2;   // memory.grow was refused (the host's cap)
constexpr int32_t kNoBlob = 3;        // pm_blob_alloc was not called, or size exceeds it

uint64_t align64(uint64_t n) { return (n + 63) & ~uint64_t(63); }

// ---------------------------------------------------------------- memory
//
// [__heap_base, 64-aligned) blob | plan | workspace | x | out | attn  -> memory end
// pm_blob_alloc resets the arena to an empty blob region; pm_load places the
// plan and workspace after the blob; pm_reserve places the row buffers after
// the workspace (and moves them on every call: they never hold state).

uint32_t g_base = 0;         // 64-aligned __heap_base
uint32_t g_blob = 0, g_blob_cap = 0, g_blob_size = 0;
uint32_t g_plan = 0, g_ws = 0, g_io = 0;  // g_io: first byte after the workspace
uint32_t g_x = 0, g_out = 0, g_attn = 0;
uint64_t g_rows = 0;         // rows the row buffers hold
bool g_loaded = false;

BlobView g_view;             // large (several KiB): a global, not on the stack
ContainerView g_cview;       // an ensemble's (larger still)
const EnsemblePlan* g_ens = nullptr;  // set when the loaded blob is a container
uint64_t g_params = 0;
Status g_status;
uint32_t g_attn_width = 0;

const ArchOps& ops() { return arch_wasm::ops; }

uint32_t base() {
  if (!g_base) g_base = uint32_t(align64(reinterpret_cast<uintptr_t>(&__heap_base)));
  return g_base;
}

// Makes [0, end) addressable, growing linear memory if needed. False when the
// end does not fit in wasm32's 4 GiB or the host refuses to grow.
bool ensure(uint64_t end) {
  if (end > (uint64_t(1) << 32) - kPage) return false;
  const uint64_t have = uint64_t(__builtin_wasm_memory_size(0)) * kPage;
  if (end <= have) return true;
  const uint64_t pages = (end - have + kPage - 1) / kPage;
  return __builtin_wasm_memory_grow(0, pages) != static_cast<decltype(__builtin_wasm_memory_grow(0, 0))>(-1);
}

void set_error(const char* text) {
  detail::Msg m(g_status.message, sizeof g_status.message);
  m.s(text);
  g_status.ok = false;
  g_status.offset = 0;
}

}  // namespace

// ---------------------------------------------------------------- exports

// ABI version of these exports (see wasm/README.md).
PM_EXPORT(pm_abi_version) uint32_t pm_abi_version() { return kAbiVersion; }

// Address of the NUL-terminated ISA name ("wasm32-simd128").
PM_EXPORT(pm_isa) uint32_t pm_isa() { return uint32_t(reinterpret_cast<uintptr_t>(ops().name)); }

// Rows the batched kernels process together (lanes x vectors of samples).
PM_EXPORT(pm_tile) uint32_t pm_tile() { return ops().tile; }

// Unloads any model and returns the address of `size` writable bytes where the
// host writes a blob (64-byte aligned), or 0 if memory cannot grow that far.
PM_EXPORT(pm_blob_alloc) uint32_t pm_blob_alloc(uint32_t size) {
  g_loaded = false;
  g_rows = 0;
  g_blob = base();
  g_blob_size = 0;
  g_blob_cap = 0;
  if (!ensure(uint64_t(g_blob) + (size ? size : 1))) {
    set_error("out of memory: the sandbox's memory cap is too small for this blob");
    return 0;
  }
  g_blob_cap = size;
  return g_blob;
}

// Parses and validates the `size` bytes written at pm_blob_alloc's address and
// builds the plan. 0: loaded; 1: invalid blob (pm_error_message/offset); 2: out
// of memory; 3: no blob buffer of that size.
PM_EXPORT(pm_load) int32_t pm_load(uint32_t size) {
  g_loaded = false;
  g_rows = 0;
  if (!g_blob || size > g_blob_cap) {
    set_error("no blob buffer of that size: call pm_blob_alloc first");
    return kNoBlob;
  }
  g_blob_size = size;
  g_status = Status();
  const uint8_t* b = reinterpret_cast<const uint8_t*>(uintptr_t(g_blob));
  g_ens = nullptr;
  const bool container = is_container(b, size);
  if (container ? !parse_container(b, size, &g_cview, &g_status, true)
                : !parse(b, size, &g_view, &g_status, true))
    return kBlobInvalid;
  const uint64_t plan = align64(uint64_t(g_blob) + size);
  const uint64_t plan_bytes = container ? ensemble_plan_bytes(g_cview, ops()) : ops().plan_bytes(&g_view);
  if (!ensure(plan + plan_bytes)) {
    set_error("out of memory building the plan: the sandbox's memory cap is too small for this model");
    return kOutOfMemory;
  }
  uint64_t ws_floats;
  if (container) {
    g_ens = build_ensemble_plan(g_cview, ops(), reinterpret_cast<void*>(uintptr_t(plan)));
    ws_floats = ensemble_workspace_floats(*g_ens);
    g_params = 0;
    for (uint32_t i = 0; i < g_cview.n_members; ++i) g_params += g_cview.members[i].blob.params;
    if (g_cview.has_meta) g_params += g_cview.meta.params;
    g_view = BlobView();  // what the shape exports read
    g_view.input_size = g_cview.input_size;
    g_view.n_classes = g_cview.n_classes;
    g_view.crc = g_cview.crc;
  } else {
    ops().build_plan(&g_view, reinterpret_cast<void*>(uintptr_t(plan)));
    ws_floats = ops().workspace_floats(reinterpret_cast<void*>(uintptr_t(plan)));
    g_params = g_view.params;
  }
  const uint64_t ws = align64(plan + plan_bytes);
  const uint64_t ws_bytes = 4 * ws_floats;
  if (!ensure(ws + ws_bytes)) {
    set_error("out of memory for the workspace: the sandbox's memory cap is too small for this model");
    return kOutOfMemory;
  }
  g_plan = uint32_t(plan);
  g_ws = uint32_t(ws);
  g_io = uint32_t(align64(ws + ws_bytes));
  g_attn_width = g_ens ? g_ens->attn_width : 0;
  for (uint32_t l = 0; l < g_view.n_layers && !g_attn_width; ++l)
    if (g_view.layers[l].kind == kAttention) g_attn_width = g_view.layers[l].in;
  g_loaded = true;
  return kOk;
}

// After a failed pm_load or pm_blob_alloc: the NUL-terminated message (its
// address) and the blob byte it names.
PM_EXPORT(pm_error_message) uint32_t pm_error_message() {
  return uint32_t(reinterpret_cast<uintptr_t>(g_status.message));
}
PM_EXPORT(pm_error_offset) uint64_t pm_error_offset() { return g_status.offset; }

// The loaded model's shape (0 before a successful pm_load).
PM_EXPORT(pm_input_size) uint32_t pm_input_size() { return g_loaded ? g_view.input_size : 0; }
PM_EXPORT(pm_n_classes) uint32_t pm_n_classes() { return g_loaded ? g_view.n_classes : 0; }
PM_EXPORT(pm_attn_width) uint32_t pm_attn_width() { return g_loaded ? g_attn_width : 0; }
PM_EXPORT(pm_params) uint64_t pm_params() { return g_loaded ? g_params : 0; }
PM_EXPORT(pm_checksum) uint32_t pm_checksum() { return g_loaded ? g_view.crc : 0; }

// Row buffers for up to `rows` rows: x (rows * input_size floats), out (rows *
// n_classes), attn (rows * attn_width). Returns x's address (64-aligned), or 0
// when no model is loaded, rows is 0, or memory cannot grow that far.
// pm_out / pm_attn give the other two; all three stay put until the next
// pm_reserve, pm_load or pm_blob_alloc.
PM_EXPORT(pm_reserve) uint32_t pm_reserve(uint32_t rows) {
  if (!g_loaded || !rows) return 0;
  const uint64_t x = g_io;
  const uint64_t out = align64(x + 4ull * rows * g_view.input_size);
  const uint64_t attn = align64(out + 4ull * rows * g_view.n_classes);
  const uint64_t end = align64(attn + 4ull * rows * g_attn_width);
  if (!ensure(end)) {
    g_rows = 0;
    set_error("out of memory: the sandbox's memory cap is too small for a batch of this size");
    return 0;
  }
  g_x = uint32_t(x);
  g_out = uint32_t(out);
  g_attn = uint32_t(attn);
  g_rows = rows;
  return g_x;
}
PM_EXPORT(pm_out) uint32_t pm_out() { return g_rows ? g_out : 0; }
PM_EXPORT(pm_attn) uint32_t pm_attn() { return g_rows && g_attn_width ? g_attn : 0; }

// Runs the first n rows of x into out (and the first attention layer's weights
// into attn when want_attn is non-zero). Returns how many rows held NaN or Inf
// (their outputs are NaN), or -1 when no model is loaded or n exceeds the
// reserved rows.
PM_EXPORT(pm_run) int64_t pm_run(uint32_t n, uint32_t want_attn) {
  if (!g_loaded || n > g_rows) return -1;
  if (!n) return 0;
  float* attn = want_attn && g_attn_width ? reinterpret_cast<float*>(uintptr_t(g_attn)) : nullptr;
  if (g_ens)
    return int64_t(run_ensemble(*g_ens, reinterpret_cast<const float*>(uintptr_t(g_x)), n,
                                reinterpret_cast<float*>(uintptr_t(g_out)), attn, nullptr,
                                reinterpret_cast<float*>(uintptr_t(g_ws))));
  return int64_t(ops().run(reinterpret_cast<const void*>(uintptr_t(g_plan)),
                           reinterpret_cast<const float*>(uintptr_t(g_x)), n,
                           reinterpret_cast<float*>(uintptr_t(g_out)), attn,
                           reinterpret_cast<float*>(uintptr_t(g_ws))));
}

// ---------------------------------------------------------------- the feature stream
//
// Optional exports (not part of ABI version 1's required set: a sandbox module need not
// have them). The loaded blob's feature names select the incremental features of
// cpp/pymicro/stream.hpp, the same state the native Pipeline runs; a bar in gives its
// feature row (float64, the blob's order) at pm_stream_row and as float32 in row 0 of x
// when rows are reserved, ready for pm_run(1, 0).

namespace {
// Raw storage, not a FeatureState global: a global with a constructor would be rebuilt by
// the __wasm_call_ctors that wasm-ld runs before each export of a module with no entry
// point. pm_stream_init copies a fresh state in (the type is trivially copyable).
alignas(16) unsigned char g_stream_mem[sizeof(stream::FeatureState)];
stream::FeatureState& st() { return *reinterpret_cast<stream::FeatureState*>(g_stream_mem); }
double g_stream_row[stream::kMaxOutputs];
bool g_stream_ready = false;
}  // namespace

// After pm_load of a single blob: selects its feature names. 0: ready; k > 0: the k-th
// name (1-based) is not one the stream computes; -1: no model loaded or an ensemble
// container; -2: the blob names no features or more than the stream serves.
PM_EXPORT(pm_stream_init) int32_t pm_stream_init() {
  g_stream_ready = false;
  if (!g_loaded || g_ens) return -1;
  const uint32_t n = g_view.n_features;
  if (!n || n > stream::kMaxOutputs || n != g_view.input_size) return -2;
  uint32_t ids[stream::kMaxOutputs];
  uint64_t pos = g_view.features_pos;
  for (uint32_t i = 0; i < n; ++i) {
    const StringRef name = next_string(g_view, &pos);
    ids[i] = stream::find_feature(name.data, uint32_t(name.size));
    if (ids[i] == stream::kFeatureCount) return int32_t(i + 1);
  }
  stream::FeatureState fresh;  // on the 256 KiB shadow stack
  fresh.select(ids, n);
  __builtin_memcpy(g_stream_mem, &fresh, sizeof fresh);
  g_stream_ready = true;
  return 0;
}

// Commits (commit != 0) or peeks at a bar. Returns 1 when every feature of its row is
// defined, 0 in warm-up, -1 when the stream is not set up or the bar is invalid (prices
// finite and > 0, volume finite and >= 0).
PM_EXPORT(pm_stream_bar) int32_t pm_stream_bar(double o, double h, double l, double c, double v, int32_t commit) {
  if (!g_stream_ready) return -1;
  const double inf = __builtin_inf();
  const bool ok = o > 0 && h > 0 && l > 0 && c > 0 && v >= 0 && o < inf && h < inf && l < inf && c < inf && v < inf;
  if (!ok) return -1;
  const stream::Bar bar{o, h, l, c, v};
  if (commit)
    st().commit(bar, g_stream_row);
  else
    st().peek(bar, g_stream_row);
  int32_t finite = 1;
  float* x = g_rows ? reinterpret_cast<float*>(uintptr_t(g_x)) : nullptr;
  for (uint32_t i = 0; i < st().size(); ++i) {
    const double y = g_stream_row[i];
    if (!(y == y) || y == inf || y == -inf) finite = 0;
    if (x) x[i] = float(y);
  }
  return finite;
}

// Address of the last row (pm_input_size float64 values), and the bars committed.
PM_EXPORT(pm_stream_row) uint32_t pm_stream_row() { return uint32_t(reinterpret_cast<uintptr_t>(g_stream_row)); }
PM_EXPORT(pm_stream_bars) uint64_t pm_stream_bars() { return g_stream_ready ? st().bars() : 0; }
