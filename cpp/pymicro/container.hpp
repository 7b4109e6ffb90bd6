// The ensemble container (.pmb with magic "PMBC"): parser, validator and executor.
//
// A container holds several complete PMB1 blobs (the members), a feature map (per member,
// the columns of the container's input row it reads), a class map (per member, the common
// label each of its classes counts towards) and a combiner: a weighted soft vote, a
// weighted majority vote, or a stacked meta-model (itself a complete PMB1 blob, a network
// over the members' mapped probabilities). docs/blob-format.md ("Ensembles") is the
// normative description; this header implements it.
//
// parse_container() trusts nothing, as parse() does: every field is checked against the
// byte count before it is used, each member (and the meta-model) is validated by parse()
// itself, and a failure names the byte of the *container* at fault.
//
// run_ensemble() runs the whole ensemble in one call over a set of ArchOps (any ISA, or
// wasm): run each member's plan on its columns (in place where they are one contiguous run, else gathered), map its classes, combine.
// No allocation; everything lives in the caller's workspace.
//
// Freestanding, like the rest of cpp/pymicro/: no libc.
#pragma once

#include "arch.hpp"

namespace pymicro {

constexpr uint32_t kContainerVersion = 1;
constexpr uint32_t kContainerHeaderSize = 128;
constexpr uint32_t kMaxMembers = 16;
constexpr uint32_t kEnsembleChunk = 240;  // rows per pass: a multiple of every ISA's tile (48, 24, 8)

enum Combiner : uint32_t { kSoftVote = 1, kMajorityVote = 2, kStacked = 3 };

constexpr const char* combiner_name(uint32_t c) {
  return c == kSoftVote ? "soft_vote" : c == kMajorityVote ? "majority_vote" : c == kStacked ? "stacked" : nullptr;
}

struct MemberView {
  uint64_t offset = 0, size = 0;  // where its PMB1 blob lies in the container
  uint32_t n_inputs = 0, n_classes = 0;
  float weight = 0.0f;
  uint64_t cols_pos = 0, map_pos = 0;  // its column indices and class map (u32 each) in the container
  BlobView blob;
};

struct ContainerView {
  const uint8_t* base = nullptr;
  uint64_t size = 0;
  uint32_t input_size = 0, n_classes = 0, n_members = 0, combiner = 0, crc = 0;
  MemberView members[kMaxMembers];
  bool has_meta = false;
  uint64_t meta_offset = 0, meta_size = 0;
  BlobView meta;
  uint32_t n_features = 0, n_meta = 0;
  uint64_t labels_pos = 0, names_pos = 0, features_pos = 0, meta_pos = 0;  // first string of each list
};

inline uint32_t member_col(const ContainerView& v, uint32_t m, uint32_t k) {
  return detail::rd32(v.base + v.members[m].cols_pos + 4ull * k);
}
inline uint32_t member_class(const ContainerView& v, uint32_t m, uint32_t j) {
  return detail::rd32(v.base + v.members[m].map_pos + 4ull * j);
}
// Reads the container string at *pos (validated by parse_container) and advances *pos.
inline StringRef next_container_string(const ContainerView& v, uint64_t* pos) { return next_string(v.base, pos); }

inline bool is_container(const uint8_t* b, uint64_t size) {
  return size >= 4 && b[0] == 'P' && b[1] == 'M' && b[2] == 'B' && b[3] == 'C';
}

inline bool parse_container(const uint8_t* b, uint64_t size, ContainerView* v, Status* st,
                            bool check_crc = true) {
  using namespace detail;
  Msg m(st->message, sizeof st->message);
  auto fail = [&](uint64_t off) {
    st->ok = false;
    st->offset = off;
    return false;
  };
  st->ok = true;
  const uint64_t H = kContainerHeaderSize;
  if (size < H + kFooterSize) {
    m.s("container is ").u(size).s(" bytes; the smallest possible container is ").u(H + kFooterSize);
    return fail(size);
  }
  if (!is_container(b, size)) {
    m.s("bad magic: not a pymicro container (expected \"PMBC\")");
    return fail(0);
  }
  if (rd32(b + 4) != kContainerVersion) {
    m.s("unsupported container version ").u(rd32(b + 4)).s("; this core reads version ").u(kContainerVersion);
    return fail(4);
  }
  if (rd32(b + 8) != H) {
    m.s("container header_size is ").u(rd32(b + 8)).s(", version 1 needs ").u(H);
    return fail(8);
  }
  if (rd32(b + 12)) {
    m.s("unknown container flag bits set: ").u(rd32(b + 12));
    return fail(12);
  }
  if (rd64(b + 16) != size) {
    m.s("header says the container is ").u(rd64(b + 16)).s(" bytes but ").u(size)
        .s(" were given (truncated or padded)");
    return fail(16);
  }
  if (!(b[size - 4] == 'P' && b[size - 3] == 'M' && b[size - 2] == 'B' && b[size - 1] == 'E')) {
    m.s("footer magic \"PMBE\" missing (truncated or corrupted container)");
    return fail(size - 4);
  }
  const uint32_t crc = crc32(b, size - kFooterSize);
  if (check_crc && crc != rd32(b + size - 8)) {
    m.s("checksum mismatch: the container is corrupted");
    return fail(size - 8);
  }
  v->base = b;
  v->size = size;
  v->crc = crc;
  v->input_size = rd32(b + 24);
  v->n_classes = rd32(b + 28);
  v->n_members = rd32(b + 32);
  v->combiner = rd32(b + 36);
  if (v->input_size < 1 || v->input_size > kMaxWidth) {
    m.s("input_size ").u(v->input_size).s(" is outside 1..").u(kMaxWidth);
    return fail(24);
  }
  if (v->n_classes < 2 || v->n_classes > kMaxClasses) {
    m.s("n_classes ").u(v->n_classes).s(" is outside 2..").u(kMaxClasses);
    return fail(28);
  }
  if (v->n_members < 1 || v->n_members > kMaxMembers) {
    m.s("n_members ").u(v->n_members).s(" is outside 1..").u(kMaxMembers);
    return fail(32);
  }
  if (!combiner_name(v->combiner)) {
    m.s("unknown combiner ").u(v->combiner).s(" (1 soft vote, 2 majority vote, 3 stacked)");
    return fail(36);
  }
  v->has_meta = v->combiner == kStacked;
  const uint64_t members_off = H;
  const uint64_t index_off = members_off + uint64_t(kRecordSize) * v->n_members;
  if (rd64(b + 40) != members_off) {
    m.s("members_offset must be ").u(members_off);
    return fail(40);
  }
  if (rd64(b + 48) != index_off || index_off + kFooterSize > size) {
    m.s("index_offset must be ").u(index_off).s(" for ").u(v->n_members).s(" members, within the container");
    return fail(48);
  }
  v->meta_offset = rd64(b + 88);
  v->meta_size = rd64(b + 96);
  if (!v->has_meta && v->meta_offset) {
    m.s("meta_offset must be 0 without a stacked combiner");
    return fail(88);
  }
  if (!v->has_meta && v->meta_size) {
    m.s("meta_size must be 0 without a stacked combiner");
    return fail(96);
  }
  for (uint32_t i = 104; i < H; ++i)
    if (b[i]) {
      m.s("reserved container header byte is not zero");
      return fail(i);
    }

  // The member table.
  uint64_t index_words = 0;
  for (uint32_t i = 0; i < v->n_members; ++i) {
    const uint64_t R = members_off + uint64_t(kRecordSize) * i;
    MemberView& M = v->members[i];
    M.offset = rd64(b + R);
    M.size = rd64(b + R + 8);
    M.n_inputs = rd32(b + R + 16);
    M.n_classes = rd32(b + R + 20);
    const uint32_t wbits = rd32(b + R + 24);
    __builtin_memcpy(&M.weight, b + R + 24, 4);
    if (M.n_inputs < 1 || M.n_inputs > kMaxWidth) {
      m.s("member ").u(i).s(": n_inputs ").u(M.n_inputs).s(" is outside 1..").u(kMaxWidth);
      return fail(R + 16);
    }
    if (M.n_classes < 2 || M.n_classes > kMaxClasses) {
      m.s("member ").u(i).s(": n_classes ").u(M.n_classes).s(" is outside 2..").u(kMaxClasses);
      return fail(R + 20);
    }
    if (v->has_meta ? wbits != 0
                    : ((wbits & 0x7F800000u) == 0x7F800000u || (wbits & 0x80000000u))) {
      m.s("member ").u(i).s(v->has_meta ? ": weight must be 0 under a stacked combiner"
                                        : ": weight must be a finite float >= 0");
      return fail(R + 24);
    }
    if (rd32(b + R + 28)) {
      m.s("member ").u(i).s(": reserved field is not zero");
      return fail(R + 28);
    }
    M.cols_pos = index_off + 4 * index_words;
    M.map_pos = M.cols_pos + 4ull * M.n_inputs;
    index_words += uint64_t(M.n_inputs) + M.n_classes;
  }
  if (!v->has_meta) {  // the sum the combiner divides by, in member order, as the executor adds it
    float sum = 0.0f;
    for (uint32_t i = 0; i < v->n_members; ++i) sum = sum + v->members[i].weight;
    if (!(sum > 0.0f) || !(sum < 3.0e38f)) {
      m.s("member weights must add up to a finite number > 0");
      return fail(members_off + 24);
    }
  }
  const uint64_t index_size = 4 * index_words;
  const uint64_t strings_off = index_off + index_size;
  if (rd64(b + 56) != index_size || strings_off + kFooterSize > size) {
    m.s("index_size must be ").u(index_size).s(" (4 bytes per member column and class), within the container");
    return fail(56);
  }
  if (rd64(b + 64) != strings_off) {
    m.s("strings_offset must be ").u(strings_off);
    return fail(64);
  }
  const uint64_t strings_size = rd64(b + 72);
  if (strings_size > kMaxStringsSize || strings_off + strings_size + kFooterSize > size) {
    m.s("strings_size ").u(strings_size).s(" runs past the end of the container or over 1 MiB");
    return fail(72);
  }
  const uint64_t blobs_off = align64(strings_off + strings_size);
  if (rd64(b + 80) != blobs_off || blobs_off + kFooterSize > size) {
    m.s("blobs_offset must be ").u(blobs_off);
    return fail(80);
  }

  // The index: columns into the input row, classes into the common labels.
  for (uint32_t i = 0; i < v->n_members; ++i) {
    const MemberView& M = v->members[i];
    for (uint32_t k = 0; k < M.n_inputs; ++k)
      if (rd32(b + M.cols_pos + 4ull * k) >= v->input_size) {
        m.s("member ").u(i).s(": column ").u(k).s(" reads input ").u(rd32(b + M.cols_pos + 4ull * k))
            .s(", the row has ").u(v->input_size);
        return fail(M.cols_pos + 4ull * k);
      }
    for (uint32_t j = 0; j < M.n_classes; ++j)
      if (rd32(b + M.map_pos + 4ull * j) >= v->n_classes) {
        m.s("member ").u(i).s(": class ").u(j).s(" maps to label ").u(rd32(b + M.map_pos + 4ull * j))
            .s(", there are ").u(v->n_classes);
        return fail(M.map_pos + 4ull * j);
      }
  }

  // The blobs: members in order, then the meta-model; each 64-aligned, zero padding between.
  uint64_t cursor = blobs_off, prev_end = blobs_off;
  auto nested = [&](uint64_t rec, uint64_t off, uint64_t n, BlobView* out, const char* what,
                    uint32_t index) {
    if (off != cursor) {
      m.s(what);
      if (index < kMaxMembers) m.u(index);
      m.s(": offset ").u(off).s(", expected ").u(cursor);
      return fail(rec);
    }
    if (n < kHeaderSize + kFooterSize || off > size - kFooterSize || n > size - kFooterSize - off) {
      m.s(what);
      if (index < kMaxMembers) m.u(index);
      m.s(": size ").u(n).s(" does not fit the container");
      return fail(rec + 8);
    }
    for (uint64_t p = prev_end; p < cursor; ++p)
      if (b[p]) {
        m.s("padding before ").s(what);
        if (index < kMaxMembers) m.u(index);
        m.s(" is not zero");
        return fail(p);
      }
    Status inner;
    if (!parse(b + off, n, out, &inner, check_crc)) {
      m.s(what);
      if (index < kMaxMembers) m.u(index);
      m.s(": ").s(inner.message);
      return fail(off + inner.offset);
    }
    prev_end = off + n;
    cursor = align64(prev_end);
    return true;
  };
  for (uint32_t i = 0; i < v->n_members; ++i) {
    MemberView& M = v->members[i];
    const uint64_t R = members_off + uint64_t(kRecordSize) * i;
    if (!nested(R, M.offset, M.size, &M.blob, "member ", i)) return false;
    if (M.blob.input_size != M.n_inputs) {
      m.s("member ").u(i).s(": its blob takes ").u(M.blob.input_size).s(" inputs, the record says ").u(M.n_inputs);
      return fail(R + 16);
    }
    if (M.blob.n_classes != M.n_classes) {
      m.s("member ").u(i).s(": its blob has ").u(M.blob.n_classes).s(" classes, the record says ").u(M.n_classes);
      return fail(R + 20);
    }
  }
  if (v->has_meta) {
    if (!nested(88, v->meta_offset, v->meta_size, &v->meta, "the meta-model", kMaxMembers)) return false;
    if (uint64_t(v->meta.input_size) != uint64_t(v->n_members) * v->n_classes) {
      m.s("the meta-model takes ").u(v->meta.input_size).s(" inputs; it must take n_members * n_classes = ")
          .u(uint64_t(v->n_members) * v->n_classes);
      return fail(v->meta_offset + 24);
    }
    if (v->meta.n_classes != v->n_classes) {
      m.s("the meta-model has ").u(v->meta.n_classes).s(" classes; the container has ").u(v->n_classes);
      return fail(v->meta_offset + 28);
    }
  }
  if (cursor != size - kFooterSize) {
    m.s("the blobs end at ").u(cursor).s(" but the container's data ends at ").u(size - kFooterSize);
    return fail(cursor < size - kFooterSize ? cursor : prev_end);
  }
  for (uint64_t p = prev_end; p < cursor; ++p)
    if (b[p]) {
      m.s("padding after the last blob is not zero");
      return fail(p);
    }

  // Strings: common labels, member names, metadata pairs.
  const uint64_t s_end = strings_off + strings_size;
  StringCursor strings{b, strings_off, s_end, m};
  uint64_t& pos = strings.pos;
  uint32_t count = 0;
  uint64_t count_at = pos;
  if (!strings.count(&count) || count != v->n_classes) {
    m.s("the string section must start with ").u(v->n_classes).s(" labels");
    return fail(count_at);
  }
  v->labels_pos = pos;
  for (uint32_t i = 0; i < count; ++i)
    if (!strings.str(1, kMaxLabelBytes, "a label")) return fail(pos);
  count_at = pos;
  if (!strings.count(&count) || count != v->n_members) {
    m.s("the labels must be followed by ").u(v->n_members).s(" member names");
    return fail(count_at);
  }
  v->names_pos = pos;
  for (uint32_t i = 0; i < count; ++i)
    if (!strings.str(1, kMaxLabelBytes, "a member name")) return fail(pos);
  if (!strings.tail(v->input_size, blobs_off, &v->n_features, &v->features_pos, &v->n_meta, &v->meta_pos, &count_at))
    return fail(count_at);
  return true;
}

// ---------------------------------------------------------------- execution

struct EnsembleMemberPlan {
  const void* plan;
  const uint32_t* cols;  // [n_in]
  const uint32_t* map;   // [n_cls]
  const uint32_t* inv;   // [n_classes + 1 + n_cls]: per common label c, its member classes are
                         // inv[n_classes + 1 + inv[c] .. inv[c + 1]), ascending
  uint32_t n_in, n_cls, attn_w, attn_at;  // attn_at: its first column in the concatenated attention
  uint32_t first_col;    // cols[0], when the columns are one contiguous run
  uint32_t layout;       // kGather (copied), kRun (contiguous columns, the whole row included:
                         // read in place, row stride input_size)
  uint32_t same_labels;  // its classes are the common labels, in order: q is its output as is
  float w;               // weight / sum of weights (soft and majority votes)
};
enum : uint32_t { kGather = 0, kRun = 1 };

struct EnsemblePlan {
  const ArchOps* ops;
  uint32_t input_size, n_classes, n_members, combiner;
  uint32_t max_in, max_cls, max_attn, attn_width;  // attn_width: all members' attention, concatenated
  uint64_t kernel_ws;    // floats of the largest member's (or meta's) kernel workspace
  const void* meta;      // the meta-model's plan (stacked)
  const uint32_t* unread;  // columns no member reads: checked for NaN/Inf on their own
  uint32_t n_unread;
  EnsembleMemberPlan m[kMaxMembers];
};

namespace detail {
inline uint32_t attn_width_of(const BlobView& v) {
  for (uint32_t l = 0; l < v.n_layers; ++l)
    if (v.layers[l].kind == kAttention) return v.layers[l].in;
  return 0;
}
}  // namespace detail

inline uint64_t ensemble_plan_bytes(const ContainerView& v, const ArchOps& ops) {
  uint64_t n = detail::align64(sizeof(EnsemblePlan));
  for (uint32_t i = 0; i < v.n_members; ++i)
    n += detail::align64(ops.plan_bytes(&v.members[i].blob)) +
         detail::align64(4ull * (v.members[i].n_inputs + v.members[i].n_classes)) +
         detail::align64(4ull * (v.n_classes + 1 + v.members[i].n_classes));
  if (v.has_meta) n += detail::align64(ops.plan_bytes(&v.meta));
  return n + detail::align64(4ull * v.input_size);
}

// Builds into mem (64-byte aligned, ensemble_plan_bytes long). Infallible for a view that
// parse_container accepted.
inline EnsemblePlan* build_ensemble_plan(const ContainerView& v, const ArchOps& ops, void* mem) {
  auto* P = static_cast<EnsemblePlan*>(mem);
  uint8_t* cur = static_cast<uint8_t*>(mem) + detail::align64(sizeof(EnsemblePlan));
  P->ops = &ops;
  P->input_size = v.input_size;
  P->n_classes = v.n_classes;
  P->n_members = v.n_members;
  P->combiner = v.combiner;
  P->max_in = P->max_cls = P->max_attn = P->attn_width = 0;
  P->kernel_ws = 0;
  P->meta = nullptr;
  float sum = 0.0f;
  for (uint32_t i = 0; i < v.n_members; ++i) sum = sum + v.members[i].weight;
  for (uint32_t i = 0; i < v.n_members; ++i) {
    const MemberView& M = v.members[i];
    EnsembleMemberPlan& E = P->m[i];
    ops.build_plan(&M.blob, cur);
    E.plan = cur;
    cur += detail::align64(ops.plan_bytes(&M.blob));
    auto* idx = reinterpret_cast<uint32_t*>(cur);
    for (uint32_t k = 0; k < M.n_inputs; ++k) idx[k] = member_col(v, i, k);
    for (uint32_t j = 0; j < M.n_classes; ++j) idx[M.n_inputs + j] = member_class(v, i, j);
    E.cols = idx;
    E.map = idx + M.n_inputs;
    cur += detail::align64(4ull * (M.n_inputs + M.n_classes));
    auto* inv = reinterpret_cast<uint32_t*>(cur);  // the class map inverted, a CSR list
    uint32_t at = 0;
    for (uint32_t c = 0; c < v.n_classes; ++c) {
      inv[c] = at;
      for (uint32_t j = 0; j < M.n_classes; ++j)
        if (E.map[j] == c) inv[v.n_classes + 1 + at++] = j;
    }
    inv[v.n_classes] = at;
    E.inv = inv;
    cur += detail::align64(4ull * (v.n_classes + 1 + M.n_classes));
    E.n_in = M.n_inputs;
    E.n_cls = M.n_classes;
    E.same_labels = M.n_classes == v.n_classes;
    for (uint32_t j = 0; j < M.n_classes; ++j) E.same_labels = E.same_labels && E.map[j] == j;
    E.first_col = idx[0];
    bool run = true;
    for (uint32_t k = 1; k < M.n_inputs; ++k) run = run && idx[k] == idx[0] + k;
    E.layout = run ? kRun : kGather;
    E.attn_w = detail::attn_width_of(M.blob);
    E.attn_at = P->attn_width;
    P->attn_width += E.attn_w;
    E.w = v.has_meta ? 0.0f : M.weight / sum;
    if (E.n_in > P->max_in) P->max_in = E.n_in;
    if (E.n_cls > P->max_cls) P->max_cls = E.n_cls;
    if (E.attn_w > P->max_attn) P->max_attn = E.attn_w;
    const uint64_t ws = ops.workspace_floats(E.plan);
    if (ws > P->kernel_ws) P->kernel_ws = ws;
  }
  if (v.has_meta) {
    ops.build_plan(&v.meta, cur);
    P->meta = cur;
    const uint64_t ws = ops.workspace_floats(P->meta);
    if (ws > P->kernel_ws) P->kernel_ws = ws;
    cur += detail::align64(ops.plan_bytes(&v.meta));
  }
  // Columns that no member reads. A member flags a NaN/Inf in its own columns (its row comes
  // out NaN); these are the ones left to check, so a bad cell anywhere in the row is caught.
  auto* unread = reinterpret_cast<uint32_t*>(cur);
  P->n_unread = 0;
  for (uint32_t c = 0; c < v.input_size; ++c) {
    bool read = false;
    for (uint32_t i = 0; i < v.n_members && !read; ++i)
      for (uint32_t k = 0; k < P->m[i].n_in && !read; ++k) read = P->m[i].cols[k] == c;
    if (!read) unread[P->n_unread++] = c;
  }
  P->unread = unread;
  return P;
}

// Floats of workspace one run_ensemble call needs (64-byte aligned).
inline uint64_t ensemble_workspace_floats(const EnsemblePlan& P) {
  const uint64_t C = kEnsembleChunk;
  return detail::align64(P.kernel_ws) + detail::align64(C * P.max_in) + detail::align64(C * P.max_cls) +
         detail::align64(C * P.n_members * P.n_classes) + detail::align64(C * P.max_attn);
}

// Probabilities for n rows of x (input_size each) into out (n * n_classes). Optional:
// attn (n * attn_width: each member's first attention layer, concatenated in member
// order) and member_probs (n * n_members * n_classes: each member's probabilities mapped
// onto the common labels). A row with a NaN or Inf anywhere in its input, or whose
// combined probabilities are NaN (float32 overflow in a member), gets NaN outputs;
// returns how many rows did.
//
// The combiners' arithmetic is plain float32 multiplies and adds in member order, never
// contracted into fused multiply-adds (the pragmas: clang's in the body, GCC's around the
// function, so a -march with FMA in the module's flags changes nothing), so native and
// wasm give the same bits.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
inline uint64_t run_ensemble(const EnsemblePlan& P, const float* x, uint64_t n, float* out,
                             float* attn, float* member_probs, float* ws) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
  const ArchOps& ops = *P.ops;
  const uint32_t I = P.input_size, C = P.n_classes, M = P.n_members, MC = M * C;
  float* kws = ws;
  float* xg = kws + detail::align64(P.kernel_ws);
  float* pm = xg + detail::align64(uint64_t(kEnsembleChunk) * P.max_in);
  float* q = pm + detail::align64(uint64_t(kEnsembleChunk) * P.max_cls);
  float* at = q + detail::align64(uint64_t(kEnsembleChunk) * MC);
  uint64_t n_bad = 0;
  for (uint64_t r0 = 0; r0 < n; r0 += kEnsembleChunk) {
    const uint32_t nr = uint32_t(n - r0 < kEnsembleChunk ? n - r0 : kEnsembleChunk);
    const float* xr = x + r0 * I;
    // The next chunk's rows are asked into the cache while this one computes: each member's
    // kernels spread a share of them over their tiles (a few lines per micro-kernel panel).
    // Read straight from memory, the members' tiles stalled on every line; asked for in
    // bursts between tiles, the prefetches stalled instead (a third of the ensemble's time).
    const uint64_t next_bytes = (n - r0 - nr < kEnsembleChunk ? n - r0 - nr : kEnsembleChunk) * I * 4;
    const char* next = reinterpret_cast<const char*>(xr + uint64_t(nr) * I);
    for (uint32_t mi = 0; mi < M; ++mi) {
      const EnsembleMemberPlan& E = P.m[mi];
      const uint32_t nin = E.n_in;
      const float* xm = xr + E.first_col;  // kRun: the member's columns in place
      uint64_t stride = I;
      if (E.layout == kGather) {
        const uint32_t* cols = E.cols;
        for (uint32_t r = 0; r < nr; ++r) {
          const float* src = xr + uint64_t(r) * I;
          float* dst = xg + uint64_t(r) * nin;
          for (uint32_t k = 0; k < nin; ++k) dst[k] = src[cols[k]];
        }
        xm = xg;
        stride = nin;
      }
      float* ma = attn && E.attn_w ? at : nullptr;
#ifdef PM_ENS_NO_PREFETCH
      const uint64_t pa = 0, pb = 0;
#else
      const uint64_t pa = next_bytes * mi / M & ~uint64_t(63), pb = next_bytes * (mi + 1) / M;
#endif
      ops.run_strided(E.plan, xm, stride, nr, pm, ma, kws, pb > pa ? next + pa : next, pb > pa ? pb - pa : 0);
      const uint32_t* inv = E.inv;
      const uint32_t* js = inv + C + 1;
      if (E.same_labels) {
        for (uint32_t r = 0; r < nr; ++r)
          for (uint32_t c = 0; c < C; ++c) q[uint64_t(r) * MC + uint64_t(mi) * C + c] = pm[uint64_t(r) * C + c];
      } else {
        for (uint32_t r = 0; r < nr; ++r) {  // q = the member's classes summed per label, in class order
          float* qr = q + uint64_t(r) * MC + uint64_t(mi) * C;
          const float* pr = pm + uint64_t(r) * E.n_cls;
          for (uint32_t c = 0; c < C; ++c) {
            float acc = 0.0f;
            for (uint32_t k = inv[c]; k < inv[c + 1]; ++k) acc = acc + pr[js[k]];
            qr[c] = acc;
          }
        }
      }
      if (ma)
        for (uint32_t r = 0; r < nr; ++r)
          for (uint32_t k = 0; k < E.attn_w; ++k)
            attn[(r0 + r) * P.attn_width + E.attn_at + k] = ma[uint64_t(r) * E.attn_w + k];
    }
    float* outr = out + r0 * C;
    if (P.combiner == kStacked) {
      ops.run(P.meta, q, nr, outr, nullptr, kws);
    } else {
      for (uint32_t r = 0; r < nr; ++r) {
        float* o = outr + uint64_t(r) * C;
        const float* qr = q + uint64_t(r) * MC;
        if (P.combiner == kSoftVote) {  // per label, the members in order
          for (uint32_t c = 0; c < C; ++c) {
            float acc = 0.0f;
            for (uint32_t mi = 0; mi < M; ++mi) {
              const float t = P.m[mi].w * qr[uint64_t(mi) * C + c];
              acc = acc + t;
            }
            o[c] = acc;
          }
        } else {
          for (uint32_t c = 0; c < C; ++c) o[c] = 0.0f;  // majority: each member's vote (its most probable label, the first on a tie)
          for (uint32_t mi = 0; mi < M; ++mi) {
            const float* qm = qr + uint64_t(mi) * C;
            uint32_t best = 0;
            for (uint32_t c = 1; c < C; ++c)
              if (qm[c] > qm[best]) best = c;
            o[best] = o[best] + P.m[mi].w;
          }
        }
      }
    }
    for (uint32_t r = 0; r < nr; ++r) {
      uint32_t bad = 0;
      const float* src = xr + uint64_t(r) * I;
      for (uint32_t k = 0; k < P.n_unread; ++k) {
        uint32_t u;
        __builtin_memcpy(&u, src + P.unread[k], 4);
        bad |= uint32_t((u & 0x7F800000u) == 0x7F800000u);
      }
      const float* qr = q + uint64_t(r) * MC;
      // A member's NaN reaches the soft vote's sums and the meta-model's input (which flags
      // it) by itself; only the majority vote's comparisons would drop it.
      if (P.combiner == kMajorityVote)
        for (uint32_t k = 0; k < MC; ++k) bad |= uint32_t(qr[k] != qr[k]);
      float* o = outr + uint64_t(r) * C;
      for (uint32_t c = 0; c < C; ++c) bad |= uint32_t(o[c] != o[c]);
      if (member_probs)
        for (uint32_t k = 0; k < MC; ++k) member_probs[(r0 + r) * MC + k] = bad ? __builtin_nanf("") : qr[k];
      if (!bad) continue;
      ++n_bad;
      for (uint32_t c = 0; c < C; ++c) o[c] = __builtin_nanf("");
      if (attn)
        for (uint32_t k = 0; k < P.attn_width; ++k) attn[(r0 + r) * P.attn_width + k] = __builtin_nanf("");
    }
  }
  return n_bad;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

}  // namespace pymicro
