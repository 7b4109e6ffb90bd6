// pymicro._core: the C++ core behind pymicro.load(..., backend="native").
//
// The fast path takes a float32, C-contiguous, aligned ndarray without any
// conversion; anything else goes through pymicro.runtime.inputs.coerce (Python), which
// applies the documented dtype/shape policy or raises InputError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "pymicro/arch.hpp"
#include "pool.hpp"
#include "pymicro/container.hpp"

namespace py = pybind11;
using namespace pymicro;

namespace pymicro {
#define PM_DECLARE(ns) namespace ns { extern const ArchOps ops; }
#if defined(__x86_64__) || defined(_M_X64)
PM_DECLARE(arch_sse2)
PM_DECLARE(arch_avx2)
PM_DECLARE(arch_avx512)
#else
PM_DECLARE(arch_generic)
#endif
}  // namespace pymicro

namespace {

// ISAs this CPU can run, best first.
std::vector<const ArchOps*> available_isas() {
  std::vector<const ArchOps*> out;
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  // Every extension the build's flags allow the compiler to use (CMakeLists.txt): the
  // avx512 kernels contain DQ, VL and BW instructions, which some AVX-512F CPUs (Knights
  // Landing) lack.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("fma"))
    out.push_back(&arch_avx512::ops);
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) out.push_back(&arch_avx2::ops);
  out.push_back(&arch_sse2::ops);
#else
  out.push_back(&arch_generic::ops);
#endif
  return out;
}

// The build named `isa` ("auto" or "": the best) if this CPU runs it, else nullptr.
const ArchOps* find_isa(const std::string& isa) {
  auto isas = available_isas();
  if (isa.empty() || isa == "auto") return isas.front();
  for (auto* o : isas)
    if (isa == o->name) return o;
  return nullptr;
}

std::string isa_names() {
  std::string names;
  for (auto* o : available_isas()) names += std::string(names.empty() ? "" : ", ") + o->name;
  return names;
}

py::object error_type(const char* name) {
  return py::module_::import("pymicro.errors").attr(name);
}

[[noreturn]] void raise(const char* type, const std::string& message) {
  PyErr_SetObject(error_type(type).ptr(), py::str(message).ptr());
  throw py::error_already_set();
}

[[noreturn]] void raise_blob(const Status& st) {
  py::object err = error_type("BlobError")(std::string(st.message), st.offset);
  PyErr_SetObject(err.get_type().ptr(), err.ptr());
  throw py::error_already_set();
}

struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
using AlignedPtr = std::unique_ptr<void, AlignedFree>;

AlignedPtr aligned_bytes(size_t n) {
  void* p = std::aligned_alloc(64, (n + 63) / 64 * 64);
  if (!p) throw std::bad_alloc();
  return AlignedPtr(p);
}

// Per-thread scratch, grown once per thread: no allocation per prediction.
float* workspace(uint64_t floats) {
  thread_local AlignedPtr buf;
  thread_local uint64_t size = 0;
  if (floats > size) {
    buf = aligned_bytes(floats * sizeof(float));
    size = floats;
  }
  return static_cast<float*>(buf.get());
}

std::string blob_string(StringRef s) { return std::string(s.data, s.size); }

py::array_t<float> tensor_array(const TensorView& t, bool matrix) {
  std::vector<py::ssize_t> shape = matrix ? std::vector<py::ssize_t>{t.rows, t.cols}
                                          : std::vector<py::ssize_t>{t.rows};
  py::array_t<float> a(shape);
  std::memcpy(a.mutable_data(), t.data, size_t(t.rows) * t.cols * 4);
  return a;
}

BlobView parse_or_raise(const uint8_t* data, size_t size, bool check_crc) {
  BlobView v;
  Status st;
  if (!parse(data, size, &v, &st, check_crc)) raise_blob(st);
  return v;
}

// The blob as Python data: what info, the reference backend and export read.
py::dict describe(const BlobView& v) {
  py::dict d;
  d["input_size"] = v.input_size;
  d["n_classes"] = v.n_classes;
  d["params"] = v.params;
  d["size"] = v.size;
  d["checksum"] = v.crc;
  py::list labels, features, layers;
  uint64_t pos = v.labels_pos;
  for (uint32_t i = 0; i < v.n_classes; ++i) labels.append(blob_string(next_string(v, &pos)));
  pos = v.features_pos;
  for (uint32_t i = 0; i < v.n_features; ++i) features.append(blob_string(next_string(v, &pos)));
  py::dict meta;
  pos = v.meta_pos;
  for (uint32_t i = 0; i < v.n_meta; ++i) {
    std::string key = blob_string(next_string(v, &pos));
    meta[py::str(key)] = blob_string(next_string(v, &pos));
  }
  d["labels"] = labels;
  d["feature_names"] = features;
  d["metadata"] = meta;
  d["mean"] = v.has_norm ? py::object(tensor_array(v.mean, false)) : py::none();
  d["std"] = v.has_norm ? py::object(tensor_array(v.std, false)) : py::none();
  for (uint32_t l = 0; l < v.n_layers; ++l) {
    const LayerView& L = v.layers[l];
    py::dict layer;
    layer["in"] = L.in;
    layer["out"] = L.out;
    if (L.kind == kDense) {
      layer["kind"] = "dense";
      layer["activation"] = activation_name(L.activation);  // parse() accepted only known codes
      layer["W"] = tensor_array(L.t[0], true);
      layer["b"] = tensor_array(L.t[1], false);
    } else {
      layer["kind"] = "attention";
      layer["W_a"] = tensor_array(L.t[0], true);
      layer["b_a"] = tensor_array(L.t[1], false);
      layer["W_v"] = tensor_array(L.t[2], true);
      layer["b_v"] = tensor_array(L.t[3], false);
    }
    layers.append(layer);
  }
  d["layers"] = layers;
  return d;
}

// An ensemble container as Python data: each member's own description plus its columns,
// class map, weight and name; the meta-model's description (stacked).
py::dict describe_container(const ContainerView& v) {
  py::dict d;
  d["container"] = true;
  d["input_size"] = v.input_size;
  d["n_classes"] = v.n_classes;
  d["combiner"] = combiner_name(v.combiner);
  d["size"] = v.size;
  d["checksum"] = v.crc;
  py::list labels, members;
  uint64_t pos = v.labels_pos;
  for (uint32_t i = 0; i < v.n_classes; ++i) labels.append(blob_string(next_container_string(v, &pos)));
  pos = v.names_pos;
  uint64_t params = 0;
  for (uint32_t i = 0; i < v.n_members; ++i) {
    const MemberView& M = v.members[i];
    py::dict md = describe(M.blob);
    md["name"] = blob_string(next_container_string(v, &pos));
    md["weight"] = M.weight;
    md["offset"] = M.offset;
    py::list cols, map;
    for (uint32_t k = 0; k < M.n_inputs; ++k) cols.append(member_col(v, i, k));
    for (uint32_t j = 0; j < M.n_classes; ++j) map.append(member_class(v, i, j));
    md["columns"] = cols;
    md["class_map"] = map;
    params += M.blob.params;
    members.append(md);
  }
  py::list features;
  pos = v.features_pos;
  for (uint32_t i = 0; i < v.n_features; ++i) features.append(blob_string(next_container_string(v, &pos)));
  d["feature_names"] = features;
  py::dict meta;
  pos = v.meta_pos;
  for (uint32_t i = 0; i < v.n_meta; ++i) {
    std::string key = blob_string(next_container_string(v, &pos));
    meta[py::str(key)] = blob_string(next_container_string(v, &pos));
  }
  d["labels"] = labels;
  d["members"] = members;
  d["metadata"] = meta;
  d["meta_model"] = v.has_meta ? py::object(describe(v.meta)) : py::none();
  if (v.has_meta) params += v.meta.params;
  d["params"] = params;
  return d;
}

std::unique_ptr<ContainerView> parse_container_or_raise(const uint8_t* data, size_t size, bool check_crc) {
  auto v = std::make_unique<ContainerView>();
  Status st;
  if (!parse_container(data, size, v.get(), &st, check_crc)) raise_blob(st);
  return v;
}

// float32 in native byte order, C-contiguous and aligned: usable in place.
bool is_fast_array(py::handle x) {
  using py::detail::npy_api;
  static const npy_api& api = npy_api::get();
  if (!api.PyArray_Check_(x.ptr())) return false;
  const auto* a = py::detail::array_proxy(x.ptr());
  const auto* d = py::detail::array_descriptor_proxy(a->descr);
  constexpr int need = npy_api::NPY_ARRAY_C_CONTIGUOUS_ | npy_api::NPY_ARRAY_ALIGNED_;
  return d->type_num == npy_api::NPY_FLOAT_ && d->byteorder != '>' && (a->flags & need) == need;
}

// threads= as predict takes it: None is 0 (automatic), an int >= 1 itself; -1 for anything else
// (a bool, a float, 0, a negative or overflowing int). No Python error is left set.
long threads_value(PyObject* t) {
  if (t == Py_None) return 0;
  if (!PyLong_Check(t) || PyBool_Check(t)) return -1;
  int overflow = 0;
  const long v = PyLong_AsLongAndOverflow(t, &overflow);
  if (v == -1 && PyErr_Occurred()) PyErr_Clear();
  return overflow || v < 1 ? -1 : v;
}

bool is_ndarray(py::handle x) { return py::detail::npy_api::get().PyArray_Check_(x.ptr()); }

// A new float32 array of shape (n,) or (rows, n) straight from numpy's C API
// (pybind11's array_t constructor allocates shape/stride vectors on the way).
py::object new_f32(int ndim, py::ssize_t rows, py::ssize_t n) {
  using py::detail::npy_api;
  static const npy_api& api = npy_api::get();
  static PyObject* f32 = api.PyArray_DescrFromType_(npy_api::NPY_FLOAT_);  // kept for life
  Py_intptr_t dims[2] = {ndim == 1 ? n : rows, n};
  Py_INCREF(f32);  // PyArray_NewFromDescr steals a reference
  PyObject* a = api.PyArray_NewFromDescr_(api.PyArray_Type_, f32, ndim, dims, nullptr, nullptr, 0,
                                          nullptr);
  if (!a) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(a);
}

float* f32_data(const py::object& a) {
  return reinterpret_cast<float*>(py::detail::array_proxy(a.ptr())->data);
}

class NativeModel {
 public:
  NativeModel(py::buffer data, const std::string& isa, const std::string& nan_policy) {
    py::buffer_info info = data.request();
    if (info.itemsize != 1 || info.ndim != 1 || info.strides[0] != 1)
      raise("InputError", "a blob must be a contiguous bytes-like object (bytes, bytearray, memoryview)");
    if (nan_policy != "raise" && nan_policy != "propagate")
      raise("InputError", "nan_policy must be 'raise' or 'propagate', got '" + nan_policy + "'");
    raise_on_nonfinite_ = nan_policy == "raise";
    size_ = size_t(info.size);
    blob_ = aligned_bytes(size_ ? size_ : 1);
    std::memcpy(blob_.get(), info.ptr, size_);
    ops_ = find_isa(isa);
    if (!ops_)
      raise("BackendError",
            "ISA '" + isa + "' is not available on this CPU; choose one of: " + isa_names());
    if (is_container(static_cast<const uint8_t*>(blob_.get()), size_)) {  // an ensemble: container.hpp
      cview_ = parse_container_or_raise(static_cast<const uint8_t*>(blob_.get()), size_, true);
      plan_ = aligned_bytes(ensemble_plan_bytes(*cview_, *ops_));
      ens_ = build_ensemble_plan(*cview_, *ops_, plan_.get());
      ws_floats_ = ensemble_workspace_floats(*ens_);
      view_.input_size = cview_->input_size;  // what the input checks and outputs read
      view_.n_classes = cview_->n_classes;
      attn_width_ = ens_->attn_width;
      return;
    }
    view_ = parse_or_raise(static_cast<const uint8_t*>(blob_.get()), size_, true);
    plan_ = aligned_bytes(ops_->plan_bytes(&view_));
    ops_->build_plan(&view_, plan_.get());
    ws_floats_ = ops_->workspace_floats(plan_.get());
    for (uint32_t l = 0; l < view_.n_layers && !attn_width_; ++l)
      if (view_.layers[l].kind == kAttention) attn_width_ = view_.layers[l].in;
  }

  py::object predict(py::handle x, py::handle threads = py::none()) {
    const unsigned t = threads_arg(threads);
    py::object keep;
    auto a = input(x, keep);
    const uint64_t n = rows_of(a, "x");
    py::object out = a.ndim() == 1 ? single_result()
                                   : new_f32(int(a.ndim()), py::ssize_t(n), py::ssize_t(view_.n_classes));
    execute(static_cast<const float*>(a.data()), n, f32_data(out), nullptr, t);
    return out;
  }

  void predict_into(py::handle x, py::handle out, py::handle threads = py::none()) {
    const unsigned t = threads_arg(threads);
    // Not an ndarray at all: a type error, as predict's for input that is not array-like.
    if (!is_fast_array(x))
      raise(is_ndarray(x) ? "InputError" : "InputTypeError",
            "predict_into needs x as a float32, C-contiguous, aligned ndarray "
            "(it never copies); use predict() for other inputs");
    auto a = py::reinterpret_borrow<py::array>(x);
    const uint64_t n = rows_of(a, "x");
    if (!is_fast_array(out))
      raise(is_ndarray(out) ? "InputError" : "InputTypeError", "out must be a float32, C-contiguous, aligned ndarray");
    auto o = py::reinterpret_borrow<py::array>(out);
    bool shape_ok = o.ndim() == a.ndim() && uint64_t(o.shape(o.ndim() - 1)) == view_.n_classes &&
                    (o.ndim() == 1 || uint64_t(o.shape(0)) == n);
    if (!shape_ok) {
      std::string want = a.ndim() == 1 ? "(" + std::to_string(view_.n_classes) + ",)"
                                       : "(" + std::to_string(n) + ", " + std::to_string(view_.n_classes) + ")";
      raise("InputError", "out has the wrong shape; for this x it must be " + want);
    }
    if (!o.writeable()) raise("InputError", "out is read-only");
    // The kernels read x a tile at a time while they write out: any shared byte (exact
    // aliasing included: wrong for n_classes > input_size, and the error path re-reads x)
    // would feed them rows they already overwrote. Message: pymicro.runtime.inputs.OVERLAP_MESSAGE.
    const auto xb = reinterpret_cast<uintptr_t>(a.data()), ob = reinterpret_cast<uintptr_t>(o.data());
    const uintptr_t xe = xb + uintptr_t(n) * view_.input_size * 4, oe = ob + uintptr_t(n) * view_.n_classes * 4;
    if (n && xb < oe && ob < xe)
      raise("InputError", "predict_into: out overlaps x in memory; the core reads x while it writes "
                          "out, so rows would be overwritten before they are read. Pass separate buffers");
    execute(static_cast<const float*>(a.data()), n, static_cast<float*>(o.mutable_data()), nullptr, t);
  }

  // predict_into's fast path: x one row of (input_size,) and out (n_classes,), both float32
  // arrays usable in place, out writeable and apart from x, a single model. True when it ran
  // and is done (the row fine, or nan_policy="propagate"). False when the arrays do not fit
  // (nothing written) or the row was bad under nan_policy="raise" (out holds NaN, as the
  // general path leaves it): the caller then takes the general path, which checks everything
  // again and raises what is wrong.
  bool predict_row_into(PyObject* x, PyObject* out) {
    if (!row_array(x, view_.input_size, false) || !row_array(out, view_.n_classes, true)) return false;
    const auto xb = reinterpret_cast<uintptr_t>(py::detail::array_proxy(x)->data);
    const auto ob = reinterpret_cast<uintptr_t>(py::detail::array_proxy(out)->data);
    if (xb < ob + 4 * uintptr_t(view_.n_classes) && ob < xb + 4 * uintptr_t(view_.input_size)) return false;
    return run_row_fast(x, out);
  }

  // predict's fast path, the same for predict(row): the result array, or null with no error
  // set when the general path must take the call.
  PyObject* predict_row(PyObject* x) {
    if (!row_array(x, view_.input_size, false)) return nullptr;
    py::object out = single_result();
    return run_row_fast(x, out.ptr()) ? out.release().ptr() : nullptr;
  }

 private:
  // A single model's row of n float32 cells, usable in place (writeable too if asked).
  bool row_array(PyObject* p, uint32_t n, bool writeable) const {
    if (ens_ || !is_fast_array(p)) return false;
    const auto* a = py::detail::array_proxy(p);
    return a->nd == 1 && uint64_t(a->dimensions[0]) == n &&
           (!writeable || (a->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_));
  }

  bool run_row_fast(PyObject* x, PyObject* out) const {
    const uint64_t bad = ops_->run(plan_.get(), reinterpret_cast<const float*>(py::detail::array_proxy(x)->data), 1,
                                   reinterpret_cast<float*>(py::detail::array_proxy(out)->data), nullptr,
                                   workspace(ws_floats_));
    return !(bad && raise_on_nonfinite_);
  }

 public:

  py::object explain(py::handle x) {
    if (!attn_width_) raise("InputError", "this model has no attention layer to explain");
    py::object keep;
    auto a = input(x, keep);
    const uint64_t n = rows_of(a, "x");
    std::vector<float> probs(n * view_.n_classes);
    py::object attn = new_f32(int(a.ndim()), py::ssize_t(n), py::ssize_t(attn_width_));
    execute(static_cast<const float*>(a.data()), n, probs.data(), f32_data(attn));
    return attn;
  }

  // An ensemble's explanation: (attention of every member, concatenated, or None; each
  // member's probabilities mapped onto the common labels, (rows, members, classes)).
  py::tuple explain_members(py::handle x) {
    if (!ens_) raise("InputError", "explain_members: this is a single model, not an ensemble");
    py::object keep;
    auto a = input(x, keep);
    const uint64_t n = rows_of(a, "x");
    std::vector<float> probs(n * view_.n_classes);
    py::array_t<float> members({py::ssize_t(n), py::ssize_t(ens_->n_members), py::ssize_t(view_.n_classes)});
    py::object attn = attn_width_ ? new_f32(2, py::ssize_t(n), py::ssize_t(attn_width_)) : py::none();
    execute(static_cast<const float*>(a.data()), n, probs.data(),
            attn_width_ ? f32_data(attn) : nullptr, 1, members.mutable_data());
    return py::make_tuple(attn, members);
  }

  uint32_t input_size() const { return view_.input_size; }
  uint32_t n_classes() const { return view_.n_classes; }
  uint32_t attn_width() const { return attn_width_; }
  std::string isa() const { return ops_->name; }
  uint32_t tile() const { return ops_->tile; }
  py::bytes blob() const { return py::bytes(static_cast<const char*>(blob_.get()), size_); }
  py::dict info() const { return ens_ ? describe_container(*cview_) : describe(view_); }
  bool raises_on_nonfinite() const { return raise_on_nonfinite_; }

 private:
  // x itself on the fast path; otherwise the converted copy, kept alive by `keep`.
  py::array input(py::handle x, py::object& keep) const {
    if (!is_fast_array(x)) {
      keep = coerce(x);
      x = keep;
    }
    return py::reinterpret_borrow<py::array>(x);
  }

  py::object coerce(py::handle x) const {
    // Leaked on purpose: a static py::object would be released after the interpreter.
    static py::object* fn = new py::object(py::module_::import("pymicro.runtime.inputs").attr("coerce"));
    return (*fn)(x, view_.input_size);
  }

  uint64_t rows_of(const py::array& a, const char* name) const {
    const auto d = view_.input_size;
    if (a.ndim() == 1 && uint64_t(a.shape(0)) == d) return 1;
    if (a.ndim() == 2 && uint64_t(a.shape(1)) == d) return uint64_t(a.shape(0));
    std::string got = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) got += (i ? ", " : "") + std::to_string(a.shape(i));
    got += a.ndim() == 1 ? ",)" : ")";
    raise("InputError", std::string(name) + " has shape " + got + "; this model takes (" +
                            std::to_string(d) + ",) or (batch, " + std::to_string(d) + ")");
  }

  // threads=None: all this process's CPUs from kAutoThreadRows rows, else one; an int >= 1.
  static unsigned threads_arg(py::handle threads) {
    const long t = threads_value(threads.ptr());
    if (t < 0) raise("InputError", "threads must be None or an int >= 1, got " + std::string(py::repr(threads)));
    return unsigned(t < long(Pool::kMaxThreads) ? t : long(Pool::kMaxThreads));
  }

  // One part of a batch split across threads: rows [first, last) of the call.
  struct Split {
    const NativeModel* self;
    const float* x;
    float* out;
    float* attn;
    float* members;
    uint64_t n, chunk;
    uint64_t bad[Pool::kMaxThreads];
    static void part(void* ctx, unsigned i) {
      Split& s = *static_cast<Split*>(ctx);
      const uint64_t first = i * s.chunk, last = first + s.chunk < s.n ? first + s.chunk : s.n;
      s.bad[i] = first >= last ? 0 : s.self->run(s.x, first, last - first, s.out, s.attn, s.members);
    }
  };

  // Splits at whole tiles (an ensemble: whole chunks of kEnsembleChunk rows, a multiple of every
  // tile), so each row runs exactly as it would on one thread (same bits).
  uint64_t run_split(const float* x, uint64_t n, float* out, float* attn, float* members,
                     unsigned threads) const {
    const uint64_t T = ens_ ? kEnsembleChunk : ops_->tile, tiles = (n + T - 1) / T;
    unsigned parts = threads ? threads : (n >= kAutoThreadRows ? Pool::cpus() : 1u);
    if (parts > tiles) parts = unsigned(tiles);
    if (parts > 1) {
      Split s{this, x, out, attn, members, n, (tiles + parts - 1) / parts * T, {}};
      parts = unsigned((n + s.chunk - 1) / s.chunk);
      if (Pool::get().try_run(parts, &Split::part, &s)) {
        uint64_t bad = 0;
        for (unsigned i = 0; i < parts; ++i) bad += s.bad[i];
        return bad;
      }
    }
    return run(x, 0, n, out, attn, members);
  }

  // Rows [first, first + n) of the call, on this thread, in this thread's workspace.
  uint64_t run(const float* x, uint64_t first, uint64_t n, float* out, float* attn, float* members) const {
    const uint64_t I = view_.input_size, C = view_.n_classes;
    x += first * I;
    out += first * C;
    if (attn) attn += first * attn_width_;
    if (ens_) {
      if (members) members += first * ens_->n_members * C;
      return run_ensemble(*ens_, x, n, out, attn, members, workspace(ws_floats_));
    }
    return ops_->run(plan_.get(), x, n, out, attn, workspace(ws_floats_));
  }

  // A batch may split across threads (threads: 0 = automatic, see threads_arg), an ensemble's
  // as a single model's.
  void execute(const float* x, uint64_t n, float* out, float* attn, unsigned threads = 1,
               float* members = nullptr) const {
    if (n == 0) return;
    uint64_t bad;
    if (n >= kReleaseGilRows) {
      py::gil_scoped_release release;
      bad = run_split(x, n, out, attn, members, threads);
    } else {
      bad = run(x, 0, n, out, attn, members);
    }
    if (bad && raise_on_nonfinite_) report_nonfinite(x, n, out);
  }

  // The first bad row, named as every backend names it (pymicro.runtime.inputs.nonfinite_error):
  // a NaN/Inf input cell, or a row of finite inputs whose probabilities came out NaN
  // (float32 overflow inside the network). An error path: copies are fine here.
  [[noreturn]] void report_nonfinite(const float* x, uint64_t n, const float* out) const {
    static py::object* fn =  // leaked on purpose, as coerce's
        new py::object(py::module_::import("pymicro.runtime.inputs").attr("nonfinite_error"));
    const auto rows = py::ssize_t(n);
    py::array_t<float> xs({rows, py::ssize_t(view_.input_size)}, x);
    py::array_t<float> outs({rows, py::ssize_t(view_.n_classes)}, out);
    py::object err = (*fn)(xs, outs, blob());
    PyErr_SetObject(err.get_type().ptr(), err.ptr());
    throw py::error_already_set();
  }

  // A single row's result array. Allocating and freeing a small ndarray costs about a third of
  // a micro network's whole call, so the last two results are kept and one is handed out again
  // once nothing but this cache holds it (CPython's zip and enumerate reuse their result tuples
  // the same way): a reference count of 1 means no name, container, view, buffer export or
  // weak reference can see it. Two, so `p = predict(model, x)` in a loop (the old p is alive
  // during the call) reuses the one before. An array reshaped, retyped or frozen by its last
  // user is never reused. Single rows keep the GIL for the whole call (kReleaseGilRows), so
  // no other thread can take a reference between the check and the write.
  py::object single_result() {
    for (py::object& s : spare_)
      if (s && reusable(s.ptr())) return s;
    py::object out = new_f32(1, 1, py::ssize_t(view_.n_classes));
    spare_[spare_next_] = out;
    spare_next_ ^= 1u;
    return out;
  }

  bool reusable(PyObject* p) const {
    using py::detail::npy_api;
    struct Fields : py::detail::PyArray_Proxy {
      PyObject* weakreflist;  // numpy's PyArrayObject_fields, the member after flags
    };
    const auto* a = reinterpret_cast<const Fields*>(p);
    constexpr int own = npy_api::NPY_ARRAY_WRITEABLE_ | npy_api::NPY_ARRAY_OWNDATA_;
    return Py_REFCNT(p) == 1 && !a->weakreflist && !a->base && (a->flags & own) == own && is_fast_array(p) &&
           a->nd == 1 && uint64_t(a->dimensions[0]) == view_.n_classes;
  }

  // Releasing and re-taking the GIL costs about as much as one small row's
  // work, so single rows and tiny batches keep it.
  static constexpr uint64_t kReleaseGilRows = 8;
  // threads=None splits a batch across the CPUs from this many rows (docs/performance.md).
  static constexpr uint64_t kAutoThreadRows = 16384;

  AlignedPtr blob_, plan_;
  size_t size_ = 0;
  BlobView view_;
  std::unique_ptr<ContainerView> cview_;  // an ensemble's (heap: members' views are large)
  const EnsemblePlan* ens_ = nullptr;     // inside plan_
  const ArchOps* ops_;
  uint64_t ws_floats_ = 0;
  uint32_t attn_width_ = 0;
  bool raise_on_nonfinite_ = true;
  py::object spare_[2];  // single_result's cache
  unsigned spare_next_ = 0;
};

// ---------------------------------------------------------------- the hot calls
//
// predict and predict_into as plain CPython vectorcall functions (METH_FASTCALL), each
// bound to one model through a capsule: pybind11's dispatcher (argument loaders,
// overload resolution) costs more than a micro network's whole forward pass. The
// capsule holds a strong reference to the model's Python object, so the functions keep
// it alive; the bodies are NativeModel's own methods.

struct Bound {
  NativeModel* model;
  PyObject* owner;  // the pybind11 instance that owns *model (a strong reference)
};
constexpr const char* kBoundName = "pymicro._core.Bound";

void bound_free(PyObject* capsule) {
  auto* b = static_cast<Bound*>(PyCapsule_GetPointer(capsule, kBoundName));
  if (!b) return;
  Py_XDECREF(b->owner);
  delete b;
}

// The call's arguments by position or keyword: names[i] for i < want; false with a
// TypeError set if they do not fit.
// names[i] for i >= required are keyword-only and optional (nullptr when absent).
bool fast_args(const char* fn, PyObject* const* args, size_t nargsf, PyObject* kwnames,
               const char* const* names, Py_ssize_t want, PyObject** got, Py_ssize_t all) {
  Py_ssize_t n = PyVectorcall_NARGS(nargsf);
  if (n > want) {
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", fn, want, n);
    return false;
  }
  for (Py_ssize_t i = 0; i < all; ++i) got[i] = i < n ? args[i] : nullptr;
  Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
  for (Py_ssize_t k = 0; k < nkw; ++k) {
    PyObject* key = PyTuple_GET_ITEM(kwnames, k);
    Py_ssize_t i = 0;
    while (i < all && PyUnicode_CompareWithASCIIString(key, names[i]) != 0) ++i;
    if (i == all || got[i]) {
      PyErr_Format(PyExc_TypeError, "%s() got an unexpected or repeated argument '%U'", fn, key);
      return false;
    }
    got[i] = args[n + k];
  }
  for (Py_ssize_t i = 0; i < want; ++i)
    if (!got[i]) {
      PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fn, names[i]);
      return false;
    }
  return true;
}

template <class F>
PyObject* guarded(F&& f) {
  try {
    return f();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_RuntimeError, "pymicro: unknown C++ exception");
  }
  return nullptr;
}

// The shortcuts' arguments: `want` positional ones and, at most, threads= with a value the
// general path would accept (None or an int >= 1; one row never splits, so it changes nothing).
bool shortcut_args(size_t nargsf, PyObject* kwnames, PyObject* const* args, Py_ssize_t want) {
  const Py_ssize_t n = PyVectorcall_NARGS(nargsf);
  if (n != want) return false;
  if (!kwnames) return true;
  if (PyTuple_GET_SIZE(kwnames) != 1 || PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0), "threads"))
    return false;
  return threads_value(args[n]) >= 0;
}

PyObject* fast_predict(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  static const char* const names[] = {"x", "threads"};
  PyObject* got[2];
  if (shortcut_args(nargsf, kwnames, args, 1)) {  // predict(row): as predict_into's
    auto* b = static_cast<Bound*>(PyCapsule_GetContext(self));
    if (PyObject* r = b ? b->model->predict_row(args[0]) : nullptr) return r;
  }
  if (!fast_args("predict", args, nargsf, kwnames, names, 1, got, 2)) return nullptr;
  auto* b = static_cast<Bound*>(PyCapsule_GetPointer(self, kBoundName));
  if (!b) return nullptr;
  return guarded([&] {
    return b->model->predict(got[0], got[1] ? py::handle(got[1]) : py::none()).release().ptr();
  });
}

PyObject* fast_predict_into(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  static const char* const names[] = {"x", "out", "threads"};
  PyObject* got[3];
  // The trading loop's call, predict_into(row, out) (threads= allowed): one row, both arrays
  // fit as they are. Everything else (and every error) takes the general path below.
  if (shortcut_args(nargsf, kwnames, args, 2)) {
    auto* b = static_cast<Bound*>(PyCapsule_GetContext(self));  // set with the pointer, no name compare
    if (b && b->model->predict_row_into(args[0], args[1])) Py_RETURN_NONE;
  }
  if (!fast_args("predict_into", args, nargsf, kwnames, names, 2, got, 3)) return nullptr;
  auto* b = static_cast<Bound*>(PyCapsule_GetPointer(self, kBoundName));
  if (!b) return nullptr;
  return guarded([&] {
    b->model->predict_into(got[0], got[1], got[2] ? py::handle(got[2]) : py::none());
    Py_RETURN_NONE;
  });
}

PyMethodDef kFastDefs[] = {
    {"predict", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fast_predict)),
     METH_FASTCALL | METH_KEYWORDS,
     "predict(x): class probabilities, (n_classes,) for one row or (batch, n_classes)."},
    {"predict_into", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fast_predict_into)),
     METH_FASTCALL | METH_KEYWORDS,
     "predict_into(x, out): probabilities written into out; no allocation, no conversion."},
};

// pymicro.predict(model, x, *, threads=None): model.predict(x) (with threads= when given),
// without the Python frame a wrapper function costs (~70 ns of a ~0.35 us call). The
// instance attribute (Model's bound fast_calls predict) is found as a Python lookup would.
PyObject* module_predict(PyObject*, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  static const char* const names[] = {"model", "x", "threads"};
  PyObject* got[3];
  if (!fast_args("predict", args, nargsf, kwnames, names, 2, got, 3)) return nullptr;
  static PyObject* const method = PyUnicode_InternFromString("predict");
  if (!method) return nullptr;
  PyObject* result;
  if (!got[2] || got[2] == Py_None) {
    PyObject* call[2] = {got[0], got[1]};
    result = PyObject_VectorcallMethod(method, call, 2, nullptr);
  } else {
    static PyObject* const kw = Py_BuildValue("(s)", "threads");
    if (!kw) return nullptr;
    PyObject* call[3] = {got[0], got[1], got[2]};
    result = PyObject_VectorcallMethod(method, call, 2, kw);
  }
  // Only on failure: something that is not a model (no predict at all) is the caller's
  // type error, said as one (InputTypeError), not an AttributeError from inside pymicro.
  if (!result && PyErr_ExceptionMatches(PyExc_AttributeError) && !PyObject_HasAttr(got[0], method)) {
    PyErr_Clear();
    return guarded([&]() -> PyObject* {
      raise("InputTypeError", std::string("predict(model, x) needs a pymicro model (pymicro.load(...)); got ") +
                                  Py_TYPE(got[0])->tp_name);
    });
  }
  return result;
}

PyMethodDef kPredictDef = {
    "predict", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(module_predict)),
    METH_FASTCALL | METH_KEYWORDS,
    "predict(model, x, *, threads=None)\n--\n\n"
    "Class probabilities of ``x`` under ``model`` (see :meth:`pymicro.Model.predict`)."};

py::tuple fast_calls(py::object self) {
  auto* model = self.cast<NativeModel*>();
  auto* b = new Bound{model, self.inc_ref().ptr()};
  PyObject* capsule = PyCapsule_New(b, kBoundName, bound_free);
  if (capsule && PyCapsule_SetContext(capsule, b) != 0) Py_CLEAR(capsule);
  if (!capsule) {
    Py_DECREF(b->owner);
    delete b;
    throw py::error_already_set();
  }
  auto cap = py::reinterpret_steal<py::object>(capsule);
  py::str mod("pymicro._core");
  py::tuple calls(2);
  for (size_t i = 0; i < 2; ++i) {
    PyObject* f = PyCFunction_NewEx(&kFastDefs[i], cap.ptr(), mod.ptr());
    if (!f) throw py::error_already_set();
    calls[i] = py::reinterpret_steal<py::object>(f);
  }
  return calls;
}

// fma_rate's and exp_rate's arguments: the ISA's ops, or an InputError naming what is wrong.
const ArchOps* rate_isa(const char* fn, const std::string& isa, double seconds) {
  const ArchOps* ops = find_isa(isa);
  if (!ops)
    raise("InputError", std::string(fn) + ": isa '" + isa + "' does not run on this CPU (" + isa_names() + ")");
  if (!(seconds > 0.0 && seconds <= 60.0)) raise("InputError", std::string(fn) + ": seconds must be in (0, 60]");
  return ops;
}

// Operations a second of run(rounds) (which returns how many it did): a sample grows to a tenth
// of `seconds`, then the fastest of the samples until `seconds` are spent.
template <class Run>
double best_rate(double seconds, uint64_t rounds, Run&& run) {
  using clock = std::chrono::steady_clock;
  double best = 0.0, spent = 0.0;
  while (spent < seconds || best == 0.0) {
    auto t0 = clock::now();
    const uint64_t done = run(rounds);
    double dt = std::chrono::duration<double>(clock::now() - t0).count();
    spent += dt;
    if (dt < seconds / 10) rounds *= 2;
    else if (double(done) / dt > best) best = double(done) / dt;
  }
  return best;
}

}  // namespace

void pymicro_register_cuda(py::module_& m);  // cpp/cuda/host.cpp
// ---- pymicro.live: incremental features and the tick-to-signal pipeline (stream_bindings.hpp)
#include "stream_bindings.hpp"
// ---- end pymicro.live

PYBIND11_MODULE(_core, m) {
  m.doc() = "pymicro's C++ core: blob parser and executor";
  m.add_object("predict", py::reinterpret_steal<py::object>(
                               PyCFunction_NewEx(&kPredictDef, nullptr, m.attr("__name__").ptr())));
  pymicro_register_cuda(m);
  // ((name, code), ...) from PM_ACTIVATIONS (format.hpp): the table the parser and kernels use.
  py::list acts;
#define PM_X_PAIR(id, code, name) acts.append(py::make_tuple(name, uint32_t(code)));
  PM_ACTIVATIONS(PM_X_PAIR)
#undef PM_X_PAIR
  m.attr("ACTIVATIONS") = py::tuple(acts);
  m.def("parse", [](py::buffer data, bool check_crc) {
    py::buffer_info info = data.request();
    if (info.itemsize != 1 || info.ndim != 1 || info.strides[0] != 1)
      raise("InputError", "a blob must be a contiguous bytes-like object");
    return describe(parse_or_raise(static_cast<const uint8_t*>(info.ptr), size_t(info.size), check_crc));
  }, py::arg("data"), py::arg("check_crc") = true,
     "Validate a blob and return its contents as Python data (raises BlobError).");
  m.def("parse_container", [](py::buffer data, bool check_crc) {
    py::buffer_info info = data.request();
    if (info.itemsize != 1 || info.ndim != 1 || info.strides[0] != 1)
      raise("InputError", "a container must be a contiguous bytes-like object");
    return describe_container(*parse_container_or_raise(static_cast<const uint8_t*>(info.ptr),
                                                        size_t(info.size), check_crc));
  }, py::arg("data"), py::arg("check_crc") = true,
     "Validate an ensemble container (PMBC) and return its contents as Python data (raises BlobError).");
  m.def("isas", [] {
    py::list names;
    for (auto* o : available_isas()) names.append(o->name);
    return names;
  }, "Instruction sets this CPU can run, best first.");
  m.def("fma_rate", [](const std::string& isa, double seconds) {
    const ArchOps* ops = rate_isa("fma_rate", isa, seconds);
    py::gil_scoped_release release;
    float sink = 0.999f;
    return best_rate(seconds, 1 << 12, [&](uint64_t rounds) { return ops->fma_probe(rounds, &sink); });
  }, py::arg("isa") = "auto", py::arg("seconds") = 0.3,
     "Peak float32 multiply-adds per second of one ISA's kernels on this core (one thread):\n"
     "the roofline for a batch, measured by timing independent vector FMA chains.");
  m.def("exp_rate", [](const std::string& isa, double seconds) {
    const ArchOps* ops = rate_isa("exp_rate", isa, seconds);
    py::gil_scoped_release release;
    constexpr uint64_t n = 4096;  // 16 KiB in, 16 KiB out: both in L1
    AlignedPtr buf = aligned_bytes(2 * n * sizeof(float));
    float* x = static_cast<float*>(buf.get());
    float* y = x + n;
    for (uint64_t i = 0; i < n; ++i) x[i] = -20.0f * float(i) / float(n);  // softmax's range
    return best_rate(seconds, 16, [&](uint64_t rounds) {
      for (uint64_t r = 0; r < rounds; ++r) ops->exp_into(x, y, n);
      return rounds * n;
    });
  }, py::arg("isa") = "auto", py::arg("seconds") = 0.3,
     "Exponentials per second of one ISA's vectorised exp on this core (one thread, from L1):\n"
     "the kernels' own exp, the one every softmax runs; the second term of the batch roofline.");
  m.def("_exp", [](py::array_t<float, py::array::c_style | py::array::forcecast> x,
                   const std::string& isa) {
    const ArchOps* ops = find_isa(isa);
    if (!ops) raise("InputError", "_exp: isa '" + isa + "' does not run on this CPU (" + isa_names() + ")");
    py::array_t<float> y(x.size());
    ops->exp_into(x.data(), y.mutable_data(), uint64_t(x.size()));
    return y;
  }, py::arg("x"), py::arg("isa"),
     "The kernels' own vectorised exp, elementwise over a 1-D float32 array (for tests).");
  py::class_<NativeModel>(m, "NativeModel")
      .def(py::init<py::buffer, const std::string&, const std::string&>(), py::arg("data"),
           py::arg("isa") = "auto", py::arg("nan_policy") = "raise")
      .def("fast_calls", &fast_calls,
           "(predict, predict_into) as plain CPython functions bound to this model: the same "
           "calls without pybind11's dispatch")
      .def("predict", &NativeModel::predict, py::arg("x"), py::kw_only(), py::arg("threads") = py::none())
      .def("predict_into", &NativeModel::predict_into, py::arg("x"), py::arg("out"), py::kw_only(),
           py::arg("threads") = py::none())
      .def("explain", &NativeModel::explain, py::arg("x"))
      .def("explain_members", &NativeModel::explain_members, py::arg("x"))
      .def_property_readonly("input_size", &NativeModel::input_size)
      .def_property_readonly("n_classes", &NativeModel::n_classes)
      .def_property_readonly("attn_width", &NativeModel::attn_width)
      .def_property_readonly("isa", &NativeModel::isa)
      .def_property_readonly("tile", &NativeModel::tile)
      .def_property_readonly("raises_on_nonfinite", &NativeModel::raises_on_nonfinite)
      .def("blob", &NativeModel::blob)
      .def("info", &NativeModel::info);
  register_stream(m);  // pymicro.live (stream_bindings.hpp)
}
