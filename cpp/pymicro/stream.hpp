// pymicro incremental features: the momentum set updated in O(1) per bar.
//
// A FeatureState takes one OHLCV bar at a time (commit) and yields, after each, exactly
// the row that pymicro.market.technical.momentum_features(bars, dropna=False) computes for
// the same history (docs/features.md; tests/test_stream.py checks it over whole histories,
// NaN warm-up included). `peek` evaluates the features as if a forming bar were the next
// one, and commits nothing: what a tick inside an unfinished bar needs.
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
// Everything lives in fixed-capacity arrays inside the state: no heap, no libc (log is
// fdlibm's algorithm below; sqrt is the compiler builtin, an instruction on x86 and wasm),
// so this header compiles freestanding for wasm32 as the rest of cpp/pymicro/ does.
#pragma once

#include <stdint.h>

namespace pymicro {
namespace stream {

// X(name, first bar index at which the batch pipeline defines it): the momentum set in
// its model order (pymicro.market.technical.MOMENTUM_FEATURES, docs/features.md).
#define PM_STREAM_FEATURES(X) \
  X(ret_1, 1) X(ret_3, 3) X(ret_5, 5) X(ret_10, 10) X(ret_20, 20) X(ret_60, 60)        \
  X(vol_5, 5) X(vol_20, 20) X(vol_60, 60) X(parkinson_20, 19)                           \
  X(range_1, 0) X(gap_1, 1) X(body_1, 0) X(close_loc_1, 0) X(atr_14, 14)                \
  X(volume_ratio_20, 19) X(volume_trend_5_20, 19) X(signed_volume_20, 20)               \
  X(sma_dist_10, 9) X(sma_dist_50, 49) X(trend_slope_20, 19)                            \
  X(rsi_14, 14) X(stoch_k_14, 13) X(dist_high_60, 59)

enum FeatureId : uint32_t {
#define PM_X_ID(name, first) k_##name,
  PM_STREAM_FEATURES(PM_X_ID)
#undef PM_X_ID
  kFeatureCount
};

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
    for (uint32_t i = 0; i < n; ++i) ids_[i] = ids[i];
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
    push(b, in);
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
    } else {
      in.r = in.tr = in.signed_v = in.dc = nan_value();
    }
  }

  void push(const Bar& b, const Inputs& in) {
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
        case k_rsi_14:
          y = in.has_prev ? safe_ratio(with(up14_, max(in.dc, 0.0)), with(abs14_, abs(in.dc)), 0.5) : nan;
          break;
        case k_stoch_k_14: {
          const double lo = -with(low14_, -b.low), hi = with(high14_, b.high);
          y = safe_ratio(b.close - lo, hi - lo, 0.5);
          break;
        }
        case k_dist_high_60: y = in.logc - stream::log(with(high60_, b.high)); break;
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
};

}  // namespace stream
}  // namespace pymicro
