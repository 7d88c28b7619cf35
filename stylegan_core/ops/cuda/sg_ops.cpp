// Python bindings of the compiled ops (module name set by torch.utils.cpp_extension via TORCH_EXTENSION_NAME).
#include <torch/extension.h>

#include "sg_ops.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "stylegan_core fused CUDA ops: bias_act and upfirdn2d";
  m.def("bias_act", &bias_act_cuda_launch, "bias + activation + gain + clamp, or its first/second derivative",
        py::arg("x"), py::arg("b"), py::arg("xref"), py::arg("yref"), py::arg("dy"), py::arg("mode"), py::arg("dim"),
        py::arg("act"), py::arg("ref_is_x"), py::arg("alpha"), py::arg("gain"), py::arg("clamp"));
  m.def("upfirdn2d", &upfirdn2d_cuda_launch, "upsample, pad, FIR-filter and downsample", py::arg("x"), py::arg("f"),
        py::arg("upx"), py::arg("upy"), py::arg("downx"), py::arg("downy"), py::arg("padx0"), py::arg("padx1"),
        py::arg("pady0"), py::arg("pady1"), py::arg("flip_filter"), py::arg("gain"));
}
