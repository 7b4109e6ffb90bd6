// The CUDA backend's host side inside pymicro._core:
//  * _cuda_plan(blob): the blob, parsed by the one C++ parser, as the plan and the flat
//    weights array that cpp/cuda/pymicro_cuda.cuh runs on (pymicro/runtime/cuda.py uploads
//    them and writes the plan into the source NVRTC compiles);
//  * _cuda_host_forward(blob, x, explain): that same per-sample code compiled for this CPU,
//    which the tests compare with the native core on machines without a GPU;
//  * _cuda_source(): the text of pymicro_cuda.cuh, embedded at build time, so the source
//    NVRTC compiles is exactly the one the host build was tested with.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <string>
#include <vector>

#include "pymicro/parse.hpp"
#include "cuda/pymicro_cuda.cuh"

namespace py = pybind11;

namespace {

// An activation added to format.hpp's table without a case in pm_activate fails here.
#define PM_X_CHECK(id, code, name) \
  static_assert(pmcuda::act_supported(code), "pymicro_cuda.cuh has no kernel for activation " name);
PM_ACTIVATIONS(PM_X_CHECK)
#undef PM_X_CHECK
static_assert(pmcuda::kActRelu == pymicro::kRelu && pmcuda::kActTanh == pymicro::kTanh &&
                  pmcuda::kActSigmoid == pymicro::kSigmoid && pmcuda::kActGelu == pymicro::kGelu &&
                  pmcuda::kActLinear == pymicro::kLinear,
              "activation codes");

const char kSource[] =
#include "pm_cuda_source.inc"
    ;

struct CudaPlan {
  pmcuda::Plan plan;
  std::vector<float> weights;
};

pymicro::BlobView parse_blob(const py::buffer& data, py::buffer_info& info) {
  info = data.request();
  if (info.itemsize != 1 || info.ndim != 1 || info.strides[0] != 1) {
    PyErr_SetString(py::module_::import("pymicro.errors").attr("InputError").ptr(),
                    "a blob must be a contiguous bytes-like object");
    throw py::error_already_set();
  }
  pymicro::BlobView v;
  pymicro::Status st;
  if (!pymicro::parse(static_cast<const uint8_t*>(info.ptr), uint64_t(info.size), &v, &st, true)) {
    py::object err = py::module_::import("pymicro.errors").attr("BlobError")(std::string(st.message), st.offset);
    PyErr_SetObject(err.get_type().ptr(), err.ptr());
    throw py::error_already_set();
  }
  return v;
}

void build_cuda_plan(const pymicro::BlobView& v, CudaPlan* out) {
  pmcuda::Plan& P = out->plan;
  std::memset(&P, 0, sizeof P);
  std::vector<float>& w = out->weights;
  w.clear();
  P.input_size = v.input_size;
  P.n_classes = v.n_classes;
  P.max_width = v.input_size > v.n_classes ? v.input_size : v.n_classes;
  P.mean = 0;
  P.inv = v.input_size;
  for (uint32_t i = 0; i < v.input_size; ++i) w.push_back(v.has_norm ? v.mean.at(i) : 0.0f);
  for (uint32_t i = 0; i < v.input_size; ++i) w.push_back(v.has_norm ? 1.0f / v.std.at(i) : 1.0f);
  auto add = [&](uint32_t kind, uint32_t act, uint32_t in, uint32_t out_size,
                 const pymicro::TensorView& W, const pymicro::TensorView& b) {
    pmcuda::Op& op = P.ops[P.n_ops++];
    op.kind = kind;
    op.act = act;
    op.in = in;
    op.out = out_size;
    op.w = uint32_t(w.size());
    for (uint64_t i = 0; i < uint64_t(in) * out_size; ++i) w.push_back(W.at(i));
    op.b = uint32_t(w.size());
    for (uint32_t o = 0; o < out_size; ++o) w.push_back(b.at(o));
    if (out_size > P.max_width) P.max_width = out_size;
  };
  for (uint32_t l = 0; l < v.n_layers; ++l) {
    const pymicro::LayerView& L = v.layers[l];
    if (L.kind == pymicro::kDense) {
      add(pmcuda::kOpDense, L.activation, L.in, L.out, L.t[0], L.t[1]);
    } else {
      if (!P.attn_width) P.attn_width = L.in;
      add(pmcuda::kOpGate, pmcuda::kActLinear, L.in, L.in, L.t[0], L.t[1]);
      add(pmcuda::kOpValue, pmcuda::kActLinear, L.in, L.out, L.t[2], L.t[3]);
    }
  }
}

py::dict cuda_plan(py::buffer data) {
  py::buffer_info info;
  pymicro::BlobView v = parse_blob(data, info);
  CudaPlan cp;
  build_cuda_plan(v, &cp);
  const pmcuda::Plan& P = cp.plan;
  py::dict d;
  d["n_ops"] = P.n_ops;
  d["input_size"] = P.input_size;
  d["n_classes"] = P.n_classes;
  d["attn_width"] = P.attn_width;
  d["max_width"] = P.max_width;
  d["mean"] = P.mean;
  d["inv"] = P.inv;
  py::list ops;
  for (uint32_t k = 0; k < P.n_ops; ++k) {
    const pmcuda::Op& op = P.ops[k];
    ops.append(py::make_tuple(op.kind, op.act, op.in, op.out, op.w, op.b));
  }
  d["ops"] = ops;
  py::array_t<float> w(py::ssize_t(cp.weights.size()));
  std::memcpy(w.mutable_data(), cp.weights.data(), cp.weights.size() * 4);
  d["weights"] = w;
  return d;
}

py::tuple cuda_host_forward(py::buffer data, py::array_t<float, py::array::c_style | py::array::forcecast> x,
                            bool explain) {
  py::buffer_info info;
  pymicro::BlobView v = parse_blob(data, info);
  CudaPlan cp;
  build_cuda_plan(v, &cp);
  const pmcuda::Plan& P = cp.plan;
  if (x.ndim() != 2 || uint64_t(x.shape(1)) != P.input_size) {
    PyErr_SetString(py::module_::import("pymicro.errors").attr("InputError").ptr(),
                    ("_cuda_host_forward: x must have shape (batch, " + std::to_string(P.input_size) + ")").c_str());
    throw py::error_already_set();
  }
  const py::ssize_t n = x.shape(0);
  py::array_t<float> out({n, py::ssize_t(P.n_classes)});
  py::object attn = py::none();
  float* a = nullptr;
  if (explain && P.attn_width) {
    py::array_t<float> at({n, py::ssize_t(P.attn_width)});
    a = at.mutable_data();
    attn = at;
  }
  std::vector<float> A(P.max_width), B(P.max_width);
  uint64_t bad = 0;
  const float* xs = x.data();
  float* o = out.mutable_data();
  for (py::ssize_t r = 0; r < n; ++r)
    bad += pmcuda::pm_forward(P, cp.weights.data(), xs + r * P.input_size, o + r * P.n_classes,
                              a ? a + r * P.attn_width : nullptr, A.data(), B.data());
  return py::make_tuple(out, attn, bad);
}

}  // namespace

void pymicro_register_cuda(py::module_& m) {
  m.def("_cuda_plan", &cuda_plan, py::arg("data"),
        "The blob as the CUDA backend's plan (ops, widths, offsets) and flat float32 weights.");
  m.def("_cuda_host_forward", &cuda_host_forward, py::arg("data"), py::arg("x"),
        py::arg("explain") = false,
        "cpp/cuda/pymicro_cuda.cuh's per-sample forward pass compiled for this CPU: "
        "(probabilities, attention weights or None, bad rows) for a (batch, input_size) x.");
  m.def("_cuda_source", [] { return std::string(kSource); },
        "The text of cpp/cuda/pymicro_cuda.cuh this build was made from (what NVRTC compiles).");
}
