// pymicro's per-sample forward pass, written once as __host__ __device__ code.
//
// The same text is compiled three ways:
//  * by NVRTC at run time for backend="cuda" (pymicro/runtime/cuda.py), with the model's
//    plan as a compile-time constant (pm_plan(), generated per model) and its weights in
//    __constant__ memory (global memory if they do not fit), one or more samples a thread;
//  * by the host C++ compiler into pymicro._core (cpp/cuda/host.cpp: _cuda_host_forward),
//    with PM_HD defined away, so the tests check it against the native core on every run,
//    on machines with no GPU;
//  * by nvcc, for whoever wants to inspect the SASS (docs/cuda.md).
//
// It includes nothing (NVRTC has no standard headers by default). The plan and the weights
// come from the blob through the C++ parser (cpp/pymicro/parse.hpp) on the host: see
// build_cuda_plan in cpp/cuda/host.cpp. Arithmetic follows cpp/pymicro/kernels.inl: every dot
// product runs in its order (from 8 inputs on, even inputs from the bias and odd ones from 0,
// then the two sums add; below 8, inputs 0..n-1 from the bias), softmax sums use sum4's order,
// and exp is the same Cody-Waite reduction and degree-6 polynomial, so results agree with the
// native core to rounding (FMA contraction may differ between compilers).
#pragma once

#ifndef PM_HD
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define PM_HD __host__ __device__
#else
#define PM_HD
#endif
#endif

// PM_UNROLL_OPS (set by pymicro/runtime/cuda.py for a micro network): device code unrolls
// every loop. With the plan a compile-time constant (pm_ops below) every bound and index is
// then known, and A and B live in registers instead of the stack. Larger networks keep the
// loops (their full unrolling would take NVRTC minutes) and their scratch in local memory.
#if defined(__CUDA_ARCH__) && defined(PM_UNROLL_OPS)
#define PM_UNROLL _Pragma("unroll")
#else
#define PM_UNROLL
#endif

#ifndef PM_MAX_OPS
#define PM_MAX_OPS 128  // 2 * kMaxLayers (an attention layer is two ops)
#endif

namespace pmcuda {

typedef unsigned int u32;
typedef unsigned long long u64;

// What an op does (as kernels.inl's OpKind): a dense layer is one op; an attention layer
// is a gate (logits, softmax, gating of the input) and a value op.
enum : u32 { kOpDense = 0, kOpGate = 1, kOpValue = 2 };
// Activation codes are the blob's (format.hpp, PM_ACTIVATIONS); host.cpp checks that every
// one of them is handled here.
enum : u32 { kActLinear = 0, kActRelu = 1, kActTanh = 2, kActSigmoid = 3, kActGelu = 4 };
constexpr bool act_supported(u32 code) { return code <= kActGelu; }

struct Op {
  u32 kind, act, in, out;
  u32 w, b;  // offsets into the weights: W row-major [out][in], bias [out]
};

// Weights: mean [input_size], inv_std [input_size], then each op's W and b.
struct Plan {
  u32 n_ops, input_size, n_classes, attn_width, max_width;
  u32 mean, inv;  // offsets into the weights
  Op ops[PM_MAX_OPS];
};

PM_HD inline u32 pm_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  u32 u;
  __builtin_memcpy(&u, &f, 4);
  return u;
#endif
}
PM_HD inline float pm_from_bits(u32 u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
#endif
}
PM_HD inline bool pm_nonfinite(float f) { return (pm_bits(f) & 0x7F800000u) == 0x7F800000u; }
PM_HD inline float pm_max(float a, float b) { return a > b ? a : b; }  // NaN in b passes
PM_HD inline float pm_min(float a, float b) { return a < b ? a : b; }
PM_HD inline float pm_nan() { return pm_from_bits(0x7FC00000u); }

// kernels.inl's v_exp_impl, one lane: exactly 0 below ln(FLT_MIN), NaN passes through.
constexpr float kExpMin = -87.33654f;
template <bool kUpperClamp>
PM_HD inline float pm_exp_impl(float x0) {
  float x = pm_max(-87.5f, x0);
  if (kUpperClamp) x = pm_min(88.0f, x);
  const float magic = 12582912.0f;
  float t = x * 1.44269504088896341f + magic;
  float n = t - magic;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 0x1.6a244cp-10f;
  p = p * r + 0x1.1239d4p-7f;
  p = p * r + 0x1.5558f2p-5f;
  p = p * r + 0x1.555492p-3f;
  p = p * r + 0x1.fffffcp-2f;
  float y = p * (r * r) + r + 1.0f;
  const int e = (int(pm_bits(t)) - int(pm_bits(magic)) + 127) << 23;
  y = y * pm_from_bits(u32(e));
  return x0 < kExpMin ? 0.0f : y;  // NaN compares false: stays NaN
}
PM_HD inline float pm_exp(float x) { return pm_exp_impl<true>(x); }
PM_HD inline float pm_exp_le0(float x) { return pm_exp_impl<false>(x); }

// kernels.inl's v_tanh, one lane: x * P(x^2) / Q(x^2) on |x| <= 7.90531; NaN passes through.
PM_HD inline float pm_tanh(float x0) {
  const float c = 7.90531110763549805f;
  const float x = pm_max(-c, pm_min(c, x0));
  const float x2 = x * x;
  float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return (x * p) / q;
}

PM_HD inline float pm_sigmoid(float x) {
  const float s = 1.0f / (1.0f + pm_exp(-pm_min(80.0f, x)));
  return x < kExpMin ? 0.0f : s;
}

PM_HD inline float pm_activate(u32 act, float x) {
  switch (act) {
    case kActRelu: return pm_max(0.0f, x);
    case kActTanh: return pm_tanh(x);
    case kActSigmoid: return pm_sigmoid(x);
    case kActGelu: {
      const float c = 0.7978845608028654f;
      return 0.5f * x * (1.0f + pm_tanh(c * (x + 0.044715f * x * x * x)));
    }
    default: return x;  // kActLinear (the parser admits no other code)
  }
}

// kernels.inl's sum4: four chains over i = k (mod 4), then (s0 + s1) + (s2 + s3).
PM_HD inline float pm_sum4(const float* y, u32 n) {
  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
  u32 i = 0;
  PM_UNROLL
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

// y[i] = exp(y[i] - max y) in place; returns 1 / their sum.
PM_HD inline float pm_softmax_num(float* y, u32 n) {
  float m = y[0];
  PM_UNROLL
  for (u32 i = 1; i < n; ++i) m = pm_max(y[i], m);
  PM_UNROLL
  for (u32 i = 0; i < n; ++i) y[i] = pm_exp_le0(y[i] - m);
  return 1.0f / pm_sum4(y, n);
}

// One op of the network (a dense layer, or an attention layer's gate or value op): A -> B,
// then A and B trade places. scale carries the gate's 1 / sum to its value op.
PM_HD inline void pm_op(const Op& op, const float* W, const float* A, float* B, float& scale,
                        bool& first_gate, float* attn) {
  const float* w = W + op.w;
  PM_UNROLL
  for (u32 o = 0; o < op.out; ++o, w += op.in) {
    // kernels.inl's order: from 8 inputs on, two chains (even inputs from the bias, odd
    // ones from 0) that add up at the end; below that, one chain.
    float acc = op.kind == kOpValue ? 0.0f : W[op.b + o];
    if (op.in >= 8) {
      float odd = 0.0f;
      PM_UNROLL
      for (u32 i = 0; i < op.in / 2; ++i) {
        acc = acc + A[2 * i] * w[2 * i];
        odd = odd + A[2 * i + 1] * w[2 * i + 1];
      }
      if (op.in % 2) acc = acc + A[op.in - 1] * w[op.in - 1];
      acc = acc + odd;
    } else {
      PM_UNROLL
      for (u32 i = 0; i < op.in; ++i) acc = acc + A[i] * w[i];
    }
    if (op.kind == kOpValue) acc = acc * scale + W[op.b + o];
    B[o] = op.kind == kOpDense ? pm_activate(op.act, acc) : acc;
  }
  if (op.kind == kOpGate) {
    scale = pm_softmax_num(B, op.out);
    if (attn && first_gate) {
      PM_UNROLL
      for (u32 i = 0; i < op.out; ++i) attn[i] = B[i] * scale;
    }
    first_gate = false;
    PM_UNROLL
    for (u32 i = 0; i < op.out; ++i) B[i] = B[i] * A[i];
  }
}

// The ops in order: a loop over the plan on the host and for large networks; for a micro
// network's device compile (PM_UNROLL_OPS; the plan a constant expression) one instantiation
// per op, so that every loop bound is a constant, every loop unrolls and A and B stay in
// registers. The arithmetic is pm_op's either way.
#if defined(PM_PLAN_INIT)
constexpr Plan pm_plan() { return Plan PM_PLAN_INIT; }
#endif
#if defined(PM_PLAN_INIT) && defined(PM_UNROLL_OPS)
// Each op writes a fresh array of its own width (no scratch shared between layers: every array
// is small, written once and promoted to registers whole); the last one is copied to R.
template <u32 K>
PM_HD inline void pm_ops(const float* W, const float* A, float* R, float& scale, bool& first_gate, float* attn) {
  constexpr Op op = pm_plan().ops[K];
  float B[op.out];
  pm_op(op, W, A, B, scale, first_gate, attn);
  if constexpr (K + 1 < PM_MAX_OPS) {
    pm_ops<K + 1>(W, B, R, scale, first_gate, attn);
  } else {
    PM_UNROLL
    for (u32 i = 0; i < op.out; ++i) R[i] = B[i];
  }
}
#define PM_RUN_OPS(P, W, A, B, scale, first_gate, attn) pm_ops<0>(W, A, A, scale, first_gate, attn)
#else
#define PM_RUN_OPS(P, W, A, B, scale, first_gate, attn)                 \
  for (u32 k = 0; k < (P).n_ops; ++k) {                                 \
    pm_op((P).ops[k], W, A, B, scale, first_gate, attn);                \
    float* t = A;                                                       \
    A = B;                                                              \
    B = t;                                                              \
  }
#endif

// One sample: x (input_size floats) -> out (n_classes probabilities); attn, if not null,
// gets the first attention layer's weights (attn_width floats). A and B are scratch of
// max_width floats each. Returns true for a bad row (NaN/Inf input, or float32 overflow
// inside the network), whose outputs are all NaN, as the native core's.
// W is the weights array (__constant__ on the GPU, or any pointer).
PM_HD inline bool pm_forward(const Plan& P, const float* W, const float* x, float* out,
                             float* attn, float* A, float* B) {
  bool bad = false;
  PM_UNROLL
  for (u32 i = 0; i < P.input_size; ++i) {
    const float a = (x[i] - W[P.mean + i]) * W[P.inv + i];
    bad = bad | pm_nonfinite(a);
    A[i] = a;
  }
  bool first_gate = true;
  float scale = 1.0f;
  PM_RUN_OPS(P, W, A, B, scale, first_gate, attn);
  const float r = pm_softmax_num(A, P.n_classes);
  bad = bad || A[0] != A[0];
  PM_UNROLL
  for (u32 c = 0; c < P.n_classes; ++c) out[c] = bad ? pm_nan() : A[c] * r;
  if (bad && attn) {
    PM_UNROLL
    for (u32 i = 0; i < P.attn_width; ++i) attn[i] = pm_nan();
  }
  return bad;
}

}  // namespace pmcuda

// ---------------------------------------------------------------- the kernel (GPU only)
//
// The source NVRTC compiles is this file preceded by a per-model prelude
// (pymicro/runtime/cuda.py) that defines PM_MAXW (the widest layer), PM_N_WEIGHTS, either
// PM_WEIGHTS_CONSTANT or nothing, and PM_PLAN_INIT (the plan's initialiser: pm_plan()). With the plan a
// compile-time constant, every loop bound and weight offset is known: the compiler unrolls
// the network, keeps A and B in registers, and reads each weight from the constant cache
// (every thread of a warp reads the same weight at the same time: a broadcast).
#if defined(__CUDACC_RTC__) || defined(PM_CUDA_KERNEL)
#ifdef PM_WEIGHTS_CONSTANT
__constant__ float pm_weights[PM_N_WEIGHTS];
#endif

extern "C" __global__ void pm_predict(const float* __restrict__ x, float* __restrict__ out,
                                      float* __restrict__ attn, unsigned long long n,
                                      unsigned long long* n_bad,
                                      const float* __restrict__ weights) {
  constexpr pmcuda::Plan P = pmcuda::pm_plan();
#ifdef PM_WEIGHTS_CONSTANT
  const float* W = pm_weights;
  (void)weights;
#else
  const float* W = weights;
#endif
  float A[PM_MAXW], B[PM_MAXW];
  pmcuda::u64 bad = 0;
  const pmcuda::u64 stride = pmcuda::u64(gridDim.x) * blockDim.x;
  for (pmcuda::u64 r = pmcuda::u64(blockIdx.x) * blockDim.x + threadIdx.x; r < n;
       r += stride)
    bad += pmcuda::pm_forward(P, W, x + r * P.input_size, out + r * P.n_classes,
                              attn ? attn + r * P.attn_width : nullptr, A, B);
  if (bad) atomicAdd(n_bad, bad);
}
#endif
