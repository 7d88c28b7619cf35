// upfirdn2d: zero-insertion upsampling, padding/cropping, FIR filtering and decimation in one gather pass.
//
// One thread computes one output position in several image planes (batch x channel): it finds which inputs and taps
// that position reads once (integer divisions are costly on a GPU) and reuses that for each of its planes. A block
// covers a 32 x 8 tile of positions and stages the taps in shared memory. Neighbouring threads read neighbouring
// inputs, which the L1 cache serves. The gradient is another upfirdn2d (set up in Python), so this one forward
// kernel gives gradients of every order.
#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdlib>

#include "sg_ops.h"
#include "sg_ops_math.h"

namespace {

constexpr int kTileW = 32;
constexpr int kTileH = 8;
constexpr int kMaxGridZ = 65535;
constexpr int64_t kPlanesPerThread = 8;  // amortises the window arithmetic; still leaves plenty of blocks

template <typename scalar_t, typename acc_t>
__global__ void upfirdn2d_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ f,
                                 scalar_t* __restrict__ y, int64_t planes, sg_ops::UpfirdnShape s, bool separable,
                                 bool flip_filter, acc_t gain) {
  // The correlation taps, built from the caller's filter once per block (no separate torch ops per call).
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  acc_t* taps = reinterpret_cast<acc_t*>(shared_bytes);
  const int num_taps = s.taps_h * s.taps_w;
  const int thread = threadIdx.y * blockDim.x + threadIdx.x;
  for (int k = thread; k < num_taps; k += blockDim.x * blockDim.y) {
    taps[k] = sg_ops::correlation_tap(f, s.taps_h, s.taps_w, separable, flip_filter, gain, k / s.taps_w, k % s.taps_w);
  }
  __syncthreads();  // every thread reaches this before any returns

  const int ox = blockIdx.x * kTileW + threadIdx.x;
  const int oy = blockIdx.y * kTileH + threadIdx.y;
  if (ox >= s.out_w || oy >= s.out_h) return;
  const sg_ops::UpfirdnWindow window = sg_ops::upfirdn_window(s, oy, ox);
  const int64_t in_plane = static_cast<int64_t>(s.in_h) * s.in_w;
  const int64_t out_plane = static_cast<int64_t>(s.out_h) * s.out_w;
  const int64_t out_offset = static_cast<int64_t>(oy) * s.out_w + ox;
  for (int64_t p = blockIdx.z; p < planes; p += gridDim.z) {
    acc_t v = sg_ops::upfirdn2d_sum<scalar_t, acc_t>(x + p * in_plane, taps, s, window);
    y[p * out_plane + out_offset] = static_cast<scalar_t>(v);
  }
}

}  // namespace

at::Tensor upfirdn2d_cuda_launch(const at::Tensor& x, const at::Tensor& f, int64_t upx, int64_t upy, int64_t downx,
                                 int64_t downy, int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1,
                                 bool flip_filter, double gain) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4 && x.is_contiguous(), "upfirdn2d_cuda: x must be a contiguous CUDA NCHW tensor");
  TORCH_CHECK(f.device() == x.device() && (f.dim() == 1 || f.dim() == 2) && f.is_contiguous() && f.numel() > 0,
              "upfirdn2d_cuda: the filter must be a non-empty contiguous 1-D or 2-D tensor on x's device");
  const bool separable = f.dim() == 1;
  const int64_t taps_h = f.size(0), taps_w = separable ? f.size(0) : f.size(1);
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d_cuda: up and down must be >= 1");

  const int64_t out_w = sg_ops::upfirdn_out_size(x.size(3), upx, padx0, padx1, taps_w, downx);
  const int64_t out_h = sg_ops::upfirdn_out_size(x.size(2), upy, pady0, pady1, taps_h, downy);
  TORCH_CHECK(out_w >= 1 && out_h >= 1, "upfirdn2d_cuda: the padding and filter leave an empty output (", out_h, " x ",
              out_w, ")");
  constexpr int64_t kIntMax = 2147483647;
  // Every coordinate the kernel forms is bounded by the upsampled, padded extent along its axis.
  const int64_t extent_x = x.size(3) * upx + std::abs(padx0) + std::abs(padx1) + taps_w + downx;
  const int64_t extent_y = x.size(2) * upy + std::abs(pady0) + std::abs(pady1) + taps_h + downy;
  TORCH_CHECK(x.size(2) * x.size(3) <= kIntMax && out_h * out_w <= kIntMax && extent_x <= kIntMax &&
                  extent_y <= kIntMax && taps_h * taps_w <= kIntMax,
              "upfirdn2d_cuda: image planes, factors or paddings too large for 32-bit coordinates");
  sg_ops::UpfirdnShape s;
  s.in_h = static_cast<int>(x.size(2));
  s.in_w = static_cast<int>(x.size(3));
  s.out_h = static_cast<int>(out_h);
  s.out_w = static_cast<int>(out_w);
  s.taps_h = static_cast<int>(taps_h);
  s.taps_w = static_cast<int>(taps_w);
  s.upx = static_cast<int>(upx);
  s.upy = static_cast<int>(upy);
  s.downx = static_cast<int>(downx);
  s.downy = static_cast<int>(downy);
  s.padx0 = static_cast<int>(padx0);
  s.pady0 = static_cast<int>(pady0);
  const int64_t planes = x.size(0) * x.size(1);

  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = at::empty({x.size(0), x.size(1), s.out_h, s.out_w}, x.options());
  if (planes == 0 || x.numel() == 0) return y.zero_();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(), "upfirdn2d_cuda",
                                  [&] {
    using acc_t = at::opmath_type<scalar_t>;
    TORCH_CHECK(f.scalar_type() == c10::CppTypeToScalarType<acc_t>::value, "upfirdn2d_cuda: the filter must be ",
                c10::CppTypeToScalarType<acc_t>::value, " for ", x.scalar_type(), " inputs, got ", f.scalar_type());
    const size_t shared = static_cast<size_t>(taps_h * taps_w) * sizeof(acc_t);
    TORCH_CHECK(shared <= 48 * 1024, "upfirdn2d_cuda: filter of ", s.taps_h, " x ", s.taps_w,
                " taps is larger than the 48 KiB of shared memory this kernel stages it in");
    const dim3 block(kTileW, kTileH);
    const dim3 grid(static_cast<unsigned>((s.out_w + kTileW - 1) / kTileW),
                    static_cast<unsigned>((s.out_h + kTileH - 1) / kTileH),
                    static_cast<unsigned>(std::min<int64_t>((planes + kPlanesPerThread - 1) / kPlanesPerThread,
                                                            kMaxGridZ)));
    TORCH_CHECK(grid.y <= 65535, "upfirdn2d_cuda: output height ", s.out_h, " is too large");
    upfirdn2d_kernel<scalar_t, acc_t><<<grid, block, shared, c10::cuda::getCurrentCUDAStream()>>>(
        x.const_data_ptr<scalar_t>(), f.const_data_ptr<acc_t>(), y.mutable_data_ptr<scalar_t>(), planes, s, separable,
        flip_filter, static_cast<acc_t>(gain));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return y;
}
