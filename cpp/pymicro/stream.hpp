// pymicro incremental features: the momentum and reversal sets updated in O(1) per bar.
//
// A FeatureState takes one OHLCV bar at a time (commit) and yields, after each, exactly
// the row that pymicro.market.technical.momentum_features / reversal_features(bars,
// dropna=False) compute for the same history (docs/features.md; tests/test_stream.py checks
// it over whole histories, NaN warm-up included). `peek` evaluates the features as if a
// forming bar were the next one, and commits nothing: what a tick inside an unfinished bar
// needs. The reversal set's own windows are pushed only when one of its features is
// selected, so a momentum stream costs what it did.
//
// How each window stays O(1):
//   sums (means, ATR, RSI, volume)   running sum, recomputed from its ring every W pushes
//                                    (amortised O(1); the drift of W add/subtract pairs
//                                    stays near one ulp of the window's magnitude). A count
//                                    of non-zero values makes an all-zero window exactly 0,
//                                    so the batch's "0 -> default" branches agree.
//   sample std                       running sum and sum of squares around a shift that is
//                                    reset at each recomputation (no large cancellation).
//   least-squares slope              running sum and index-weighted sum (T' = T - S + y0 +
//                                    (W-1) y_new), with the same recomputation.
//   rolling max / min                monotone deques in fixed rings; a peek reads the
//                                    second entry when the first one would expire.
//   lag-1 autocorrelation            running sums of x, x^2 and x_k x_{k+1}, recomputed
//                                    every W pushes; a leg with no non-zero value is 0.
//   streaks, flat closes             run lengths (same-sign returns; equal closes, which
//                                    make a z-score window's 0 / 0 exact).
// Everything lives in fixed-capacity arrays inside the state: no heap, no libc (log is
// fdlibm's algorithm below; sqrt is the compiler builtin, an instruction on x86 and wasm),
// so this header compiles freestanding for wasm32 (wasm/pymicro_wasm.cpp's pm_stream_*).
#pragma once

#include <stdint.h>

namespace pymicro {
namespace stream {

// X(name, first bar index at which the batch pipeline defines it): the momentum set in
// its model order (pymicro.market.technical.MOMENTUM_FEATURES, docs/features.md), then the
// reversal set's other 26 (REVERSAL_FEATURES shares ret_1, ret_3, gap_1, rsi_14,
// sma_dist_50 and volume_ratio_20 with momentum).
#define PM_STREAM_FEATURES(X) \
  X(ret_1, 1) X(ret_3, 3) X(ret_5, 5) X(ret_10, 10) X(ret_20, 20) X(ret_60, 60)        \
  X(vol_5, 5) X(vol_20, 20) X(vol_60, 60) X(parkinson_20, 19)                           \
  X(range_1, 0) X(gap_1, 1) X(body_1, 0) X(close_loc_1, 0) X(atr_14, 14)                \
  X(volume_ratio_20, 19) X(volume_trend_5_20, 19) X(signed_volume_20, 20)               \
  X(sma_dist_10, 9) X(sma_dist_50, 49) X(trend_slope_20, 19)                            \
  X(rsi_14, 14) X(stoch_k_14, 13) X(dist_high_60, 59)                                   \
  PM_STREAM_REVERSAL_FEATURES(X)

#define PM_STREAM_REVERSAL_FEATURES(X) \
  X(zscore_ret_5, 60) X(zscore_ret_20, 60)                                              \
  X(zscore_close_10, 9) X(zscore_close_20, 19) X(zscore_close_50, 49)                   \
  X(rsi_2, 2) X(rsi_5, 5) X(rsi_extreme_14, 14) X(stoch_k_5, 4) X(stoch_d_14, 15)       \
  X(sma_dist_5, 4) X(sma_dist_20, 19) X(sma_cross_10_50, 49)                            \
  X(dist_high_20, 19) X(dist_low_20, 19) X(range_pos_60, 59)                            \
  X(overext_atr_20, 19) X(bb_width_20, 19) X(streak_10, 10) X(down_frac_10, 10)         \
  X(body_ratio_1, 0) X(lower_wick_1, 0) X(upper_wick_1, 0) X(engulfing_1, 1)            \
  X(vol_ratio_5_60, 60) X(autocorr_60, 60)

enum FeatureId : uint32_t {
#define PM_X_ID(name, first) k_##name,
  PM_STREAM_FEATURES(PM_X_ID)
#undef PM_X_ID
  kFeatureCount
};

// The momentum set is ids 0 .. kMomentumCount - 1; the reversal-only windows are kept only
// when a selected id is at or above it.
constexpr uint32_t kMomentumCount = k_zscore_ret_5;

inline const char* feature_name(uint32_t id) {
  static const char* const names[] = {
#define PM_X_NAME(name, first) #name,
      PM_STREAM_FEATURES(PM_X_NAME)
#undef PM_X_NAME
  };
  return id < kFeatureCount ? names[id] : "";
}

inline uint32_t feature_first_bar(uint32_t id) {
  static const uint32_t first[] = {
#define PM_X_FIRST(name, f) f,
      PM_STREAM_FEATURES(PM_X_FIRST)
#undef PM_X_FIRST
  };
  return id < kFeatureCount ? first[id] : 0;
}

// The id of the feature spelled name[0..len), or kFeatureCount if this state cannot compute it.
inline uint32_t find_feature(const char* name, uint32_t len) {
  for (uint32_t id = 0; id < kFeatureCount; ++id) {
    const char* s = feature_name(id);
    uint32_t i = 0;
    while (i < len && s[i] && s[i] == name[i]) ++i;
    if (i == len && !s[i]) return id;
  }
  return kFeatureCount;
}

constexpr uint32_t kLookback = 60;  // rows 0..59 are warm-up (MOMENTUM_LOOKBACK)
constexpr uint32_t kMaxOutputs = 256;

// ------------------------------------------------------------------------ scalar math

inline double nan_value() { return __builtin_nan(""); }
inline bool is_nan(double x) { return x != x; }

// Natural log, fdlibm's e_log.c (error below 1 ulp). x <= 0 gives NaN (-inf at 0).
inline double log(double x) {
  constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10,
                   two54 = 1.80143985094819840000e+16, Lg1 = 6.666666666666735130e-01,
                   Lg2 = 3.999999999940941908e-01, Lg3 = 2.857142874366239149e-01,
                   Lg4 = 2.222219843214978396e-01, Lg5 = 1.818357216161805012e-01,
                   Lg6 = 1.531383769920937332e-01, Lg7 = 1.479819860511658591e-01;
  uint64_t bits;
  __builtin_memcpy(&bits, &x, 8);
  int32_t hx = int32_t(bits >> 32);
  uint32_t lx = uint32_t(bits);
  int32_t k = 0;
  if (hx < 0x00100000) {  // x < 2^-1022: zero, negative or subnormal
    if (((hx & 0x7fffffff) | lx) == 0) return -__builtin_inf();
    if (hx < 0) return nan_value();
    k -= 54;
    x *= two54;
    __builtin_memcpy(&bits, &x, 8);
    hx = int32_t(bits >> 32);
  }
  if (hx >= 0x7ff00000) return x + x;  // inf or NaN
  k += (hx >> 20) - 1023;
  hx &= 0x000fffff;
  int32_t i = (hx + 0x95f64) & 0x100000;
  bits = (uint64_t(uint32_t(hx | (i ^ 0x3ff00000))) << 32) | (bits & 0xffffffffu);
  __builtin_memcpy(&x, &bits, 8);  // normalised into [sqrt(2)/2, sqrt(2))
  k += (i >> 20);
  const double f = x - 1.0, dk = double(k);
  if ((0x000fffff & (2 + hx)) < 3) {  // |f| < 2^-20
    if (f == 0.0) return dk * ln2_hi + dk * ln2_lo;
    const double R = f * f * (0.5 - 0.33333333333333333 * f);
    return dk * ln2_hi - ((R - dk * ln2_lo) - f);
  }
  const double s = f / (2.0 + f), z = s * s, w = z * z;
  i = hx - 0x6147a;
  const int32_t j = 0x6b851 - hx;
  const double t1 = w * (Lg2 + w * (Lg4 + w * Lg6)), t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
  const double R = t2 + t1;
  if ((i | j) > 0) {
    const double hfsq = 0.5 * f * f;
    return dk * ln2_hi - ((hfsq - (s * (hfsq + R) + dk * ln2_lo)) - f);
  }
  return dk * ln2_hi - ((s * (f - R) - dk * ln2_lo) - f);
}

inline double sqrt(double x) { return __builtin_sqrt(x); }
inline double max(double a, double b) { return a > b ? a : b; }
inline double min(double a, double b) { return a < b ? a : b; }
inline double sign(double x) { return x > 0 ? 1.0 : x < 0 ? -1.0 : x; }  // NaN stays NaN
inline double abs(double x) { return x < 0 ? -x : x; }
// num / den, `fallback` where den == 0 (pymicro.market.bars.safe_ratio)
inline double safe_ratio(double num, double den, double fallback) {
  if (is_nan(num) || is_nan(den)) return nan_value();
  return den != 0.0 ? num / den : fallback;
}

// ------------------------------------------------------------------------ windows

// The last N values, newest first by ago(0).
template <uint32_t N>
struct Ring {
  double v[N] = {};
  uint32_t head = 0, size = 0;  // head: the next slot written
  void push(double x) {
    v[head] = x;
    head = head + 1 == N ? 0 : head + 1;
    if (size < N) ++size;
  }
  double ago(uint32_t k) const {  // k < size
    uint32_t i = head + N - 1 - k;
    return v[i >= N ? i - N : i];
  }
};

// Sum of the last W values (valid once W were pushed).
template <uint32_t W>
struct WindowSum {
  Ring<W> ring;
  double sum = 0.0;
  uint32_t nonzero = 0, since = 0;

  bool full() const { return ring.size == W; }
  double value() const { return nonzero ? sum : 0.0; }
  void push(double x) {
    if (full()) {
      const double old = ring.ago(W - 1);
      sum -= old;
      nonzero -= old != 0.0;
    }
    ring.push(x);
    sum += x;
    nonzero += x != 0.0;
    if (++since == W) rebase();
  }
  // The sum after push(x), without pushing; valid when W - 1 values are in.
  bool peek_full() const { return ring.size + 1 >= W; }
  double peek(double x) const {
    double s = sum + x;
    uint32_t nz = nonzero + (x != 0.0);
    if (full()) {
      const double old = ring.ago(W - 1);
      s -= old;
      nz -= old != 0.0;
    }
    return nz ? s : 0.0;
  }
  void rebase() {
    since = 0;
    double s = 0.0;
    for (uint32_t k = ring.size; k-- > 0;) s += ring.ago(k);  // oldest first
    sum = s;
  }
};

// Sample standard deviation (ddof 1) of the last W values, from sums around a shift.
template <uint32_t W>
struct WindowStd {
  Ring<W> ring;
  double shift = 0.0, s1 = 0.0, s2 = 0.0;
  uint32_t nonzero = 0, since = 0;

  bool full() const { return ring.size == W; }
  static double std_of(double a, double b, uint32_t nz) {
    if (!nz) return 0.0;
    const double var = (b - a * a / W) / (W - 1);
    return var > 0.0 ? sqrt(var) : 0.0;
  }
  double value() const { return std_of(s1, s2, nonzero); }
  void push(double x) {
    if (full()) {
      const double old = ring.ago(W - 1), d = old - shift;
      s1 -= d;
      s2 -= d * d;
      nonzero -= old != 0.0;
    }
    ring.push(x);
    const double d = x - shift;
    s1 += d;
    s2 += d * d;
    nonzero += x != 0.0;
    if (++since == W) rebase();
  }
  bool peek_full() const { return ring.size + 1 >= W; }
  double peek(double x) const {
    double d = x - shift, a = s1 + d, b = s2 + d * d;
    uint32_t nz = nonzero + (x != 0.0);
    if (full()) {
      const double old = ring.ago(W - 1), e = old - shift;
      a -= e;
      b -= e * e;
      nz -= old != 0.0;
    }
    return std_of(a, b, nz);
  }
  void rebase() {
    since = 0;
    double m = 0.0;
    for (uint32_t k = 0; k < ring.size; ++k) m += ring.ago(k);
    shift = ring.size ? m / ring.size : 0.0;
    s1 = s2 = 0.0;
    for (uint32_t k = ring.size; k-- > 0;) {
      const double d = ring.ago(k) - shift;
      s1 += d;
      s2 += d * d;
    }
  }
};

// Least-squares slope of the last W values on their index 0..W-1.
template <uint32_t W>
struct WindowSlope {
  Ring<W> ring;
  double shift = 0.0, S = 0.0, T = 0.0;  // S = sum y_k, T = sum k y_k (k = 0 oldest), y = x - shift
  uint32_t since = 0;
  static constexpr double kMid = (W - 1) / 2.0;
  static constexpr double kDen = double(W) * (double(W) * W - 1) / 12.0;  // sum (k - mid)^2

  bool full() const { return ring.size == W; }
  double value() const { return (T - kMid * S) / kDen; }
  void step(double y, double& s, double& t) const {
    if (full()) {
      const double old = ring.ago(W - 1) - shift;
      t = t - (s - old) + (W - 1) * y;
      s = s - old + y;
    } else {
      t += ring.size * y;
      s += y;
    }
  }
  void push(double x) {
    step(x - shift, S, T);
    ring.push(x);
    if (++since == W) rebase();
  }
  bool peek_full() const { return ring.size + 1 >= W; }
  double peek(double x) const {
    double s = S, t = T;
    step(x - shift, s, t);
    return (t - kMid * s) / kDen;
  }
  void rebase() {
    since = 0;
    shift = ring.ago(0);
    S = T = 0.0;
    for (uint32_t k = 0; k < ring.size; ++k) {
      const double y = ring.ago(ring.size - 1 - k) - shift;
      S += y;
      T += k * y;
    }
  }
};

// Maximum of the last W values (a minimum: push -x, negate): a monotone deque.
template <uint32_t W>
struct WindowMax {
  double val[W];
  uint64_t idx[W];
  uint32_t front = 0, count = 0;  // deque in a ring: entries front .. front+count-1
  uint64_t pushed = 0;

  bool full() const { return pushed >= W; }
  double at(uint32_t i) const { return val[(front + i) % W]; }
  double value() const { return at(0); }
  void push(double x) {
    if (count && idx[front] + W <= pushed) {  // leaves the window as x enters (before x is
      front = (front + 1) % W;               // stored: the ring holds W entries at most)
      --count;
    }
    while (count && val[(front + count - 1) % W] <= x) --count;  // drop what x dominates
    const uint32_t slot = (front + count) % W;
    val[slot] = x;
    idx[slot] = pushed;
    ++count;
    ++pushed;
  }
  bool peek_full() const { return pushed + 1 >= W; }
  double peek(double x) const {
    // max over the last W - 1 committed values and x
    uint32_t i = 0;
    if (count && idx[front] + W <= pushed) ++i;  // the front would expire on this push
    return i < count ? max(at(i), x) : x;
  }
};

// Lag-1 autocorrelation of the last W values: the correlation of legs a = the oldest W - 1
// and b = the newest W - 1, each around its own mean (pymicro.market.technical's
// _lag1_autocorr), from running sums S = sum x, Q = sum x^2, P = sum x_k x_{k+1} over the
// window, recomputed from the ring every W pushes. A leg with no non-zero value is constant
// at 0: both sides give the batch's 0 / 0 -> 0 exactly.
template <uint32_t W>
struct WindowAutocorr {
  Ring<W> ring;
  double S = 0.0, Q = 0.0, P = 0.0;
  uint32_t nonzero = 0, since = 0;

  struct Sums {
    double S, Q, P, oldest, newest;
    uint32_t nonzero;
  };
  static double corr(const Sums& s) {
    constexpr double m = W - 1;
    const uint32_t nz_a = s.nonzero - (s.newest != 0.0), nz_b = s.nonzero - (s.oldest != 0.0);
    if (!nz_a || !nz_b) return 0.0;
    const double Sa = s.S - s.newest, Sb = s.S - s.oldest;
    const double va = max(s.Q - s.newest * s.newest - Sa * Sa / m, 0.0);
    const double vb = max(s.Q - s.oldest * s.oldest - Sb * Sb / m, 0.0);
    const double den = sqrt(va * vb);
    return den != 0.0 ? (s.P - Sa * Sb / m) / den : 0.0;
  }
  // The sums after x enters (and the oldest leaves, if the window is full).
  Sums after(double x) const {
    Sums s{S, Q, P, 0.0, x, nonzero};
    if (ring.size == W) {
      const double old = ring.ago(W - 1), next = ring.ago(W - 2);
      s.S -= old;
      s.Q -= old * old;
      s.P -= old * next;
      s.nonzero -= old != 0.0;
    }
    if (ring.size) s.P += ring.ago(0) * x;
    s.S += x;
    s.Q += x * x;
    s.nonzero += x != 0.0;
    s.oldest = ring.size + 1 >= W ? ring.ago(W - 2) : (ring.size ? ring.ago(ring.size - 1) : x);
    return s;
  }
  void push(double x) {
    const Sums s = after(x);
    S = s.S, Q = s.Q, P = s.P, nonzero = s.nonzero;
    ring.push(x);
    if (++since == W) rebase();
  }
  bool peek_full() const { return ring.size + 1 >= W; }
  double peek(double x) const { return corr(after(x)); }
  void rebase() {
    since = 0;
    S = Q = P = 0.0;
    for (uint32_t k = ring.size; k-- > 0;) {
      const double x = ring.ago(k);
      S += x;
      Q += x * x;
      if (k + 1 < ring.size) P += ring.ago(k + 1) * x;
    }
  }
};

// ------------------------------------------------------------------------ the state

struct Bar {
  double open, high, low, close, volume;
};

class FeatureState {
 public:
  // Computes features ids[0..n) (each < kFeatureCount, n <= kMaxOutputs) in that order.
  // Returns false if the request cannot be served (the caller validated names already).
  bool select(const uint32_t* ids, uint32_t n) {
    if (n > kMaxOutputs) return false;
    for (uint32_t i = 0; i < n; ++i)
      if (ids[i] >= kFeatureCount) return false;
    rev_ = false;
    for (uint32_t i = 0; i < n; ++i) {
      ids_[i] = ids[i];
      rev_ = rev_ || ids[i] >= kMomentumCount;
    }
    n_out_ = n;
    return true;
  }
  uint32_t size() const { return n_out_; }
  uint32_t id(uint32_t i) const { return ids_[i]; }
  uint64_t bars() const { return t_; }
  void reset() {
    uint32_t ids[kMaxOutputs], n = n_out_;
    for (uint32_t i = 0; i < n; ++i) ids[i] = ids_[i];
    *this = FeatureState();
    select(ids, n);
  }

  // Appends bar t and writes its feature row into out (size() values; NaN in warm-up).
  void commit(const Bar& b, double* out) {
    Inputs in;
    derive(b, in);
    evaluate(b, in, false, out);
    push(b, in, rev_ ? stoch_k14(b) : nan_value());
  }
  // The row a commit of b would produce, committing nothing.
  void peek(const Bar& b, double* out) const {
    Inputs in;
    derive(b, in);
    evaluate(b, in, true, out);
  }

 private:
  // What one bar contributes to the windows, given the committed history before it.
  struct Inputs {
    bool has_prev;
    double logc, r, hl, tr, signed_v, dc;
    double sgn;        // sign of r (NaN at bar 0)
    uint32_t streak;   // same-sign returns ending here, at most 10 (0 if r == 0)
    uint32_t flat;     // equal closes ending here (1: this close differs from the last)
  };

  void derive(const Bar& b, Inputs& in) const {
    in.has_prev = t_ > 0;
    in.logc = stream::log(b.close);
    in.hl = stream::log(b.high / b.low);
    if (in.has_prev) {
      in.r = stream::log(b.close / prev_close_);
      in.tr = max(b.high, prev_close_) - min(b.low, prev_close_);
      in.signed_v = sign(in.r) * b.volume;
      in.dc = b.close - prev_close_;
      in.sgn = sign(in.r);
      in.streak = in.sgn == 0.0 ? 0 : in.sgn == streak_sign_ ? (streak_ < 10 ? streak_ + 1 : 10) : 1;
      in.flat = b.close == prev_close_ ? (flat_ < kLookback ? flat_ + 1 : kLookback) : 1;
    } else {
      in.r = in.tr = in.signed_v = in.dc = in.sgn = nan_value();
      in.streak = 0;
      in.flat = 1;
    }
  }

  void push(const Bar& b, const Inputs& in, double stoch_k) {
    logc_.push(in.logc);
    hl2_.push(in.hl * in.hl);
    v5_.push(b.volume);
    v20_.push(b.volume);
    c10_.push(b.close);
    c50_.push(b.close);
    slope_.push(in.logc);
    low14_.push(-b.low);
    high14_.push(b.high);
    high60_.push(b.high);
    if (in.has_prev) {
      r5_.push(in.r);
      r20_.push(in.r);
      r60_.push(in.r);
      tr14_.push(in.tr);
      sv20_.push(in.signed_v);
      vv20_.push(b.volume);
      up14_.push(max(in.dc, 0.0));
      abs14_.push(abs(in.dc));
    }
    if (rev_) {
      c5_.push(b.close);
      c20_.push(b.close);
      cs10_.push(b.close);
      cs20_.push(b.close);
      cs50_.push(b.close);
      low5_.push(-b.low);
      high5_.push(b.high);
      low20_.push(-b.low);
      high20_.push(b.high);
      low60_.push(-b.low);
      stoch_k_2ago_ = stoch_k_1ago_;
      stoch_k_1ago_ = stoch_k;
      if (in.has_prev) {
        up2_.push(max(in.dc, 0.0));
        abs2_.push(abs(in.dc));
        up5_.push(max(in.dc, 0.0));
        abs5_.push(abs(in.dc));
        neg10_.push(in.r < 0.0 ? 1.0 : 0.0);
        ac60_.push(in.r);
        streak_sign_ = in.sgn;
        streak_ = in.streak;
      }
      flat_ = in.flat;
      prev_open_ = b.open;
    }
    prev_close_ = b.close;
    ++t_;
  }

  // A window's value at this bar: after a push of x (a commit has not pushed yet either:
  // both paths read the windows as if x were in, with peek()).
  template <class Win>
  static double with(const Win& w, double x) {
    return w.peek_full() ? w.peek(x) : nan_value();
  }

  double ret(const Inputs& in, uint32_t k) const {
    return t_ >= k ? in.logc - logc_.ago(k - 1) : nan_value();
  }
  template <class Sum>
  static double rsi(const Sum& up, const Sum& ab, const Inputs& in) {
    return in.has_prev ? safe_ratio(with(up, max(in.dc, 0.0)), with(ab, abs(in.dc)), 0.5) : nan_value();
  }
  double stoch_k14(const Bar& b) const {
    const double lo = -with(low14_, -b.low), hi = with(high14_, b.high);
    return safe_ratio(b.close - lo, hi - lo, 0.5);
  }
  // (close - mean) / sample std of the last N closes; a window of equal closes is 0 / 0 -> 0
  template <uint32_t N>
  static double zscore(const WindowSum<N>& sum, const WindowStd<N>& sd, const Bar& b, const Inputs& in) {
    const double m = with(sum, b.close), s = with(sd, b.close);
    if (is_nan(m) || is_nan(s)) return nan_value();
    return in.flat >= N ? 0.0 : safe_ratio(b.close - m / N, s, 0.0);
  }

  void evaluate(const Bar& b, const Inputs& in, bool /*peek*/, double* out) const {
    const double nan = nan_value();
    for (uint32_t i = 0; i < n_out_; ++i) {
      double y = nan;
      switch (FeatureId(ids_[i])) {
        case k_ret_1: y = ret(in, 1); break;
        case k_ret_3: y = ret(in, 3); break;
        case k_ret_5: y = ret(in, 5); break;
        case k_ret_10: y = ret(in, 10); break;
        case k_ret_20: y = ret(in, 20); break;
        case k_ret_60: y = ret(in, 60); break;
        case k_vol_5: y = in.has_prev ? with(r5_, in.r) : nan; break;
        case k_vol_20: y = in.has_prev ? with(r20_, in.r) : nan; break;
        case k_vol_60: y = in.has_prev ? with(r60_, in.r) : nan; break;
        case k_parkinson_20: {
          const double s = with(hl2_, in.hl * in.hl);
          y = sqrt(s / 20 / (4.0 * 0.6931471805599453));
          break;
        }
        case k_range_1: y = in.hl; break;
        case k_gap_1: y = in.has_prev ? stream::log(b.open / prev_close_) : nan; break;
        case k_body_1: y = stream::log(b.close / b.open); break;
        case k_close_loc_1: y = safe_ratio(b.close - b.low, b.high - b.low, 0.5); break;
        case k_atr_14: y = in.has_prev ? with(tr14_, in.tr) / 14 / b.close : nan; break;
        case k_volume_ratio_20:
          y = stream::log((b.volume + 1.0) / (with(v20_, b.volume) / 20 + 1.0));
          break;
        case k_volume_trend_5_20:
          y = stream::log((with(v5_, b.volume) / 5 + 1.0) / (with(v20_, b.volume) / 20 + 1.0));
          break;
        case k_signed_volume_20:
          y = in.has_prev ? safe_ratio(with(sv20_, in.signed_v), with(vv20_, b.volume), 0.0) : nan;
          break;
        case k_sma_dist_10: y = in.logc - stream::log(with(c10_, b.close) / 10); break;
        case k_sma_dist_50: y = in.logc - stream::log(with(c50_, b.close) / 50); break;
        case k_trend_slope_20: y = with(slope_, in.logc); break;
        case k_rsi_14: y = rsi(up14_, abs14_, in); break;
        case k_stoch_k_14: y = stoch_k14(b); break;
        case k_dist_high_60: y = in.logc - stream::log(with(high60_, b.high)); break;
        // the reversal set (pymicro.market.technical._reversal_arrays)
        case k_zscore_ret_5:
          y = in.has_prev ? safe_ratio(ret(in, 5), with(r60_, in.r) * sqrt(5.0), 0.0) : nan;
          break;
        case k_zscore_ret_20:
          y = in.has_prev ? safe_ratio(ret(in, 20), with(r60_, in.r) * sqrt(20.0), 0.0) : nan;
          break;
        case k_zscore_close_10: y = zscore(c10_, cs10_, b, in); break;
        case k_zscore_close_20: y = zscore(c20_, cs20_, b, in); break;
        case k_zscore_close_50: y = zscore(c50_, cs50_, b, in); break;
        case k_rsi_2: y = rsi(up2_, abs2_, in); break;
        case k_rsi_5: y = rsi(up5_, abs5_, in); break;
        case k_rsi_extreme_14: {
          const double r = rsi(up14_, abs14_, in);
          y = is_nan(r) ? nan : max(r - 0.7, 0.0) - max(0.3 - r, 0.0);
          break;
        }
        case k_stoch_k_5: {
          const double lo = -with(low5_, -b.low), hi = with(high5_, b.high);
          y = safe_ratio(b.close - lo, hi - lo, 0.5);
          break;
        }
        case k_stoch_d_14: y = (stoch_k_2ago_ + stoch_k_1ago_ + stoch_k14(b)) / 3; break;
        case k_sma_dist_5: y = in.logc - stream::log(with(c5_, b.close) / 5); break;
        case k_sma_dist_20: y = in.logc - stream::log(with(c20_, b.close) / 20); break;
        case k_sma_cross_10_50: y = stream::log((with(c10_, b.close) / 10) / (with(c50_, b.close) / 50)); break;
        case k_dist_high_20: y = in.logc - stream::log(with(high20_, b.high)); break;
        case k_dist_low_20: y = in.logc - stream::log(-with(low20_, -b.low)); break;
        case k_range_pos_60: {
          const double lo = -with(low60_, -b.low), hi = with(high60_, b.high);
          y = safe_ratio(b.close - lo, hi - lo, 0.5);
          break;
        }
        case k_overext_atr_20: {
          const double m = with(c20_, b.close), atr = in.has_prev ? with(tr14_, in.tr) : nan;
          y = is_nan(m) ? nan : safe_ratio(in.flat >= 20 ? 0.0 : b.close - m / 20, atr / 14, 0.0);
          break;
        }
        case k_bb_width_20: {
          const double m = with(c20_, b.close), sd = with(cs20_, b.close);
          y = is_nan(m) || is_nan(sd) ? nan : 4.0 * (in.flat >= 20 ? 0.0 : sd) / (m / 20);
          break;
        }
        case k_streak_10: y = t_ >= 10 ? in.sgn * double(in.streak) / 10 : nan; break;
        case k_down_frac_10: y = in.has_prev ? with(neg10_, in.r < 0.0 ? 1.0 : 0.0) / 10 : nan; break;
        case k_body_ratio_1: y = safe_ratio(b.close - b.open, b.high - b.low, 0.0); break;
        case k_lower_wick_1: y = safe_ratio(min(b.open, b.close) - b.low, b.high - b.low, 0.0); break;
        case k_upper_wick_1: y = safe_ratio(b.high - max(b.open, b.close), b.high - b.low, 0.0); break;
        case k_engulfing_1: {
          if (!in.has_prev) break;
          const double po = prev_open_, pc = prev_close_, o = b.open, c = b.close;
          const bool bull = pc < po && c > o && o <= pc && c >= po;
          const bool bear = pc > po && c < o && o >= pc && c <= po;
          y = double(bull) - double(bear);
          break;
        }
        case k_vol_ratio_5_60:
          y = in.has_prev ? safe_ratio(with(r5_, in.r), with(r60_, in.r), 1.0) : nan;
          break;
        case k_autocorr_60: y = in.has_prev ? with(ac60_, in.r) : nan; break;
        case kFeatureCount: break;
      }
      out[i] = y;
    }
  }

  uint32_t ids_[kMaxOutputs] = {};
  uint32_t n_out_ = 0;
  uint64_t t_ = 0;  // bars committed
  double prev_close_ = 0.0;
  Ring<kLookback> logc_;  // ln C of the last 60 committed bars (ret_k reads k - 1 ago)
  WindowStd<5> r5_;
  WindowStd<20> r20_;
  WindowStd<60> r60_;
  WindowSum<20> hl2_, v20_, sv20_, vv20_;
  WindowSum<14> tr14_, up14_, abs14_;
  WindowSum<5> v5_;
  WindowSum<10> c10_;
  WindowSum<50> c50_;
  WindowSlope<20> slope_;
  WindowMax<14> low14_, high14_;  // low14_ holds -low
  WindowMax<60> high60_;
  // the reversal set's own windows, pushed only when it is selected (rev_)
  bool rev_ = false;
  double prev_open_ = 0.0, streak_sign_ = 0.0;
  double stoch_k_1ago_ = __builtin_nan(""), stoch_k_2ago_ = __builtin_nan("");
  uint32_t streak_ = 0, flat_ = 0;
  WindowSum<2> up2_, abs2_;
  WindowSum<5> up5_, abs5_, c5_;
  WindowSum<10> neg10_;
  WindowSum<20> c20_;
  WindowStd<10> cs10_;
  WindowStd<20> cs20_;
  WindowStd<50> cs50_;
  WindowMax<5> low5_, high5_;  // low*_ hold -low
  WindowMax<20> low20_, high20_;
  WindowMax<60> low60_;
  WindowAutocorr<60> ac60_;
};

}  // namespace stream
}  // namespace pymicro
