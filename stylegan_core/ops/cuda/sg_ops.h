// Host entry points of the compiled ops, defined in bias_act.cu and upfirdn2d.cu and bound to Python in sg_ops.cpp.
// The Python wrappers (ops/cuda/bias_act_fn.py, ops/cuda/upfirdn2d_fn.py) prepare layouts and filters; these
// functions check what they rely on and launch.
#pragma once

#include <ATen/ATen.h>

// Absent optional tensors are passed as empty tensors (numel() == 0), which keeps the binding free of optionals.
// mode: 0 forward, 1 gradient, 2 gradient of the gradient (see sg_ops_math.h). clamp < 0 disables clamping.
at::Tensor bias_act_cuda_launch(const at::Tensor& x, const at::Tensor& b, const at::Tensor& xref,
                                const at::Tensor& yref, const at::Tensor& dy, int64_t mode, int64_t dim, int64_t act,
                                bool ref_is_x, double alpha, double gain, double clamp);

// f: the filter as the caller gives it, 1-D (separable) or 2-D, float32 for half, bfloat16 and float inputs and
// float64 for double inputs; the kernel flips it (unless flip_filter) and scales it by gain.
at::Tensor upfirdn2d_cuda_launch(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                                 int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1,
                                 bool flip_filter, double gain);
