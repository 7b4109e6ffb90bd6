// The one blob parser and validator. Everything else reads blobs through it.
//
// parse() trusts nothing: it checks every field against the byte count it was
// given before it uses it, so a hostile blob yields a Status naming the byte at
// fault, never an out-of-bounds read. On success the BlobView points into the
// caller's bytes, which must outlive it.
#pragma once

#include "format.hpp"

namespace pymicro {

struct Status {
  bool ok = true;
  uint64_t offset = 0;  // the byte where the problem was found
  char message[200] = {0};
};

struct TensorView {
  const uint8_t* data = nullptr;  // rows*cols little-endian float32, maybe unaligned
  uint32_t rows = 0, cols = 0;
  float at(uint64_t i) const {
    float f;
    __builtin_memcpy(&f, data + 4 * i, 4);
    return f;
  }
};

struct LayerView {
  uint32_t kind = 0, activation = 0, in = 0, out = 0;
  TensorView t[4];  // dense: W, b; attention: W_a, b_a, W_v, b_v
};

struct StringRef {
  const char* data;
  uint32_t size;
};

struct BlobView {
  const uint8_t* base = nullptr;
  uint64_t size = 0;
  uint32_t input_size = 0, n_classes = 0, n_layers = 0, n_tensors = 0, flags = 0;
  bool has_norm = false;
  TensorView mean, std;
  LayerView layers[kMaxLayers];
  uint64_t params = 0;
  uint32_t n_features = 0, n_meta = 0;
  // positions of the first string of each list in the string section
  uint64_t labels_pos = 0, features_pos = 0, meta_pos = 0;
  uint32_t crc = 0;
};

namespace detail {

inline uint32_t rd32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
inline uint64_t rd64(const uint8_t* p) { return uint64_t(rd32(p)) | uint64_t(rd32(p + 4)) << 32; }
inline uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }
inline uint64_t align64(uint64_t n) { return (n + 63) & ~uint64_t(63); }

// Small freestanding message builder (no snprintf in a wasm32 build).
struct Msg {
  char* out;
  uint32_t n = 0, cap;
  Msg(char* o, uint32_t c) : out(o), cap(c) { out[0] = 0; }
  Msg& s(const char* t) {
    while (*t && n + 1 < cap) out[n++] = *t++;
    out[n] = 0;
    return *this;
  }
  Msg& u(uint64_t v) {
    char tmp[21];
    int k = 0;
    do { tmp[k++] = char('0' + v % 10); v /= 10; } while (v);
    while (k && n + 1 < cap) out[n++] = tmp[--k];
    out[n] = 0;
    return *this;
  }
};

// The CRC-32 (IEEE 802.3, reflected 0xEDB88320) table, computed by the compiler: no
// initialisation at run time, so nothing for concurrent parsers to race on (a lazily
// filled static table with a plain-load "ready" flag was a data race).
struct Crc32Table {
  uint32_t v[256];
};
constexpr Crc32Table make_crc32_table() {
  Crc32Table t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t.v[i] = c;
  }
  return t;
}
inline constexpr Crc32Table kCrc32Table = make_crc32_table();
static_assert(kCrc32Table.v[1] == 0x77073096u && kCrc32Table.v[255] == 0x2D02EF8Du, "CRC-32 table");

inline uint32_t crc32(const uint8_t* p, uint64_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint64_t i = 0; i < n; ++i) c = kCrc32Table.v[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

inline bool valid_utf8(const uint8_t* p, uint32_t n) {
  uint32_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    uint32_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || i + len > n) return false;
    uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (uint32_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// Reads the string section: u32 counts and u16-length strings, each bounded, NUL-free UTF-8
// that stays inside [pos, end). On a bad string `m` says what and `pos` is where it went wrong.
// Shared by the model parser and the container parser (container.hpp).
struct StringCursor {
  const uint8_t* b;
  uint64_t pos, end;
  Msg& m;

  bool count(uint32_t* out) {
    if (pos + 4 > end) return false;
    *out = rd32(b + pos);
    pos += 4;
    return true;
  }

  bool str(uint32_t min_len, uint32_t max_len, const char* what) {
    if (pos + 2 > end) {
      m.s(what).s(" runs past the string section");
      return false;
    }
    uint32_t n = rd16(b + pos);
    if (n < min_len || n > max_len || pos + 2 + n > end) {
      m.s(what).s(" has length ").u(n).s(", allowed ").u(min_len).s("..").u(max_len)
          .s(" within the string section");
      return false;
    }
    const uint8_t* p = b + pos + 2;
    for (uint32_t i = 0; i < n; ++i)
      if (!p[i]) {
        m.s(what).s(" contains a NUL byte");
        pos += 2 + i;
        return false;
      }
    if (!valid_utf8(p, n)) {
      m.s(what).s(" is not valid UTF-8");
      return false;
    }
    pos += 2 + n;
    return true;
  }

  // The string section's tail, the same in a model blob and a container (after their
  // labels, and a container's member names): 0 or input_size feature names, the metadata
  // pairs, nothing left over, then zero padding up to pad_end. False with the message in m
  // and *at the byte at fault (a wrong count is reported at the count, not after it).
  bool tail(uint32_t input_size, uint64_t pad_end, uint32_t* n_features, uint64_t* features_pos,
            uint32_t* n_meta, uint64_t* meta_pos, uint64_t* at) {
    *at = pos;
    if (!count(n_features) || (*n_features && *n_features != input_size)) {
      m.s("feature name count must be 0 or input_size=").u(input_size);
      return false;
    }
    *features_pos = pos;
    for (uint32_t i = 0; i < *n_features; ++i)
      if (!str(1, kMaxLabelBytes, "a feature name")) return *at = pos, false;
    *at = pos;
    if (!count(n_meta) || *n_meta > kMaxMetaEntries) {
      m.s("metadata count missing or over ").u(kMaxMetaEntries);
      return false;
    }
    *meta_pos = pos;
    for (uint32_t i = 0; i < *n_meta; ++i)
      if (!str(1, kMaxLabelBytes, "a metadata key") || !str(0, kMaxMetaValueBytes, "a metadata value"))
        return *at = pos, false;
    if (pos != end) {
      m.s("string section has ").u(end - pos).s(" unexplained trailing bytes");
      return *at = pos, false;
    }
    for (uint64_t p = end; p < pad_end; ++p)
      if (b[p]) {
        m.s("padding after the string section is not zero");
        return *at = p, false;
      }
    return true;
  }
};

}  // namespace detail

// Reads the string at base + *pos (already validated by parse or parse_container) and
// advances *pos.
inline StringRef next_string(const uint8_t* base, uint64_t* pos) {
  uint32_t n = detail::rd16(base + *pos);
  StringRef r{reinterpret_cast<const char*>(base + *pos + 2), n};
  *pos += 2 + n;
  return r;
}
inline StringRef next_string(const BlobView& v, uint64_t* pos) { return next_string(v.base, pos); }

inline bool parse(const uint8_t* b, uint64_t size, BlobView* v, Status* st,
                  bool check_crc = true) {
  using namespace detail;
  Msg m(st->message, sizeof st->message);
  auto fail = [&](uint64_t off) {
    st->ok = false;
    st->offset = off;
    return false;
  };
  st->ok = true;
  if (size < kHeaderSize + kFooterSize) {
    m.s("blob is ").u(size).s(" bytes; the smallest possible blob is ").u(kHeaderSize + kFooterSize);
    return fail(size);
  }
  if (b[0] == 'P' && b[1] == 'M' && b[2] == 'B' && b[3] == 'C') {
    m.s("this is an ensemble container (PMBC), not a single model: load it with pymicro.load, "
        "which reads containers (cpp/pymicro/container.hpp)");
    return fail(0);
  }
  if (!(b[0] == 'P' && b[1] == 'M' && b[2] == 'B' && b[3] == '1')) {
    m.s("bad magic: not a pymicro blob (expected \"PMB1\")");
    return fail(0);
  }
  uint32_t version = rd32(b + 4);
  if (version != kVersion) {
    m.s("unsupported blob version ").u(version).s("; this core reads version ").u(kVersion);
    return fail(4);
  }
  if (rd32(b + 8) != kHeaderSize) {
    m.s("header_size is ").u(rd32(b + 8)).s(", version 1 needs ").u(kHeaderSize);
    return fail(8);
  }
  uint32_t flags = rd32(b + 12);
  if (flags & ~kFlagNormalization) {
    m.s("unknown flag bits set in flags=").u(flags);
    return fail(12);
  }
  uint64_t total = rd64(b + 16);
  if (total != size) {
    m.s("header says the blob is ").u(total).s(" bytes but ").u(size)
        .s(" were given (truncated or padded)");
    return fail(16);
  }
  if (!(b[size - 4] == 'P' && b[size - 3] == 'M' && b[size - 2] == 'B' && b[size - 1] == 'E')) {
    m.s("footer magic \"PMBE\" missing (truncated or corrupted blob)");
    return fail(size - 4);
  }
  uint32_t crc = crc32(b, size - kFooterSize);
  if (check_crc && crc != rd32(b + size - 8)) {
    m.s("checksum mismatch: the blob is corrupted");
    return fail(size - 8);
  }
  v->crc = crc;
  v->base = b;
  v->size = size;
  v->flags = flags;
  v->has_norm = flags & kFlagNormalization;
  v->input_size = rd32(b + 24);
  v->n_classes = rd32(b + 28);
  v->n_layers = rd32(b + 32);
  v->n_tensors = rd32(b + 36);
  if (v->input_size < 1 || v->input_size > kMaxWidth) {
    m.s("input_size ").u(v->input_size).s(" is outside 1..").u(kMaxWidth);
    return fail(24);
  }
  if (v->n_classes < 2 || v->n_classes > kMaxClasses) {
    m.s("n_classes ").u(v->n_classes).s(" is outside 2..").u(kMaxClasses);
    return fail(28);
  }
  if (v->n_layers < 1 || v->n_layers > kMaxLayers) {
    m.s("n_layers ").u(v->n_layers).s(" is outside 1..").u(kMaxLayers);
    return fail(32);
  }
  if (v->n_tensors < 2 || v->n_tensors > kMaxTensors) {
    m.s("n_tensors ").u(v->n_tensors).s(" is outside 2..").u(kMaxTensors);
    return fail(36);
  }
  const uint64_t layers_off = kHeaderSize;
  const uint64_t tensors_off = layers_off + uint64_t(kRecordSize) * v->n_layers;
  const uint64_t strings_off = tensors_off + uint64_t(kRecordSize) * v->n_tensors;
  const uint64_t strings_size = rd64(b + 64);
  if (rd64(b + 40) != layers_off) {
    m.s("layers_offset must be ").u(layers_off);
    return fail(40);
  }
  if (rd64(b + 48) != tensors_off) {
    m.s("tensors_offset must be ").u(tensors_off).s(" for ").u(v->n_layers).s(" layers");
    return fail(48);
  }
  if (rd64(b + 56) != strings_off) {
    m.s("strings_offset must be ").u(strings_off).s(" for ").u(v->n_tensors).s(" tensors");
    return fail(56);
  }
  if (strings_size > kMaxStringsSize || strings_off + strings_size + kFooterSize > size) {
    m.s("strings_size ").u(strings_size).s(" runs past the end of the blob or over 1 MiB");
    return fail(64);
  }
  const uint64_t data_off = align64(strings_off + strings_size);
  if (rd64(b + 72) != data_off) {
    m.s("data_offset must be ").u(data_off);
    return fail(72);
  }
  const uint64_t data_size = rd64(b + 80);
  if (data_off + kFooterSize > size || data_size != size - kFooterSize - data_off ||
      data_size % kAlign) {
    m.s("data_size ").u(data_size).s(" does not fill the blob up to its footer");
    return fail(80);
  }
  for (uint32_t i = 88; i < kHeaderSize; ++i)
    if (b[i]) {
      m.s("reserved header byte is not zero");
      return fail(i);
    }

  // Layers: widths chain, tensors are consecutive, the head is dense/linear/n_classes.
  uint32_t width = v->input_size, next_tensor = v->has_norm ? 2 : 0;
  uint64_t params = 0;
  for (uint32_t l = 0; l < v->n_layers; ++l) {
    const uint8_t* r = b + layers_off + uint64_t(kRecordSize) * l;
    const uint64_t ro = layers_off + uint64_t(kRecordSize) * l;
    LayerView& L = v->layers[l];
    L.kind = rd32(r);
    L.activation = rd32(r + 4);
    L.in = rd32(r + 8);
    L.out = rd32(r + 12);
    uint32_t first = rd32(r + 16), count = rd32(r + 20);
    if (L.kind != kDense && L.kind != kAttention) {
      m.s("layer ").u(l).s(": unknown kind ").u(L.kind);
      return fail(ro);
    }
    if ((L.kind == kDense && !valid_activation(L.activation)) || (L.kind == kAttention && L.activation)) {
      m.s("layer ").u(l).s(": invalid activation ").u(L.activation);
      return fail(ro + 4);
    }
    if (L.in != width) {
      m.s("layer ").u(l).s(": in_size ").u(L.in).s(" does not match the previous width ").u(width);
      return fail(ro + 8);
    }
    if (L.out < 1 || L.out > kMaxWidth) {
      m.s("layer ").u(l).s(": out_size ").u(L.out).s(" is outside 1..").u(kMaxWidth);
      return fail(ro + 12);
    }
    if (first != next_tensor) {
      m.s("layer ").u(l).s(": first_tensor must be ").u(next_tensor);
      return fail(ro + 16);
    }
    uint32_t want = L.kind == kDense ? 2 : 4;
    if (count != want) {
      m.s("layer ").u(l).s(": has ").u(count).s(" tensors, needs ").u(want);
      return fail(ro + 20);
    }
    if (rd32(r + 24) || rd32(r + 28)) {
      m.s("layer ").u(l).s(": reserved fields are not zero");
      return fail(ro + 24);
    }
    params += L.kind == kDense ? uint64_t(L.in) * L.out + L.out
                               : uint64_t(L.in) * L.in + L.in + uint64_t(L.in) * L.out + L.out;
    next_tensor += count;
    width = L.out;
  }
  const LayerView& head = v->layers[v->n_layers - 1];
  if (head.kind != kDense || head.activation != kLinear || head.out != v->n_classes) {
    m.s("the last layer must be dense, linear, with n_classes=").u(v->n_classes).s(" outputs");
    return fail(layers_off + uint64_t(kRecordSize) * (v->n_layers - 1));
  }
  if (params > kMaxParams) {
    m.s("the network has ").u(params).s(" parameters; the core runs at most ").u(kMaxParams);
    return fail(layers_off);
  }
  v->params = params;
  if (next_tensor != v->n_tensors) {
    m.s("n_tensors is ").u(v->n_tensors).s(" but the layers need ").u(next_tensor);
    return fail(36);
  }

  // Tensors: expected role and shape, exact offsets, finite values, zero padding.
  uint64_t cursor = data_off, prev_end = data_off;
  for (uint32_t t = 0; t < v->n_tensors; ++t) {
    const uint64_t ro = tensors_off + uint64_t(kRecordSize) * t;
    const uint8_t* r = b + ro;
    uint32_t want_role, rows, cols;
    TensorView* dst;
    uint32_t layer = kMaxLayers;
    if (t < (v->has_norm ? 2u : 0u)) {
      want_role = t == 0 ? kNormMean : kNormStd;
      rows = v->input_size;
      cols = 1;
      dst = t == 0 ? &v->mean : &v->std;
    } else {
      uint32_t idx = t - (v->has_norm ? 2 : 0);
      layer = 0;
      uint32_t k = idx;
      while (k >= (v->layers[layer].kind == kDense ? 2u : 4u)) {
        k -= v->layers[layer].kind == kDense ? 2u : 4u;
        ++layer;
      }
      LayerView& L = v->layers[layer];
      dst = &L.t[k];
      if (L.kind == kDense) {
        want_role = k == 0 ? kDenseW : kDenseB;
        rows = L.out;
        cols = k == 0 ? L.in : 1;
      } else {
        static const uint32_t roles[4] = {kAttnWa, kAttnBa, kAttnWv, kAttnBv};
        want_role = roles[k];
        rows = (k < 2) ? L.in : L.out;
        cols = (k % 2 == 0) ? L.in : 1;
      }
    }
    if (rd32(r) != want_role) {
      m.s("tensor ").u(t).s(": role ").u(rd32(r)).s(", expected ").u(want_role);
      return fail(ro);
    }
    if (rd32(r + 4) != kDtypeF32) {
      m.s("tensor ").u(t).s(": dtype ").u(rd32(r + 4)).s(" is not float32 (1)");
      return fail(ro + 4);
    }
    if (rd32(r + 8) != rows || rd32(r + 12) != cols) {
      m.s("tensor ").u(t).s(": shape ").u(rd32(r + 8)).s("x").u(rd32(r + 12)).s(", expected ")
          .u(rows).s("x").u(cols);
      return fail(ro + 8);
    }
    if (rd64(r + 16) != cursor) {
      m.s("tensor ").u(t).s(": offset ").u(rd64(r + 16)).s(", expected ").u(cursor);
      return fail(ro + 16);
    }
    const uint64_t nbytes = uint64_t(rows) * cols * 4;
    if (rd64(r + 24) != nbytes || cursor + nbytes > size - kFooterSize) {
      m.s("tensor ").u(t).s(": nbytes ").u(rd64(r + 24)).s(", expected ").u(nbytes);
      return fail(ro + 24);
    }
    for (uint64_t p = prev_end; p < cursor; ++p)
      if (b[p]) {
        m.s("padding before tensor ").u(t).s(" is not zero");
        return fail(p);
      }
    dst->data = b + cursor;
    dst->rows = rows;
    dst->cols = cols;
    for (uint64_t i = 0; i < uint64_t(rows) * cols; ++i) {
      uint32_t bits = rd32(b + cursor + 4 * i);
      bool bad = (bits & 0x7F800000u) == 0x7F800000u;  // NaN or Inf
      bool nonpositive = want_role == kNormStd && (bits == 0 || (bits & 0x80000000u) ||
                                                   (bits & 0x7F800000u) == 0);
      if (bad || nonpositive) {
        m.s("tensor ").u(t);
        if (layer < kMaxLayers) m.s(" (layer ").u(layer).s(")");
        m.s(" element ").u(i).s(bad ? " is NaN or Inf" : ": normalisation std must be a normal float > 0");
        return fail(cursor + 4 * i);
      }
    }
    prev_end = cursor + nbytes;
    cursor = align64(prev_end);
  }
  if (cursor != size - kFooterSize) {
    m.s("tensor data ends at ").u(cursor).s(" but the data section ends at ").u(size - kFooterSize);
    return fail(cursor);
  }
  for (uint64_t p = prev_end; p < cursor; ++p)
    if (b[p]) {
      m.s("padding after the last tensor is not zero");
      return fail(p);
    }

  // Strings: labels, feature names, metadata pairs; bounded, UTF-8, no NUL.
  const uint64_t s_end = strings_off + strings_size;
  StringCursor strings{b, strings_off, s_end, m};
  uint64_t& pos = strings.pos;
  uint32_t n_labels = 0;
  uint64_t count_at = pos;  // a wrong count is reported at the count, not after it
  if (!strings.count(&n_labels) || n_labels != v->n_classes) {
    m.s("the string section must start with ").u(v->n_classes).s(" labels");
    return fail(count_at);
  }
  v->labels_pos = pos;
  for (uint32_t i = 0; i < n_labels; ++i)
    if (!strings.str(1, kMaxLabelBytes, "a label")) return fail(pos);
  if (!strings.tail(v->input_size, data_off, &v->n_features, &v->features_pos, &v->n_meta, &v->meta_pos, &count_at))
    return fail(count_at);
  return true;
}

}  // namespace pymicro
