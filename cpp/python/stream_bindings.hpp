// pymicro._core.FeatureStream and pymicro._core.StreamPipeline: the incremental features
// (cpp/pymicro/stream.hpp) and the tick-to-signal path (bars -> features -> normalise ->
// predict -> position in one native call). Included once by module.cpp, after its helpers
// (find_isa, aligned_bytes, parse_or_raise, raise, workspace); register_stream(m) adds the
// classes. The Python face is pymicro/live/stream.py.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "pymicro/stream.hpp"

namespace {

namespace ps = pymicro::stream;

std::string computable_names() {
  std::string s;
  for (uint32_t i = 0; i < ps::kFeatureCount; ++i) s += std::string(i ? ", " : "") + ps::feature_name(i);
  return s;
}

// Feature ids for names, or DataError naming every name the stream cannot compute.
std::vector<uint32_t> feature_ids(const std::vector<std::string>& names, const char* whose) {
  if (names.empty())
    raise("DataError", std::string(whose) + " names no features: a stream needs the feature names "
                       "the model was trained on (freeze a Spec with feature_names=...)");
  if (names.size() > ps::kMaxOutputs)
    raise("DataError", std::string(whose) + " names " + std::to_string(names.size()) +
                           " features; a stream computes at most " + std::to_string(ps::kMaxOutputs));
  std::vector<uint32_t> ids;
  std::string unknown;
  for (const auto& n : names) {
    uint32_t id = ps::find_feature(n.data(), uint32_t(n.size()));
    if (id == ps::kFeatureCount) unknown += std::string(unknown.empty() ? "" : ", ") + "'" + n + "'";
    ids.push_back(id);
  }
  if (!unknown.empty())
    raise("DataError", std::string(whose) + " names feature(s) the incremental stream cannot compute: " +
                           unknown + ". It computes: " + computable_names());
  return ids;
}

// Python strings -> std::string, without pybind11/stl.h (which would change the whole module's casts).
std::vector<std::string> string_list(py::handle seq, const char* what) {
  std::vector<std::string> out;
  if (py::isinstance<py::str>(seq)) raise("InputError", std::string(what) + " must be a sequence of strings, not one string");
  for (py::handle item : py::iter(seq)) {
    if (!py::isinstance<py::str>(item)) raise("InputError", std::string(what) + " must hold strings");
    out.push_back(item.cast<std::string>());
  }
  return out;
}

ps::Bar checked_bar(double o, double h, double l, double c, double v) {
  const bool ok = std::isfinite(o) && std::isfinite(h) && std::isfinite(l) && std::isfinite(c) &&
                  std::isfinite(v) && o > 0 && h > 0 && l > 0 && c > 0 && v >= 0;
  if (!ok)
    raise("InputError", "a bar needs finite prices > 0 and a finite volume >= 0, got open=" +
                            std::to_string(o) + " high=" + std::to_string(h) + " low=" + std::to_string(l) +
                            " close=" + std::to_string(c) + " volume=" + std::to_string(v));
  return ps::Bar{o, h, l, c, v};
}

// The rows of an (n, 5) float64 C-contiguous array of open, high, low, close, volume.
const double* bar_rows(const py::array_t<double, py::array::c_style | py::array::forcecast>& a, size_t* n) {
  if (a.ndim() != 2 || a.shape(1) != 5)
    raise("InputError", "bars must be an (n, 5) array of open, high, low, close, volume");
  *n = size_t(a.shape(0));
  return a.data();
}

class FeatureStream {
 public:
  explicit FeatureStream(py::object names) : names_(string_list(names, "names")) {
    auto ids = feature_ids(names_, "the request");
    state_ = std::make_unique<ps::FeatureState>();
    state_->select(ids.data(), uint32_t(ids.size()));
  }

  py::array_t<double> update(double o, double h, double l, double c, double v) {
    py::array_t<double> out(py::ssize_t(state_->size()));
    state_->commit(checked_bar(o, h, l, c, v), out.mutable_data());
    return out;
  }
  py::array_t<double> peek(double o, double h, double l, double c, double v) const {
    py::array_t<double> out(py::ssize_t(state_->size()));
    state_->peek(checked_bar(o, h, l, c, v), out.mutable_data());
    return out;
  }
  // Commits every row of bars; returns the (n, features) rows, one per bar.
  py::array_t<double> update_many(py::array_t<double, py::array::c_style | py::array::forcecast> bars) {
    size_t n;
    const double* b = bar_rows(bars, &n);
    for (size_t i = 0; i < n; ++i) checked_bar(b[5 * i], b[5 * i + 1], b[5 * i + 2], b[5 * i + 3], b[5 * i + 4]);
    const py::ssize_t k = state_->size();
    py::array_t<double> out({py::ssize_t(n), k});
    double* o = out.mutable_data();
    for (size_t i = 0; i < n; ++i)
      state_->commit(ps::Bar{b[5 * i], b[5 * i + 1], b[5 * i + 2], b[5 * i + 3], b[5 * i + 4]}, o + i * k);
    return out;
  }
  void reset() { state_->reset(); }
  uint64_t bars() const { return state_->bars(); }
  py::tuple names() const {
    py::tuple t(names_.size());
    for (size_t i = 0; i < names_.size(); ++i) t[i] = py::str(names_[i]);
    return t;
  }

 private:
  std::vector<std::string> names_;
  std::unique_ptr<ps::FeatureState> state_;
};

// ticks -> bars -> features -> network -> position, in one call per tick.
class StreamPipeline {
 public:
  StreamPipeline(py::buffer data, const std::string& bar, double bar_size, double threshold,
                 py::object class_positions_arg, const std::string& isa) {
    std::vector<double> class_positions;
    if (!class_positions_arg.is_none())
      for (py::handle item : py::iter(class_positions_arg)) class_positions.push_back(item.cast<double>());
    py::buffer_info info = data.request();
    if (info.itemsize != 1 || info.ndim != 1 || info.strides[0] != 1)
      raise("InputError", "a blob must be a contiguous bytes-like object");
    size_ = size_t(info.size);
    blob_ = aligned_bytes(size_ ? size_ : 1);
    std::memcpy(blob_.get(), info.ptr, size_);
    view_ = parse_or_raise(static_cast<const uint8_t*>(blob_.get()), size_, true);
    std::vector<std::string> names;
    uint64_t pos = view_.features_pos;
    for (uint32_t i = 0; i < view_.n_features; ++i) names.push_back(blob_string(next_string(view_, &pos)));
    auto ids = feature_ids(names, "the model's blob");
    if (ids.size() != view_.input_size)
      raise("DataError", "the blob names " + std::to_string(ids.size()) + " features for an input of " +
                             std::to_string(view_.input_size));
    state_ = std::make_unique<ps::FeatureState>();
    state_->select(ids.data(), uint32_t(ids.size()));
    ops_ = find_isa(isa);
    if (!ops_) raise("BackendError", "ISA '" + isa + "' is not available on this CPU; choose one of: " + isa_names());
    plan_ = aligned_bytes(ops_->plan_bytes(&view_));
    ops_->build_plan(&view_, plan_.get());
    ws_ = aligned_bytes(ops_->workspace_floats(plan_.get()) * sizeof(float) + 64);

    if (bar == "time") kind_ = kTime;
    else if (bar == "tick") kind_ = kTick;
    else if (bar == "volume") kind_ = kVolume;
    else raise("InputError", "bar must be 'time', 'tick' or 'volume', got '" + bar + "'");
    if (!(std::isfinite(bar_size) && bar_size > 0) || (kind_ == kTick && bar_size != std::floor(bar_size)))
      raise("InputError", "bar_size must be a positive number (a whole number of ticks for tick bars)");
    bar_size_ = bar_size;
    if (!(threshold >= 0 && threshold <= 1)) raise("InputError", "threshold must be in [0, 1]");
    threshold_ = threshold;
    const uint32_t C = view_.n_classes;
    if (class_positions.empty()) {
      if (C != 3)
        raise("InputError", "the model has " + std::to_string(C) +
                                " classes; the default positions are for 3 (down, flat, up): pass class_positions");
      class_positions = {-1.0, 0.0, 1.0};
    }
    if (class_positions.size() != C) raise("InputError", "class_positions needs one position per class");
    for (double p : class_positions)
      if (!std::isfinite(p)) raise("InputError", "class_positions must be finite");
    class_pos_ = class_positions;
    feats_ = py::array_t<double>(py::ssize_t(ids.size()));
    probs_ = py::array_t<float>(py::ssize_t(C));
    x_.resize(ids.size());
    reset();
  }

  void reset() {
    state_->reset();
    open_ = false;
    ticks_ = 0;
    last_ts_ = -INFINITY;
    position_ = 0.0;
    float* p = probs_.mutable_data();
    for (uint32_t i = 0; i < view_.n_classes; ++i) p[i] = NAN;
    double* f = feats_.mutable_data();
    for (size_t i = 0; i < x_.size(); ++i) f[i] = NAN;
  }

  // A finished bar: commit it, decide on its features.
  double on_bar(double o, double h, double l, double c, double v) {
    if (open_)
      raise("InputError", "on_bar while a bar is forming from ticks; finish it (flush()) or use one input kind");
    state_->commit(checked_bar(o, h, l, c, v), feats_.mutable_data());
    return decide();
  }

  double on_tick(double price, double size, double ts) {
    if (!(std::isfinite(price) && price > 0 && std::isfinite(size) && size >= 0 && std::isfinite(ts)))
      raise("InputError", "a tick needs a finite price > 0, a finite size >= 0 and a finite timestamp, got price=" +
                              std::to_string(price) + " size=" + std::to_string(size) + " ts=" + std::to_string(ts));
    if (ts < last_ts_)
      raise("InputError", "tick timestamps must not decrease: " + std::to_string(ts) + " after " +
                              std::to_string(last_ts_));
    tick(price, size, ts);
    return decide();
  }

  // Commits the forming bar, if any (end of a session); returns the decision on it.
  double flush() {
    if (open_) {
      state_->commit(forming_, feats_.mutable_data());
      open_ = false;
      ticks_ = 0;
      return decide();
    }
    return position_;
  }

  // The same ticks through the same code, the loop in C++: (positions (n,), probs (n, C)).
  py::tuple replay_ticks(py::array_t<double, py::array::c_style | py::array::forcecast> price,
                         py::array_t<double, py::array::c_style | py::array::forcecast> size,
                         py::array_t<double, py::array::c_style | py::array::forcecast> ts) {
    const py::ssize_t n = price.size();
    if (price.ndim() != 1 || size.ndim() != 1 || ts.ndim() != 1 || size.size() != n || ts.size() != n)
      raise("InputError", "replay_ticks needs three 1-D arrays of one length (price, size, ts)");
    const double *p = price.data(), *s = size.data(), *t = ts.data();
    double last = last_ts_;
    for (py::ssize_t i = 0; i < n; ++i) {
      if (!(std::isfinite(p[i]) && p[i] > 0 && std::isfinite(s[i]) && s[i] >= 0 && std::isfinite(t[i])))
        raise("InputError", "tick " + std::to_string(i) + " is invalid (price > 0, size >= 0, all finite)");
      if (t[i] < last) raise("InputError", "tick " + std::to_string(i) + ": timestamps must not decrease");
      last = t[i];
    }
    const uint32_t C = view_.n_classes;
    py::array_t<double> pos(n);
    py::array_t<float> probs({n, py::ssize_t(C)});
    double* po = pos.mutable_data();
    float* pr = probs.mutable_data();
    const float* cur = probs_.data();
    for (py::ssize_t i = 0; i < n; ++i) {
      tick(p[i], s[i], t[i]);
      po[i] = decide();
      for (uint32_t k = 0; k < C; ++k) pr[i * C + k] = cur[k];
    }
    return py::make_tuple(pos, probs);
  }

  py::tuple replay_bars(py::array_t<double, py::array::c_style | py::array::forcecast> bars) {
    size_t n;
    const double* b = bar_rows(bars, &n);
    for (size_t i = 0; i < n; ++i) checked_bar(b[5 * i], b[5 * i + 1], b[5 * i + 2], b[5 * i + 3], b[5 * i + 4]);
    if (open_) raise("InputError", "replay_bars while a bar is forming from ticks; flush() first");
    const uint32_t C = view_.n_classes;
    py::array_t<double> pos{py::ssize_t(n)};
    py::array_t<float> probs({py::ssize_t(n), py::ssize_t(C)});
    double* po = pos.mutable_data();
    float* pr = probs.mutable_data();
    const float* cur = probs_.data();
    double* f = feats_.mutable_data();
    for (size_t i = 0; i < n; ++i) {
      state_->commit(ps::Bar{b[5 * i], b[5 * i + 1], b[5 * i + 2], b[5 * i + 3], b[5 * i + 4]}, f);
      po[i] = decide();
      for (uint32_t k = 0; k < C; ++k) pr[i * C + k] = cur[k];
    }
    return py::make_tuple(pos, probs);
  }

  py::array_t<float> probabilities() const { return readonly(probs_); }
  py::array_t<double> features() const { return readonly(feats_); }
  double position() const { return position_; }
  bool ready() const { return ready_; }
  uint64_t bars() const { return state_->bars(); }
  bool forming() const { return open_; }
  py::bytes blob() const { return py::bytes(static_cast<const char*>(blob_.get()), size_); }
  std::string isa() const { return ops_->name; }

 private:
  enum Kind { kTime, kTick, kVolume };

  template <class T>
  static py::array_t<T> readonly(const py::array_t<T>& a) {
    py::array_t<T> view({a.shape(0)}, {py::ssize_t(sizeof(T))}, a.data(), a);  // a view on the live buffer
    py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
    return view;
  }

  // Folds one tick into the forming bar; commits the bar it completes (or the one it ends).
  void tick(double price, double size, double ts) {
    last_ts_ = ts;
    if (kind_ == kTime) {
      const double bucket = std::floor(ts / bar_size_);
      if (open_ && bucket != bucket_) {
        state_->commit(forming_, feats_.mutable_data());
        open_ = false;
      }
      bucket_ = bucket;
    }
    if (!open_) {
      forming_ = ps::Bar{price, price, price, price, size};
      open_ = true;
      ticks_ = 1;
    } else {
      forming_.high = price > forming_.high ? price : forming_.high;
      forming_.low = price < forming_.low ? price : forming_.low;
      forming_.close = price;
      forming_.volume += size;
      ++ticks_;
    }
    const bool done = (kind_ == kTick && double(ticks_) >= bar_size_) ||
                      (kind_ == kVolume && forming_.volume >= bar_size_);
    if (done) {
      state_->commit(forming_, feats_.mutable_data());
      open_ = false;
      ticks_ = 0;
    } else {
      state_->peek(forming_, feats_.mutable_data());
    }
  }

  // feats_ -> float32 -> the network (normalisation inside) -> position.
  double decide() {
    const double* f = feats_.data();
    float* p = probs_.mutable_data();
    const uint32_t C = view_.n_classes;
    ready_ = true;
    for (size_t i = 0; i < x_.size(); ++i) {
      if (!std::isfinite(f[i])) ready_ = false;
      x_[i] = float(f[i]);
    }
    if (!ready_) {  // warm-up: no signal, no position
      for (uint32_t k = 0; k < C; ++k) p[k] = NAN;
      return position_ = 0.0;
    }
    ops_->run(plan_.get(), x_.data(), 1, p, nullptr, static_cast<float*>(ws_.get()));
    uint32_t best = 0, ties = 0;
    for (uint32_t k = 1; k < C; ++k) {
      if (p[k] > p[best]) best = k, ties = 0;
      else if (p[k] == p[best]) ++ties;
    }
    if (!(p[best] == p[best])) return position_ = 0.0;  // NaN (float32 overflow inside): flat
    return position_ = (ties == 0 && p[best] >= threshold_) ? class_pos_[best] : 0.0;
  }

  AlignedPtr blob_, plan_, ws_;
  size_t size_ = 0;
  BlobView view_;
  const ArchOps* ops_ = nullptr;
  std::unique_ptr<ps::FeatureState> state_;
  Kind kind_ = kTime;
  double bar_size_ = 1.0, threshold_ = 0.5, bucket_ = 0.0, last_ts_ = -INFINITY, position_ = 0.0;
  std::vector<double> class_pos_;
  std::vector<float> x_;
  py::array_t<double> feats_;
  py::array_t<float> probs_;
  ps::Bar forming_{};
  uint64_t ticks_ = 0;
  bool open_ = false, ready_ = false;
};

void register_stream(py::module_& m) {
  py::list names;
  for (uint32_t i = 0; i < ps::kFeatureCount; ++i) names.append(ps::feature_name(i));
  m.attr("STREAM_FEATURES") = py::tuple(names);
  m.attr("STREAM_LOOKBACK") = ps::kLookback;
  py::class_<FeatureStream>(m, "FeatureStream")
      .def(py::init<py::object>(), py::arg("names"))
      .def("update", &FeatureStream::update, py::arg("open"), py::arg("high"), py::arg("low"),
           py::arg("close"), py::arg("volume"))
      .def("peek", &FeatureStream::peek, py::arg("open"), py::arg("high"), py::arg("low"),
           py::arg("close"), py::arg("volume"))
      .def("update_many", &FeatureStream::update_many, py::arg("bars"))
      .def("reset", &FeatureStream::reset)
      .def_property_readonly("bars", &FeatureStream::bars)
      .def_property_readonly("names", &FeatureStream::names);
  py::class_<StreamPipeline>(m, "StreamPipeline")
      .def(py::init<py::buffer, const std::string&, double, double, py::object, const std::string&>(),
           py::arg("blob"), py::arg("bar") = "time", py::arg("bar_size") = 60.0, py::arg("threshold") = 0.5,
           py::arg("class_positions") = py::none(), py::arg("isa") = "auto")
      .def("on_bar", &StreamPipeline::on_bar, py::arg("open"), py::arg("high"), py::arg("low"),
           py::arg("close"), py::arg("volume"))
      .def("on_tick", &StreamPipeline::on_tick, py::arg("price"), py::arg("size"), py::arg("ts"))
      .def("flush", &StreamPipeline::flush)
      .def("reset", &StreamPipeline::reset)
      .def("replay_ticks", &StreamPipeline::replay_ticks, py::arg("price"), py::arg("size"), py::arg("ts"))
      .def("replay_bars", &StreamPipeline::replay_bars, py::arg("bars"))
      .def_property_readonly("probabilities", &StreamPipeline::probabilities)
      .def_property_readonly("features", &StreamPipeline::features)
      .def_property_readonly("position", &StreamPipeline::position)
      .def_property_readonly("ready", &StreamPipeline::ready)
      .def_property_readonly("bars", &StreamPipeline::bars)
      .def_property_readonly("forming", &StreamPipeline::forming)
      .def_property_readonly("isa", &StreamPipeline::isa)
      .def("blob", &StreamPipeline::blob);
}

}  // namespace
