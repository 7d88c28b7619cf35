// bias_act: one elementwise pass for bias + activation + gain + clamp, and for its first and second derivatives.
//
// The op is bound by memory traffic, so the kernel is a plain grid-stride loop over the elements in memory order:
// neighbouring threads touch neighbouring addresses whatever the layout (NCHW or channels_last), and the bias index
// (offset / x.stride(dim)) % x.size(dim) is carried along the loop without dividing (sg_ops::BiasIndexWalker).
// The arithmetic lives in sg_ops_math.h.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "sg_ops.h"
#include "sg_ops_math.h"

namespace {

template <typename scalar_t>
struct BiasActArgs {
  const scalar_t* x;
  const scalar_t* b;     // nullptr: no bias
  const scalar_t* xref;  // nullptr unless needed by the mode
  const scalar_t* yref;
  const scalar_t* dy;
  scalar_t* out;
  int64_t numel;
  int64_t bias_stride;  // x.stride(dim): the bias index of linear offset i is (i / bias_stride) % bias_size
  int64_t bias_size;
  int mode;
  bool ref_is_x;
  double alpha, gain, clamp;
};

template <typename scalar_t, int ACT>
__global__ void bias_act_kernel(BiasActArgs<scalar_t> a) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t alpha = static_cast<acc_t>(a.alpha);
  const acc_t gain = static_cast<acc_t>(a.gain);
  // The threshold as scalar_t stores it: the gradient modes compare stored outputs with it (see sg_ops_math.h).
  const acc_t clamp = static_cast<acc_t>(static_cast<scalar_t>(static_cast<acc_t>(a.clamp)));
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  sg_ops::BiasIndexWalker bias_index(first, step, a.bias_stride, a.bias_size);
  for (int64_t i = first; i < a.numel; i += step, bias_index.advance()) {
    acc_t x = static_cast<acc_t>(a.x[i]);
    acc_t b = a.b ? static_cast<acc_t>(a.b[bias_index.index]) : acc_t(0);
    acc_t xref = a.xref ? static_cast<acc_t>(a.xref[i]) : acc_t(0);
    acc_t yref = a.yref ? static_cast<acc_t>(a.yref[i]) : acc_t(0);
    acc_t dy = a.dy ? static_cast<acc_t>(a.dy[i]) : acc_t(0);
    acc_t y = sg_ops::bias_act_element<ACT, acc_t>(a.mode, x, b, xref, yref, dy, a.ref_is_x, alpha, gain, clamp);
    a.out[i] = static_cast<scalar_t>(y);
  }
}

template <typename scalar_t>
const scalar_t* data_or_null(const at::Tensor& t) {
  return t.numel() ? t.const_data_ptr<scalar_t>() : nullptr;
}

void check_companion(const at::Tensor& t, const at::Tensor& x, const char* name) {
  if (!t.numel()) return;
  TORCH_CHECK(t.device() == x.device(), "bias_act_cuda: ", name, " is on ", t.device(), ", x on ", x.device());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "bias_act_cuda: ", name, " has dtype ", t.scalar_type(),
              ", x has ", x.scalar_type());
  TORCH_CHECK(t.sizes() == x.sizes() && t.strides() == x.strides(), "bias_act_cuda: ", name,
              " must have the shape and strides of x");
}

}  // namespace

at::Tensor bias_act_cuda_launch(const at::Tensor& x, const at::Tensor& b, const at::Tensor& xref,
                                const at::Tensor& yref, const at::Tensor& dy, int64_t mode, int64_t dim, int64_t act,
                                bool ref_is_x, double alpha, double gain, double clamp) {
  TORCH_CHECK(x.is_cuda(), "bias_act_cuda: x must be a CUDA tensor");
  TORCH_CHECK(x.is_non_overlapping_and_dense(), "bias_act_cuda: x must be dense (contiguous in some dim order)");
  TORCH_CHECK(0 <= dim && dim < x.dim(), "bias_act_cuda: dim ", dim, " out of range for ", x.dim(), " dims");
  TORCH_CHECK(0 <= mode && mode <= 2, "bias_act_cuda: mode must be 0, 1 or 2");
  TORCH_CHECK(0 <= act && act < sg_ops::kNumActivations, "bias_act_cuda: unknown activation id ", act);
  if (b.numel()) {
    TORCH_CHECK(b.device() == x.device() && b.scalar_type() == x.scalar_type(),
                "bias_act_cuda: b must have the device and dtype of x");
    TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim) && b.is_contiguous(),
                "bias_act_cuda: b must be a contiguous vector of length x.shape[dim]");
  }
  check_companion(xref, x, "xref");
  check_companion(yref, x, "yref");
  check_companion(dy, x, "dy");
  // Only linear has a derivative that needs neither reference.
  TORCH_CHECK(mode == 0 || act == sg_ops::kLinear || (ref_is_x ? xref.numel() : yref.numel()),
              "bias_act_cuda: the gradient modes need the reference tensor they read");
  TORCH_CHECK(clamp < 0 || mode == 0 || yref.numel(), "bias_act_cuda: gradients with clamp need yref");
  TORCH_CHECK(mode != 2 || dy.numel(), "bias_act_cuda: mode 2 needs dy");

  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty_like(x);  // keeps x's strides for a dense x
  if (x.numel() == 0) return out;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(), "bias_act_cuda",
                                  [&] {
    BiasActArgs<scalar_t> args;
    args.x = x.const_data_ptr<scalar_t>();
    args.b = data_or_null<scalar_t>(b);
    args.xref = data_or_null<scalar_t>(xref);
    args.yref = data_or_null<scalar_t>(yref);
    args.dy = data_or_null<scalar_t>(dy);
    args.out = out.mutable_data_ptr<scalar_t>();
    args.numel = x.numel();
    args.bias_stride = std::max<int64_t>(x.stride(dim), 1);
    args.bias_size = std::max<int64_t>(x.size(dim), 1);
    args.mode = static_cast<int>(mode);
    args.ref_is_x = ref_is_x;
    args.alpha = alpha;
    args.gain = gain;
    args.clamp = clamp;

    constexpr int kThreads = 256;
    // Enough blocks to fill every multiprocessor several times over; the grid-stride loop covers the rest.
    int multiprocessors = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, x.get_device()));
    const int64_t max_blocks = static_cast<int64_t>(std::max(multiprocessors, 1)) * 16;
    const int blocks = static_cast<int>(std::min<int64_t>((args.numel + kThreads - 1) / kThreads, max_blocks));
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    sg_ops::dispatch_activation(static_cast<int>(act), [&](auto tag) {
      bias_act_kernel<scalar_t, decltype(tag)::value><<<blocks, kThreads, 0, stream>>>(args);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return out;
}
