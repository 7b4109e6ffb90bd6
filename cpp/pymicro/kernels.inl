// The layer kernels and the executor, written once and compiled once per ISA.
//
// This file is included *inside* a namespace per ISA (see cpp/arch/*.cpp and
// wasm/pymicro_wasm.cpp) with PM_LANES (float32 lanes per vector), PM_NR
// (vectors of samples per batched tile) and PM_ARCH_NAME defined. It includes
// nothing: it must compile freestanding, with no libc, for wasm32.
//
// Two paths share one arithmetic:
//  * one row (latency): weights stored transposed, a vector spans outputs;
//  * batches (throughput): a tile of PM_LANES*PM_NR samples lives in the
//    lanes (feature-major), a vector spans samples, and a 4-output x PM_NR
//    micro-kernel broadcasts one weight per FMA group.
// Both accumulate every dot product in the same order (chains() below: from 8
// inputs on, two chains, the even inputs from the bias and the odd ones from 0,
// added at the end; one chain from the bias below that) with the same
// contraction, and both sum softmax terms in sum4's order, so a row gives
// bit-identical results whichever path runs it. Two chains halve a single
// row's latency (one dependent FMA after another, 4 cycles each) at a cost of
// one add per output in a batch.

typedef float vf __attribute__((vector_size(PM_LANES * 4)));
typedef int32_t vi __attribute__((vector_size(PM_LANES * 4)));

constexpr uint32_t W = PM_LANES;
#ifndef PM_MR
#define PM_MR 4
#endif
constexpr uint32_t MR = PM_MR;  // outputs per micro-kernel
constexpr uint32_t NR = PM_NR;
constexpr uint32_t T = W * NR;  // samples per tile
// What one op of the plan does. A dense layer is one kOpDense op (with its Activation);
// an attention layer is two ops, which are not activations:
enum OpKind : uint32_t {
  kOpDense,  // y = act(W x + b)
  kOpGate,   // attention logits W_a x + b_a: softmax over the outputs, then gate the input
  kOpValue,  // attention values: W_v (e * x) * (1 / sum e) + b_v
};

static inline vf vload(const float* p) {
  vf v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
static inline void vstore(float* p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
// s - 0 is s exactly (also for -0 and NaN), so this folds to a plain broadcast; 0 + s would not.
static inline vf vset(float s) { return s - vf{}; }
// vmax(a, b) = a > b ? a : b and vmin(a, b) = a < b ? a : b, lane by lane, NaN and
// signed zeros included: exactly what x86's MAXPS/MINPS compute, so those builds (which
// include <immintrin.h> before this file) use them. GCC lowers the portable form to a
// compare and a blend, two instructions where one does.
#if defined(PM_X86_MINMAX) && PM_LANES == 16
static inline vf vmax(vf a, vf b) { return (vf)_mm512_max_ps((__m512)a, (__m512)b); }
static inline vf vmin(vf a, vf b) { return (vf)_mm512_min_ps((__m512)a, (__m512)b); }
#elif defined(PM_X86_MINMAX) && PM_LANES == 8
static inline vf vmax(vf a, vf b) { return (vf)_mm256_max_ps((__m256)a, (__m256)b); }
static inline vf vmin(vf a, vf b) { return (vf)_mm256_min_ps((__m256)a, (__m256)b); }
#elif defined(PM_X86_MINMAX) && PM_LANES == 4
static inline vf vmax(vf a, vf b) { return (vf)_mm_max_ps((__m128)a, (__m128)b); }
static inline vf vmin(vf a, vf b) { return (vf)_mm_min_ps((__m128)a, (__m128)b); }
#elif defined(__wasm_simd128__) && PM_LANES == 4
// pmax(x, y) is x < y ? y : x and pmin(x, y) is y < x ? y : x: the same functions with
// the operands swapped, one instruction each (clang turns the portable form into
// relaxed_max, whose NaN and signed-zero answers are the engine's choice, or into a
// compare and a bitselect).
static inline vf vmax(vf a, vf b) { return __builtin_wasm_pmax_f32x4(b, a); }
static inline vf vmin(vf a, vf b) { return __builtin_wasm_pmin_f32x4(b, a); }
#else  // vector ?: is a GCC and Clang extension in C++
static inline vf vmax(vf a, vf b) { return a > b ? a : b; }
static inline vf vmin(vf a, vf b) { return a < b ? a : b; }
#endif
static inline float smax(float a, float b) { return a > b ? a : b; }

// exp with Cody-Waite reduction and a degree-6 polynomial (at most 1.01 ulp measured
// on [kExpMin, 88], tests/test_runtime.py). Below kExpMin = ln(FLT_MIN) the true value is
// subnormal or 0 in float32: the result is exactly 0 (a compare and a mask after the
// polynomial), so an argument such as -100 gives 0, as float64's 3.7e-44 is to float32
// precision, never a normal number such as e^-80 that a large input could multiply back
// into view. No subnormal ever leaves this function (no slow subnormal arithmetic after
// it). Inputs above 88 are clamped to 88 (exp(88) is finite). v_exp_le0 is the same
// function for arguments known to be <= 0 or NaN (softmax's y - max), minus the upper clamp.
constexpr float kExpMin = -87.33654f;  // ln(FLT_MIN) rounded up: every x >= it gives a normal
template <bool kUpperClamp>
static inline vf v_exp_impl(vf x0) {
  // The constant first: vmax(c, x) is c > x ? c : x, which lets a NaN through (and
  // so does every clamp and the relu below). NaN inside the network means float32
  // overflowed; it must reach the output, where it is reported, not become a number.
  // The lower clamp only keeps 2^n a normal float (n >= -126) in lanes masked to 0 below.
  vf x = vmax(vset(-87.5f), x0);
  if constexpr (kUpperClamp) x = vmin(vset(88.0f), x);
  const vf magic = vset(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  vf t = x * 1.44269504088896341f + magic;
  vf n = t - magic;
  vf r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vf p = vset(0x1.6a244cp-10f);  // minimax for (e^r - 1 - r) / r^2 on |r| <= ln2/2:
  p = p * r + 0x1.1239d4p-7f;      // relative error 4e-9 before rounding, one FMA fewer
  p = p * r + 0x1.5558f2p-5f;      // than Cephes' degree-7 polynomial
  p = p * r + 0x1.555492p-3f;
  p = p * r + 0x1.fffffcp-2f;
  vf y = p * (r * r) + r + 1.0f;
  // y * 2^n, n in [-126, 127]: 2^n and, for x0 >= kExpMin, the product are normal floats,
  // so scaling is exact and both forms below give the same bits.
#if defined(PM_X86_MINMAX) && PM_LANES == 16
  y = (vf)_mm512_scalef_ps((__m512)y, (__m512)n);  // one instruction for the three below
#else
  vi e = ((vi)t - (vi)magic + 127) << 23;  // 2^n built in the exponent bits
  y = y * (vf)e;
#endif
  // x0 < kExpMin (-Inf included) -> +0; a NaN compares false and stays NaN.
  return (vf)((vi)y & ~(vi)(x0 < vset(kExpMin)));
}
static inline vf v_exp(vf x) { return v_exp_impl<true>(x); }
static inline vf v_exp_le0(vf x) { return v_exp_impl<false>(x); }

// tanh as x * P(x^2) / Q(x^2), a [13/6] rational minimax on |x| <= 7.90531 (Eigen's
// generic_fast_tanh_float coefficients), where it reaches 1.0f: at most 4e-7 from float64's
// tanh (6.6 ulp near |x| = 5.8, 1-2 ulp near 0, no cancellation). One division and ten
// FMAs; the exp form (1 - e^-2|x|) / (1 + e^-2|x|) took an exp (~16 ops) besides the
// division and lost all relative precision near 0. The clamps let a NaN through (operand
// order, as in v_exp_impl); +-Inf clamps to +-7.9 and gives +-1.
static inline vf v_tanh(vf x0) {
  const float c = 7.90531110763549805f;
  const vf x = vmax(vset(-c), vmin(vset(c), x0));
  const vf x2 = x * x;
  vf p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  vf q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return (x * p) / q;
}

// 1 / (1 + e^-x), and exactly 0 below kExpMin, as exp is: the true value is subnormal
// there (e^-x, clamped at e^88, alone would leave 6e-39), and float64's sigmoid(-100) is
// 3.7e-44, not the 1.8e-35 a clamp at -80 used to give. NaN passes through.
static inline vf v_sigmoid(vf x) {
  const vi under = (vi)(x < vset(kExpMin));
  const vf s = 1.0f / (1.0f + v_exp(-vmin(vset(80.0f), x)));
  return (vf)((vi)s & ~under);
}

template <Activation>
constexpr bool kNoKernel = false;

// One kernel per row of PM_ACTIVATIONS (format.hpp); an activation added there without a
// kernel here fails to compile (the static_assert), it never runs as linear.
template <Activation A>
static inline vf activate(vf x) {
  if constexpr (A == kLinear) return x;  // also the gate's raw logits and the values
  else if constexpr (A == kRelu) return vmax(vf{}, x);
  else if constexpr (A == kTanh) return v_tanh(x);
  else if constexpr (A == kSigmoid) return v_sigmoid(x);
  else if constexpr (A == kGelu) {
    const float c = 0.7978845608028654f;  // sqrt(2 / pi), the tanh approximation
    return 0.5f * x * (1.0f + v_tanh(c * (x + 0.044715f * x * x * x)));
  } else {
    static_assert(kNoKernel<A>, "an activation of PM_ACTIVATIONS has no kernel in activate<>");
    return x;
  }
}

// ---------------------------------------------------------------- the plan

struct Op {
  OpKind kind;
  Activation act;  // kOpDense's; kLinear for the attention ops
  uint32_t in, out;
  uint32_t out_mr, out_w;  // out rounded up to MR and to W
  const float* pw;         // batch: panels [out_mr / MR][in][MR]
  const float* pb;         // batch: bias [out_mr]
  const float* rw;         // row: transposed [in][out_w]
  const float* rb;         // row: bias [out_w]
};

struct Plan {
  uint32_t n_ops, input_size, in_w, n_classes;
  uint32_t tile_rows;  // rows of a tile buffer: max(input_size, out_mr of every op)
  uint32_t row_len;    // floats of a row buffer: max(in_w, out_w of every op)
  uint32_t attn_width; // width of the first attention layer (0: none)
  uint32_t n_panels;   // micro-kernel panels (MR outputs each) in a tile's pass
  const float* mean;     // [in_w]
  const float* inv_std;  // [in_w]
  Op ops[2 * kMaxLayers];
};

static inline uint64_t up(uint64_t n, uint64_t m) { return (n + m - 1) / m * m; }

// Each weighted layer becomes one op (dense) or two (attention: gate, values).
template <class F>
static void for_each_op(const BlobView* v, F&& f) {
  for (uint32_t l = 0; l < v->n_layers; ++l) {
    const LayerView& L = v->layers[l];
    if (L.kind == kDense) {
      f(kOpDense, Activation(L.activation), L.in, L.out, L.t[0], L.t[1]);
    } else {
      f(kOpGate, kLinear, L.in, L.in, L.t[0], L.t[1]);
      f(kOpValue, kLinear, L.in, L.out, L.t[2], L.t[3]);
    }
  }
}

static uint64_t op_floats(uint32_t in, uint32_t out) {
  return up(up(out, MR) * in, 16) + up(up(out, MR), 16) + up(uint64_t(in) * up(out, W), 16) +
         up(up(out, W), 16);
}

static uint64_t plan_bytes(const BlobView* v) {
  uint64_t floats = 2 * up(up(v->input_size, W), 16);
  for_each_op(v, [&](OpKind, Activation, uint32_t in, uint32_t out, const TensorView&,
                     const TensorView&) {
    floats += op_floats(in, out);
  });
  return up(sizeof(Plan), 64) + 4 * floats;
}

static void build_plan(const BlobView* v, void* mem) {
  Plan* P = static_cast<Plan*>(mem);
  float* cur = reinterpret_cast<float*>(static_cast<char*>(mem) + up(sizeof(Plan), 64));
  auto take = [&](uint64_t n) {
    float* p = cur;
    for (uint64_t i = 0; i < up(n, 16); ++i) p[i] = 0.0f;
    cur += up(n, 16);
    return p;
  };
  P->n_ops = 0;
  P->input_size = v->input_size;
  P->in_w = uint32_t(up(v->input_size, W));
  P->n_classes = v->n_classes;
  P->tile_rows = v->input_size;
  P->row_len = P->in_w;
  P->attn_width = 0;
  P->n_panels = 0;
  float* mean = take(P->in_w);
  float* inv = take(P->in_w);
  for (uint32_t i = 0; i < v->input_size; ++i) {
    mean[i] = v->has_norm ? v->mean.at(i) : 0.0f;
    inv[i] = v->has_norm ? 1.0f / v->std.at(i) : 1.0f;
  }
  P->mean = mean;
  P->inv_std = inv;
  for_each_op(v, [&](OpKind kind, Activation act, uint32_t in, uint32_t out, const TensorView& Wt,
                     const TensorView& b) {
    Op& op = P->ops[P->n_ops++];
    op.in = in;
    op.out = out;
    op.kind = kind;
    op.act = act;
    if (kind == kOpGate && !P->attn_width) P->attn_width = in;
    op.out_mr = uint32_t(up(out, MR));
    P->n_panels += op.out_mr / MR;
    op.out_w = uint32_t(up(out, W));
    float* pw = take(uint64_t(op.out_mr) * in);
    float* pb = take(op.out_mr);
    float* rw = take(uint64_t(in) * op.out_w);
    float* rb = take(op.out_w);
    for (uint32_t o = 0; o < out; ++o) {
      pb[o] = rb[o] = b.at(o);
      for (uint32_t i = 0; i < in; ++i) {
        float w = Wt.at(uint64_t(o) * in + i);
        pw[(uint64_t(o / MR) * in + i) * MR + o % MR] = w;
        rw[uint64_t(i) * op.out_w + o] = w;
      }
    }
    op.pw = pw;
    op.pb = pb;
    op.rw = rw;
    op.rb = rb;
    if (op.out_mr > P->tile_rows) P->tile_rows = op.out_mr;
    if (op.out_w > P->row_len) P->row_len = op.out_w;
  });
}

static uint64_t workspace_floats(const void* plan) {
  const Plan* P = static_cast<const Plan*>(plan);
  uint64_t tile = 2 * uint64_t(P->tile_rows) * T, row = 2 * up(P->row_len, 16);
  return tile > row ? tile : row;
}

// ---------------------------------------------------------------- one row

// The dot product's order, shared by every path (and by cpp/cuda/pymicro_cuda.cuh): C =
// chains(in) chains, chain j summing the inputs i = j (mod C) in index order, chain 0 from the
// bias (kOpValue: from 0, and acc * scale + bias ends it), then c0 + c1.
static inline uint32_t chains(uint32_t in) { return in >= 8 ? 2 : 1; }

template <OpKind K, Activation A, uint32_t NB, uint32_t C>
static inline void dense_row_block(const Op& op, const float* x, float* y, uint32_t v0,
                                   float scale) {
  vf acc[C][NB];
  for (uint32_t b = 0; b < NB; ++b) {
    acc[0][b] = K == kOpValue ? vf{} : vload(op.rb + (v0 + b) * W);
    for (uint32_t j = 1; j < C; ++j) acc[j][b] = vf{};
  }
  const float* w = op.rw + v0 * W;
  uint32_t i = 0;
  for (; i + C <= op.in; i += C, w += C * op.out_w)
    for (uint32_t j = 0; j < C; ++j) {
      vf xi = vset(x[i + j]);
      for (uint32_t b = 0; b < NB; ++b) acc[j][b] = acc[j][b] + xi * vload(w + j * op.out_w + b * W);
    }
  if (i < op.in) {  // C = 2 and an odd count: the last input is chain 0's
    vf xi = vset(x[i]);
    for (uint32_t b = 0; b < NB; ++b) acc[0][b] = acc[0][b] + xi * vload(w + b * W);
  }
  for (uint32_t b = 0; b < NB; ++b) {
    vf a = acc[0][b];
    for (uint32_t j = 1; j < C; ++j) a = a + acc[j][b];
    if constexpr (K == kOpValue) a = a * scale + vload(op.rb + (v0 + b) * W);
    vstore(y + (v0 + b) * W, activate<A>(a));
  }
}

// Up to four vectors of outputs at a time: 4 or 8 independent accumulators in flight.
template <OpKind K, Activation A, uint32_t C>
static void dense_row_c(const Op& op, const float* x, float* y, float scale) {
  const uint32_t nv = op.out_w / W;
  uint32_t v0 = 0;
  for (; v0 + 4 <= nv; v0 += 4) dense_row_block<K, A, 4, C>(op, x, y, v0, scale);
  switch (nv - v0) {
    case 3: dense_row_block<K, A, 3, C>(op, x, y, v0, scale); break;
    case 2: dense_row_block<K, A, 2, C>(op, x, y, v0, scale); break;
    case 1: dense_row_block<K, A, 1, C>(op, x, y, v0, scale); break;
    default: break;
  }
}

template <OpKind K, Activation A>
static void dense_row(const Op& op, const float* x, float* y, float scale = 1.0f) {
  if (chains(op.in) == 2) dense_row_c<K, A, 2>(op, x, y, scale);
  else dense_row_c<K, A, 1>(op, x, y, scale);
}

// The softmax sum's order, the same on every path and ISA: four partial sums over the
// indices i = k (mod 4), each in index order, then (s0 + s1) + (s2 + s3). Four chains
// instead of one: the row path's latency, and the same bits in every lane of a tile.
static inline float sum4(const float* y, uint32_t n) {
  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
  uint32_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 = s0 + y[i];
    s1 = s1 + y[i + 1];
    s2 = s2 + y[i + 2];
    s3 = s3 + y[i + 3];
  }
  if (i < n) s0 = s0 + y[i];
  if (i + 1 < n) s1 = s1 + y[i + 1];
  if (i + 2 < n) s2 = s2 + y[i + 2];
  return (s0 + s1) + (s2 + s3);
}

// sum4's last step, lane by lane, for the tiles' four partial sums.
static inline vf vsum4(const vf* s) { return (s[0] + s[1]) + (s[2] + s[3]); }

// y[i] = exp(y[i] - max y) over y[0..n) in place (y has room for up(n, W) floats);
// returns 1 / their sum (sum4's order)
static float softmax_num_row(float* y, uint32_t n) {
  float m0 = y[0], m1 = y[0], m2 = y[0], m3 = y[0];  // the max is exact in any order
  uint32_t i = 1;
  for (; i + 4 <= n; i += 4) {
    m0 = smax(y[i], m0);
    m1 = smax(y[i + 1], m1);
    m2 = smax(y[i + 2], m2);
    m3 = smax(y[i + 3], m3);
  }
  for (; i < n; ++i) m0 = smax(y[i], m0);
  const float m = smax(smax(m1, m0), smax(m3, m2));
  for (i = 0; i < n; i += W) vstore(y + i, v_exp_le0(vload(y + i) - m));
  return 1.0f / sum4(y, n);
}

static void softmax_row(float* y, uint32_t n) {
  const float r = softmax_num_row(y, n);
  for (uint32_t i = 0; i < n; ++i) y[i] = y[i] * r;
}

static bool run_row(const Plan& P, const float* x, float* out, float* attn, float* ws) {
  float* A = ws;
  float* B = ws + up(P.row_len, 16);
  uint32_t bad = 0;  // an exponent of all ones: NaN or Inf (an OR, not a chain of adds)
  for (uint32_t i = 0; i < P.input_size; ++i) {
    const float a = (x[i] - P.mean[i]) * P.inv_std[i];
    uint32_t u;
    __builtin_memcpy(&u, &a, 4);
    bad |= uint32_t((u & 0x7F800000u) == 0x7F800000u);
    A[i] = a;
  }
  for (uint32_t i = P.input_size; i < P.in_w; ++i) A[i] = 0.0f;
  bool first_gate = true;
  float scale = 1.0f;  // 1 / the last gate's softmax sum, for its value op
  for (uint32_t k = 0; k < P.n_ops; ++k) {
    const Op& op = P.ops[k];
    // Exhaustive switches with no default (the kernels build with -Werror=switch): an op
    // kind or activation without its case does not compile, it never runs as linear.
    switch (op.kind) {
      case kOpGate: dense_row<kOpGate, kLinear>(op, A, B); break;
      case kOpValue: dense_row<kOpValue, kLinear>(op, A, B, scale); break;
      case kOpDense:
        switch (op.act) {
#define PM_X_ROW(id, code, name) case id: dense_row<kOpDense, id>(op, A, B); break;
          PM_ACTIVATIONS(PM_X_ROW)
#undef PM_X_ROW
        }
        break;
    }
    if (op.kind == kOpGate) {  // B = e * x, e = exp(logit - max); the value op scales by 1 / sum e
      scale = softmax_num_row(B, op.out);
      if (attn && first_gate)
        for (uint32_t i = 0; i < op.out; ++i) attn[i] = B[i] * scale;
      first_gate = false;
      for (uint32_t i = 0; i < op.out; ++i) B[i] = B[i] * A[i];
    }
    float* t = A;
    A = B;
    B = t;
  }
  softmax_row(A, P.n_classes);
  // NaN or Inf in the input, or float32 overflow inside the network (NaN propagates to
  // every probability then; see v_exp_impl).
  const bool is_bad = bad != 0 || A[0] != A[0];
  for (uint32_t c = 0; c < P.n_classes; ++c) out[c] = is_bad ? __builtin_nanf("") : A[c];
  if (is_bad && attn)
    for (uint32_t i = 0; i < P.attn_width; ++i) attn[i] = __builtin_nanf("");
  return is_bad;
}

// ---------------------------------------------------------------- a tile of rows

// The next tile's input, asked into the cache a few lines per micro-kernel panel while
// this tile computes. The input streams from memory; fetching it in one burst when
// the tile starts would fill the miss buffers and stall, spread out it costs nothing.
struct Prefetch {
  const char* p;
  const char* end;
  uint32_t per_panel;  // cache lines per panel
  inline void step() {
    for (uint32_t k = 0; k < per_panel && p < end; ++k, p += 64) __builtin_prefetch(p, 0, 3);
  }
};

// Not inlined: keeps the exp constants of the callers from crowding its registers.
// aux: kOpGate writes each sample's max logit there (T floats), kOpValue reads each
// sample's scale from there; kOpDense ignores it.
// C chains (chains(op.in)), in the row path's order: with two, the even inputs add up from the
// bias, the odd ones from 0, and the two sums add at the end. Where there are 32 registers
// (AVX-512) both chains' accumulators are live at once (2 x MR x NR); with 16, one chain at a
// time runs the MR x NR micro-kernel (its inputs stay in registers: a half panel would refetch
// them from memory for every output and bind on loads), and chain 0's sums wait in Y.
constexpr bool kBothChainsLive = W == 16;
template <OpKind K, Activation A, uint32_t C>
__attribute__((noinline)) static void dense_tile_c(const Op& op, const float* X, float* Y,
                                                   Prefetch& pf, float* aux) {
  constexpr uint32_t CL = kBothChainsLive ? C : 1;  // chains live at once
  vf side[NR];  // kOpGate: running max over the real outputs; kOpValue: the scales
  if constexpr (K == kOpValue)
    for (uint32_t c = 0; c < NR; ++c) side[c] = vload(aux + c * W);
  const uint32_t in = op.in, in_c = in / C * C;
  for (uint32_t p = 0; p < op.out_mr; p += MR) {
    pf.step();
    const float* wp = op.pw + uint64_t(p) * in;  // panel p / MR: [in][MR]
    float* y = Y + uint64_t(p) * T;
    vf acc[CL][MR][NR];
    for (uint32_t j0 = 0; j0 < C; j0 += CL) {  // chains j0 .. j0 + CL - 1
      for (uint32_t r = 0; r < MR; ++r) {
        vf b = K == kOpValue || j0 ? vf{} : vset(op.pb[p + r]);
        for (uint32_t c = 0; c < NR; ++c) {
          acc[0][r][c] = b;
          for (uint32_t j = 1; j < CL; ++j) acc[j][r][c] = vf{};
        }
      }
      const float* x = X + uint64_t(j0) * T;
      const float* w = wp + j0 * MR;
      for (uint32_t i = j0; i < in_c; i += C, x += C * T, w += C * MR)
        for (uint32_t j = 0; j < CL; ++j) {
          vf xv[NR];
          for (uint32_t c = 0; c < NR; ++c) xv[c] = vload(x + j * T + c * W);
          for (uint32_t r = 0; r < MR; ++r) {
            vf wr = vset(w[j * MR + r]);
            for (uint32_t c = 0; c < NR; ++c) acc[j][r][c] = acc[j][r][c] + wr * xv[c];
          }
        }
      if (C > 1 && j0 == 0 && in_c < in) {  // an odd last input: chain 0's
        const float* xl = X + uint64_t(in_c) * T;
        const float* wl = wp + in_c * MR;
        vf xv[NR];
        for (uint32_t c = 0; c < NR; ++c) xv[c] = vload(xl + c * W);
        for (uint32_t r = 0; r < MR; ++r) {
          vf wr = vset(wl[r]);
          for (uint32_t c = 0; c < NR; ++c) acc[0][r][c] = acc[0][r][c] + wr * xv[c];
        }
      }
      // The chains add up while in registers (the epilogue's loop, with an activation in it,
      // may not unroll, and every accumulator it reads would go through memory).
      if constexpr (CL == 2) {
        for (uint32_t r = 0; r < MR; ++r)
          for (uint32_t c = 0; c < NR; ++c) acc[0][r][c] = acc[0][r][c] + acc[1][r][c];
      } else if (C == 2 && j0 == 0) {  // chain 0's sums wait in Y for chain 1
        for (uint32_t r = 0; r < MR; ++r)
          for (uint32_t c = 0; c < NR; ++c) vstore(y + r * T + c * W, acc[0][r][c]);
      } else if (C == 2) {
        for (uint32_t r = 0; r < MR; ++r)
          for (uint32_t c = 0; c < NR; ++c) acc[0][r][c] = vload(y + r * T + c * W) + acc[0][r][c];
      }
    }
    for (uint32_t r = 0; r < MR; ++r)
      for (uint32_t c = 0; c < NR; ++c) {
        vf a = acc[0][r][c];
        if constexpr (K == kOpValue) a = a * side[c] + vset(op.pb[p + r]);
        vstore(y + r * T + c * W, activate<A>(a));
        if constexpr (K == kOpGate) {  // the max pass of the softmax, done here
          if (p + r == 0) side[c] = a;
          else if (p + r < op.out) side[c] = vmax(a, side[c]);
        }
      }
  }
  if constexpr (K == kOpGate)
    for (uint32_t c = 0; c < NR; ++c) vstore(aux + c * W, side[c]);
}

template <OpKind K, Activation A>
static void dense_tile(const Op& op, const float* X, float* Y, Prefetch& pf, float* aux) {
  if (chains(op.in) == 2) dense_tile_c<K, A, 2>(op, X, Y, pf, aux);
  else dense_tile_c<K, A, 1>(op, X, Y, pf, aux);
}

// step(i, s[i % 4]) for i in 0..n-1, in index order: sum4's four chains, lane by lane. Unrolled
// by four so that the four sums stay in registers (s[i & 3] would live on the stack).
template <class Step>
static inline void in_sum4_order(uint32_t n, vf* s, Step&& step) {
  uint32_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (uint32_t k = 0; k < 4; ++k) step(i + k, s[k]);
  for (uint32_t k = 0; i + k < n; ++k) step(i + k, s[k]);
}

// softmax down the rows of a tile Y[0..n)[T], per sample (lane); the sum in sum4's order
// (four independent chains, so the exps of a column overlap).
static void softmax_tile(float* Y, uint32_t n) {
  for (uint32_t c = 0; c < NR; ++c) {
    float* y = Y + c * W;
    vf m = vload(y);
    for (uint32_t i = 1; i < n; ++i) m = vmax(vload(y + i * T), m);
    vf s[4] = {vf{}, vf{}, vf{}, vf{}};
    in_sum4_order(n, s, [&](uint32_t i, vf& acc) {
      vf e = v_exp_le0(vload(y + i * T) - m);
      vstore(y + i * T, e);
      acc = acc + e;
    });
    const vf r = 1.0f / vsum4(s);
    for (uint32_t i = 0; i < n; ++i) vstore(y + i * T, vload(y + i * T) * r);
  }
}

// A[i][t] = (x[t][i] - mean[i]) * inv_std[i] for a tile of nt rows of width I (rows
// nt..T-1 become 0), and flags[t] != 0 iff row t holds a NaN or Inf: one pass over x.
// The test reads the exponent bits (all ones: NaN or Inf) rather than doing arithmetic
// such as v - v, which FMA contraction may turn into a nonzero rounding residual.
static inline uint32_t nonfinite(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  return (u & 0x7F800000u) == 0x7F800000u;
}

// Row t of x starts at x + t * S (S >= I: a member of an ensemble reads its run of columns in
// place, S being the container's row width).
static void load_tile(const Plan& P, const float* x, uint64_t S, uint32_t nt, float* A, uint32_t* flags) {
  const uint32_t I = P.input_size;
  const float* mean = P.mean;
  const float* inv = P.inv_std;
  uint32_t t = 0;
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
  typedef float v4 __attribute__((vector_size(16)));
  typedef uint32_t u4 __attribute__((vector_size(16)));
  auto ld = [](const float* p) { v4 v; __builtin_memcpy(&v, p, 16); return v; };
  auto st = [](float* p, v4 v) { __builtin_memcpy(p, &v, 16); };
  const uint32_t I4 = I & ~3u;
#if PM_LANES >= 8
  typedef float v8 __attribute__((vector_size(32)));
  typedef uint32_t u8 __attribute__((vector_size(32)));
  auto ld8 = [](const float* p) { v8 v; __builtin_memcpy(&v, p, 32); return v; };
  const uint32_t I8 = I & ~7u;
  for (; t + 8 <= nt; t += 8) {  // 8x8 blocks: 24 shuffles instead of 64 scalar stores
    const float* r = x + uint64_t(t) * S;
    u8 bad = u8{};
    for (uint32_t i = 0; i < I8; i += 8) {
      v8 q[8];
      for (uint32_t k = 0; k < 8; ++k) q[k] = ld8(r + uint64_t(k) * S + i);
      v8 a[8], b[8];
      for (uint32_t k = 0; k < 8; k += 2) {  // interleave pairs of rows within 128-bit halves
        a[k] = __builtin_shufflevector(q[k], q[k + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        a[k + 1] = __builtin_shufflevector(q[k], q[k + 1], 2, 10, 3, 11, 6, 14, 7, 15);
      }
      for (uint32_t k = 0; k < 8; k += 4) {  // pairs of pairs
        b[k] = __builtin_shufflevector(a[k], a[k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        b[k + 1] = __builtin_shufflevector(a[k], a[k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        b[k + 2] = __builtin_shufflevector(a[k + 1], a[k + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        b[k + 3] = __builtin_shufflevector(a[k + 1], a[k + 3], 2, 3, 10, 11, 6, 7, 14, 15);
      }
      v8 c[8];  // c[f] = feature i+f of samples t..t+7
      for (uint32_t f = 0; f < 4; ++f) {
        c[f] = __builtin_shufflevector(b[f], b[f + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        c[f + 4] = __builtin_shufflevector(b[f], b[f + 4], 4, 5, 6, 7, 12, 13, 14, 15);
      }
      for (uint32_t f = 0; f < 8; ++f) {
        v8 v = (c[f] - mean[i + f]) * inv[i + f];
        bad |= (u8)(((u8)v & 0x7F800000u) == 0x7F800000u);
        __builtin_memcpy(A + (i + f) * T + t, &v, 32);
      }
    }
    __builtin_memcpy(flags + t, &bad, 32);
    for (uint32_t i = I8; i < I; ++i)
      for (uint32_t k = 0; k < 8; ++k) {
        float v = (r[uint64_t(k) * S + i] - mean[i]) * inv[i];
        flags[t + k] |= nonfinite(v);
        A[i * T + t + k] = v;
      }
  }
#endif
  for (; t + 4 <= nt; t += 4) {  // 4x4 blocks: 8 shuffles instead of 16 scalar stores
    const float* r = x + uint64_t(t) * S;
    u4 bad = u4{};
    for (uint32_t i = 0; i < I4; i += 4) {
      v4 r0 = ld(r + i), r1 = ld(r + S + i), r2 = ld(r + 2 * S + i), r3 = ld(r + 3 * S + i);
      v4 t0 = __builtin_shufflevector(r0, r1, 0, 4, 1, 5);
      v4 t1 = __builtin_shufflevector(r0, r1, 2, 6, 3, 7);
      v4 t2 = __builtin_shufflevector(r2, r3, 0, 4, 1, 5);
      v4 t3 = __builtin_shufflevector(r2, r3, 2, 6, 3, 7);
      v4 c[4] = {__builtin_shufflevector(t0, t2, 0, 1, 4, 5), __builtin_shufflevector(t0, t2, 2, 3, 6, 7),
                 __builtin_shufflevector(t1, t3, 0, 1, 4, 5), __builtin_shufflevector(t1, t3, 2, 3, 6, 7)};
      for (uint32_t k = 0; k < 4; ++k) {
        v4 v = (c[k] - mean[i + k]) * inv[i + k];
        bad |= (u4)(((u4)v & 0x7F800000u) == 0x7F800000u);
        st(A + (i + k) * T + t, v);
      }
    }
    __builtin_memcpy(flags + t, &bad, 16);
    for (uint32_t i = I4; i < I; ++i)
      for (uint32_t k = 0; k < 4; ++k) {
        float v = (r[uint64_t(k) * S + i] - mean[i]) * inv[i];
        flags[t + k] |= nonfinite(v);
        A[i * T + t + k] = v;
      }
  }
#endif
  for (; t < nt; ++t) {
    uint32_t bad = 0;
    for (uint32_t i = 0; i < I; ++i) {
      float v = (x[uint64_t(t) * S + i] - mean[i]) * inv[i];
      bad |= nonfinite(v);
      A[i * T + t] = v;
    }
    flags[t] = bad;
  }
  if (nt < T)
    for (uint32_t i = 0; i < I; ++i)
      for (uint32_t k = nt; k < T; ++k) A[i * T + k] = 0.0f;
}

// The attention gate down the rows of a tile, per sample (lane), with the max of each
// sample's logits already in mx (dense_tile<kOpGate> found it): Y[i] = exp(Y[i] - max) *
// X[i], and scale = 1 / sum exp(...), which the value op applies. With attn (explain),
// also attn[t][i] = exp(...) * scale, the attention weights. The same arithmetic as the
// row path, so results are bit-identical.
template <bool kAttn>
static inline void gate_columns(float* Y, const float* X, uint32_t n, const float* mx, float* scale) {
  for (uint32_t c = 0; c < NR; ++c) {
    float* y = Y + c * W;
    const float* x = X + c * W;
    const vf m = vload(mx + c * W);
    vf s[4] = {vf{}, vf{}, vf{}, vf{}};
    in_sum4_order(n, s, [&](uint32_t i, vf& acc) {
      vf e = v_exp_le0(vload(y + i * T) - m);
      acc = acc + e;
      vstore(y + i * T, kAttn ? e : e * vload(x + i * T));
    });
    vstore(scale + c * W, 1.0f / vsum4(s));
  }
}

static void softmax_gate_tile(float* Y, const float* X, uint32_t n, const float* mx, float* scale,
                              float* attn, uint32_t nt) {
  if (attn) gate_columns<true>(Y, X, n, mx, scale);
  else gate_columns<false>(Y, X, n, mx, scale);
  if (!attn) return;
  for (uint32_t t = 0; t < nt; ++t)
    for (uint32_t i = 0; i < n; ++i) attn[uint64_t(t) * n + i] = Y[i * T + t] * scale[t];
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t c = 0; c < NR; ++c)
      vstore(Y + i * T + c * W, vload(Y + i * T + c * W) * vload(X + i * T + c * W));
}

// out[t][c] = A[c][t]: the tile's probabilities back to row-major. CC is C when known
// at compile time (0: use the runtime C).
template <uint32_t CC>
static inline void store_rows(const float* A, uint32_t nt, uint32_t C, float* out) {
  const uint32_t n = CC ? CC : C;
  for (uint32_t t = 0; t < nt; ++t)
    for (uint32_t c = 0; c < n; ++c) out[uint64_t(t) * n + c] = A[c * T + t];
}

// next[0..next_bytes): memory to ask into the cache while this tile computes (the next tile).
static uint64_t run_tile(const Plan& P, const float* x, uint64_t S, uint32_t nt, float* out, float* attn,
                         float* ws, const char* next, uint64_t next_bytes) {
  const uint32_t C = P.n_classes;
  Prefetch pf{next, next + next_bytes, uint32_t((next_bytes / 64 + P.n_panels) / P.n_panels)};
  float* A = ws;
  float* B = ws + uint64_t(P.tile_rows) * T;
  uint32_t flags[T];
  float gate_max[T], gate_scale[T];
  load_tile(P, x, S, nt, A, flags);

  bool first_gate = true;
  for (uint32_t k = 0; k < P.n_ops; ++k) {
    const Op& op = P.ops[k];
    switch (op.kind) {  // exhaustive, as run_row's
      case kOpGate: dense_tile<kOpGate, kLinear>(op, A, B, pf, gate_max); break;
      case kOpValue: dense_tile<kOpValue, kLinear>(op, A, B, pf, gate_scale); break;
      case kOpDense:
        switch (op.act) {
#define PM_X_TILE(id, code, name) case id: dense_tile<kOpDense, id>(op, A, B, pf, nullptr); break;
          PM_ACTIVATIONS(PM_X_TILE)
#undef PM_X_TILE
        }
        break;
    }
    if (op.kind == kOpGate) {
      softmax_gate_tile(B, A, op.out, gate_max, gate_scale, attn && first_gate ? attn : nullptr, nt);
      first_gate = false;
    }
    float* tmp = A;
    A = B;
    B = tmp;
  }
  softmax_tile(A, C);
  switch (C) {  // the presets' heads get a loop the compiler can unroll
    case 3: store_rows<3>(A, nt, C, out); break;
    case 5: store_rows<5>(A, nt, C, out); break;
    default: store_rows<0>(A, nt, C, out); break;
  }

  // A full tile with no bad input flag and no NaN in its first class (every row's NaN reaches
  // all of its probabilities, see v_exp_impl) has nothing to mark: checked a vector at a time.
  // (A partial tile's flags past nt are not written: the loop below.)
  if (nt == T) {
    vi any = vi{};
    for (uint32_t c = 0; c < NR; ++c) {
      vi f;
      __builtin_memcpy(&f, flags + c * W, sizeof f);
      const vf p = vload(A + c * W);
      any |= f | (vi)(p != p);
    }
    bool clean = true;
    for (uint32_t l = 0; l < W; ++l) clean &= any[l] == 0;
    if (clean) return 0;
  }
  uint64_t n_bad = 0;
  for (uint32_t t = 0; t < nt; ++t) {  // as in run_row: bad input, or overflow inside
    if (!flags[t] && out[uint64_t(t) * C] == out[uint64_t(t) * C]) continue;
    ++n_bad;
    for (uint32_t c = 0; c < C; ++c) out[uint64_t(t) * C + c] = __builtin_nanf("");
    if (attn)
      for (uint32_t i = 0; i < P.attn_width; ++i) attn[uint64_t(t) * P.attn_width + i] = __builtin_nanf("");
  }
  return n_bad;
}

static uint64_t run(const void* plan, const float* x, uint64_t n, float* out, float* attn,
                    float* ws) {
  const Plan& P = *static_cast<const Plan*>(plan);
  if (n == 1) return run_row(P, x, out, attn, ws) ? 1 : 0;
  const uint32_t I = P.input_size;
  uint64_t n_bad = 0;
  for (uint64_t t0 = 0; t0 < n; t0 += T) {
    uint32_t nt = uint32_t(n - t0 < T ? n - t0 : T);
    uint64_t after = n - t0 - nt;  // rows after this tile
    n_bad += run_tile(P, x + t0 * I, I, nt, out + t0 * P.n_classes, attn ? attn + t0 * P.attn_width : nullptr,
                      ws, reinterpret_cast<const char*>(x + (t0 + nt) * I), (after < T ? after : T) * I * 4);
  }
  return n_bad;
}

// run() over rows that lie `stride` floats apart (stride >= input_size; the first input_size
// floats of each row are the model's), the same bits row by row, and with pf[0..pf_bytes)
// asked into the cache a slice per tile while they compute (the caller's next rows).
static uint64_t run_strided(const void* plan, const float* x, uint64_t stride, uint64_t n, float* out,
                            float* attn, float* ws, const void* pf, uint64_t pf_bytes) {
  const Plan& P = *static_cast<const Plan*>(plan);
  if (n == 1) return run_row(P, x, out, attn, ws) ? 1 : 0;
  const char* next = static_cast<const char*>(pf);
  const uint64_t tiles = (n + T - 1) / T;
  uint64_t n_bad = 0, k = 0;
  for (uint64_t t0 = 0; t0 < n; t0 += T, ++k) {
    uint32_t nt = uint32_t(n - t0 < T ? n - t0 : T);
    const uint64_t a = pf_bytes * k / tiles & ~uint64_t(63), b = pf_bytes * (k + 1) / tiles;
    n_bad += run_tile(P, x + t0 * stride, stride, nt, out + t0 * P.n_classes,
                      attn ? attn + t0 * P.attn_width : nullptr, ws, b > a ? next + a : next, b > a ? b - a : 0);
  }
  return n_bad;
}

static uint64_t fma_probe(uint64_t rounds, float* sink) {
  constexpr uint32_t K = 12;
  vf acc[K];
  for (uint32_t k = 0; k < K; ++k) acc[k] = vset(float(k) * 1e-3f);
  vf a = vset(*sink), b = vset(1e-4f);  // a from memory: the compiler cannot fold the loop
  for (uint64_t i = 0; i < rounds; ++i)
    for (uint32_t k = 0; k < K; ++k) acc[k] = acc[k] * a + b;
  vf s = vf{};
  for (uint32_t k = 0; k < K; ++k) s = s + acc[k];
  float t = 0.0f;
  for (uint32_t l = 0; l < W; ++l) t = t + s[l];
  *sink = t;
  return rounds * K * W;
}

static void exp_into(const float* x, float* y, uint64_t n) {
  uint64_t i = 0;
  for (; i + W <= n; i += W) vstore(y + i, v_exp(vload(x + i)));
  if (i < n) {
    float tail[W] = {};
    for (uint64_t k = i; k < n; ++k) tail[k - i] = x[k];
    vstore(tail, v_exp(vload(tail)));
    for (uint64_t k = i; k < n; ++k) y[k] = tail[k - i];
  }
}

extern const ArchOps ops = {PM_ARCH_NAME, W,         T,        plan_bytes, build_plan, workspace_floats,
                            run,          fma_probe, exp_into, run_strided};
