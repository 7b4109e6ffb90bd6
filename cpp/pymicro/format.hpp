// pymicro blob format v1 (.pmb): constants and on-disk records.
//
// The normative description is docs/blob-format.md; this header mirrors it.
// All integers are little-endian. A blob is, in order:
//
//   header (128 B) | layer table (32 B each) | tensor table (32 B each) |
//   string section, zero-padded to 64 | float32 tensors, each 64-aligned |
//   footer (8 B: CRC-32 of everything before it, then "PMBE")
//
// Every section offset is stored *and* derivable from the counts; the parser
// demands that the two agree, so a blob has exactly one valid layout.
//
// Freestanding: this header and everything under cpp/pymicro/ use no C or C++
// library, so the same code compiles natively and to wasm32 with no libc.
#pragma once

#include <stddef.h>
#include <stdint.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pymicro reads little-endian blobs in place and needs a little-endian target"
#endif

namespace pymicro {

constexpr uint32_t kVersion = 1;
constexpr uint32_t kHeaderSize = 128;
constexpr uint32_t kRecordSize = 32;
constexpr uint32_t kFooterSize = 8;
constexpr uint32_t kAlign = 64;

constexpr uint32_t kFlagNormalization = 1u;  // tensors 0 and 1 are mean and std

// Hard limits of the core (a blob beyond them is refused, not truncated).
constexpr uint32_t kMaxWidth = 4096;      // any layer width, input included
constexpr uint32_t kMaxClasses = 256;
constexpr uint32_t kMaxLayers = 64;       // weighted layers (dense or attention)
constexpr uint32_t kMaxTensors = 2 + 4 * kMaxLayers;
constexpr uint64_t kMaxParams = 1ull << 24;  // 64 MiB of float32 weights
constexpr uint64_t kMaxStringsSize = 1ull << 20;
constexpr uint32_t kMaxLabelBytes = 255;  // labels, feature names, metadata keys
constexpr uint32_t kMaxMetaEntries = 64;
constexpr uint32_t kMaxMetaValueBytes = 4096;

enum LayerKind : uint32_t { kDense = 1, kAttention = 2 };
// The dense layers' activations, the one C++ table: X(enumerator, code in the blob, name).
// The enum, the parser's check, the names pymicro._core reports (_core.ACTIVATIONS) and the
// kernels' dispatch are generated from it; the kernel itself is activate<> in kernels.inl
// (a missing one is a compile error there). The Python table is pymicro/activations.py,
// and tests/test_spec.py keeps the two equal.
#define PM_ACTIVATIONS(X) \
  X(kLinear, 0, "linear") \
  X(kRelu, 1, "relu")     \
  X(kTanh, 2, "tanh")     \
  X(kSigmoid, 3, "sigmoid") \
  X(kGelu, 4, "gelu")

enum Activation : uint32_t {
#define PM_X_ENUM(id, code, name) id = code,
  PM_ACTIVATIONS(PM_X_ENUM)
#undef PM_X_ENUM
};

// The activation's name, or nullptr for a code no activation has.
constexpr const char* activation_name(uint32_t code) {
  switch (code) {
#define PM_X_NAME(id, c, name) case c: return name;
    PM_ACTIVATIONS(PM_X_NAME)
#undef PM_X_NAME
  }
  return nullptr;
}
constexpr bool valid_activation(uint32_t code) { return activation_name(code) != nullptr; }
enum TensorRole : uint32_t {
  kNormMean = 1, kNormStd = 2,
  kDenseW = 3, kDenseB = 4,
  kAttnWa = 5, kAttnBa = 6, kAttnWv = 7, kAttnBv = 8,
};
constexpr uint32_t kDtypeF32 = 1;

// On-disk records, for reference; the parser reads fields with explicit
// little-endian loads at fixed offsets rather than casting bytes to structs.
struct HeaderV1 {
  char magic[4];            //  0: "PMB1" ("PMBC" is reserved for ensemble containers)
  uint32_t version;         //  4: 1
  uint32_t header_size;     //  8: 128
  uint32_t flags;           // 12: bit 0 = normalisation present; other bits 0
  uint64_t total_size;      // 16: bytes of the whole blob, footer included
  uint32_t input_size;      // 24: 1..4096
  uint32_t n_classes;       // 28: 2..256
  uint32_t n_layers;        // 32: 1..64
  uint32_t n_tensors;       // 36: 2*norm + sum of per-layer tensor counts
  uint64_t layers_offset;   // 40: = 128
  uint64_t tensors_offset;  // 48: = layers_offset + 32 * n_layers
  uint64_t strings_offset;  // 56: = tensors_offset + 32 * n_tensors
  uint64_t strings_size;    // 64: bytes of string data (no padding), <= 1 MiB
  uint64_t data_offset;     // 72: = align64(strings_offset + strings_size)
  uint64_t data_size;       // 80: multiple of 64; total_size = data_offset + data_size + 8
  uint8_t reserved[40];     // 88: zero
};

struct LayerRecordV1 {
  uint32_t kind;          // LayerKind
  uint32_t activation;    // Activation for dense; 0 for attention
  uint32_t in_size;       // = previous layer's out_size (input_size for the first)
  uint32_t out_size;      // 1..4096; the last layer is dense, linear, out = n_classes
  uint32_t first_tensor;  // index of its first tensor; tensors are in layer order
  uint32_t n_tensors;     // 2 for dense (W, b), 4 for attention (W_a, b_a, W_v, b_v)
  uint32_t reserved[2];   // zero
};

struct TensorRecordV1 {
  uint32_t role;     // TensorRole
  uint32_t dtype;    // 1 = float32
  uint32_t rows;     // matrices are row-major [rows][cols]
  uint32_t cols;     // 1 for vectors
  uint64_t offset;   // from the blob's first byte; a multiple of 64
  uint64_t nbytes;   // rows * cols * 4
};

static_assert(sizeof(HeaderV1) == kHeaderSize, "header layout");
static_assert(sizeof(LayerRecordV1) == kRecordSize, "layer record layout");
static_assert(sizeof(TensorRecordV1) == kRecordSize, "tensor record layout");

}  // namespace pymicro
