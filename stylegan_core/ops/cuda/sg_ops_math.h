// Per-element arithmetic of the fused ops, shared by the CUDA kernels and a plain C++ harness.
//
// Everything here is header-only, free of CUDA and of PyTorch, and marked host+device, so the exact code that runs
// inside the kernels is also compiled by g++ for the CPU tests (tests/ops_cuda_host_harness.cpp). Only the thread
// mapping in bias_act.cu / upfirdn2d.cu is CUDA-specific.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define SG_HOSTDEV __host__ __device__ __forceinline__
#else
#define SG_HOSTDEV inline
#endif

namespace sg_ops {

// Activation ids; the Python side (ops/cuda/bias_act_fn.py) uses the same numbers.
enum Activation : int {
  kLinear = 0,
  kRelu = 1,
  kLrelu = 2,
  kTanh = 3,
  kSigmoid = 4,
  kElu = 5,
  kSelu = 6,
  kSoftplus = 7,
  kSwish = 8,
  kNumActivations = 9,
};

// Kernel modes: the forward value, its first derivative applied to an incoming gradient, and the second derivative
// (the derivative of mode 1 with respect to the pre-activation) applied to two incoming gradients.
enum Mode : int { kForward = 0, kGrad = 1, kGradGrad = 2 };

// Overloads so that one template body computes in float for float/half/bfloat16 and in double for double.
SG_HOSTDEV float sg_exp(float v) { return expf(v); }
SG_HOSTDEV double sg_exp(double v) { return exp(v); }
SG_HOSTDEV float sg_expm1(float v) { return expm1f(v); }
SG_HOSTDEV double sg_expm1(double v) { return expm1(v); }
SG_HOSTDEV float sg_log1p(float v) { return log1pf(v); }
SG_HOSTDEV double sg_log1p(double v) { return log1p(v); }
SG_HOSTDEV float sg_tanh(float v) { return tanhf(v); }
SG_HOSTDEV double sg_tanh(double v) { return tanh(v); }
SG_HOSTDEV float sg_abs(float v) { return fabsf(v); }
SG_HOSTDEV double sg_abs(double v) { return fabs(v); }

// torch.nn.functional.selu constants.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
// torch.nn.functional.softplus returns its input unchanged above this threshold (beta = 1).
constexpr double kSoftplusThreshold = 20.0;

template <typename T>
SG_HOSTDEV T sigmoid_of(T z) {
  return T(1) / (T(1) + sg_exp(-z));
}

// f(z). alpha is only read by lrelu (elu, selu and softplus use their standard constants, as NVIDIA's table does).
template <int ACT, typename T>
SG_HOSTDEV T activation(T z, T alpha) {
  if constexpr (ACT == kRelu) return z > T(0) ? z : T(0);
  if constexpr (ACT == kLrelu) return z > T(0) ? z : z * alpha;
  if constexpr (ACT == kTanh) return sg_tanh(z);
  if constexpr (ACT == kSigmoid) return sigmoid_of(z);
  if constexpr (ACT == kElu) return z > T(0) ? z : sg_expm1(z);
  if constexpr (ACT == kSelu) return T(kSeluScale) * (z > T(0) ? z : T(kSeluAlpha) * sg_expm1(z));
  if constexpr (ACT == kSoftplus) return z > T(kSoftplusThreshold) ? z : sg_log1p(sg_exp(z));
  if constexpr (ACT == kSwish) return z * sigmoid_of(z);
  return z;  // linear
}

// f'(z), written in terms of r, the value the backward pass keeps: r = z for linear, lrelu with a negative slope and
// swish ("x reference"); r = f(z) for the others ("y reference"), whose derivatives follow from their output alone,
// so the pre-activation tensor need not stay in memory. lrelu's formula holds for either reference when alpha >= 0.
template <int ACT, typename T>
SG_HOSTDEV T activation_grad(T r, T alpha) {
  if constexpr (ACT == kRelu) return r > T(0) ? T(1) : T(0);
  if constexpr (ACT == kLrelu) return r > T(0) ? T(1) : alpha;
  if constexpr (ACT == kTanh) return T(1) - r * r;
  if constexpr (ACT == kSigmoid) return r * (T(1) - r);
  if constexpr (ACT == kElu) return r > T(0) ? T(1) : r + T(1);
  if constexpr (ACT == kSelu) return r > T(0) ? T(kSeluScale) : r + T(kSeluScale * kSeluAlpha);
  if constexpr (ACT == kSoftplus) return T(1) - sg_exp(-r);
  if constexpr (ACT == kSwish) {
    T s = sigmoid_of(r);
    return s * (T(1) + r * (T(1) - s));
  }
  return T(1);  // linear
}

// f''(z) in terms of the same r; zero for the piecewise-linear activations.
template <int ACT, typename T>
SG_HOSTDEV T activation_grad2(T r, T alpha) {
  (void)alpha;
  if constexpr (ACT == kTanh) return T(-2) * r * (T(1) - r * r);
  if constexpr (ACT == kSigmoid) return r * (T(1) - r) * (T(1) - T(2) * r);
  // elu and selu: zero at the kink itself, as torch's elu double backward has it (strictly negative inputs only).
  if constexpr (ACT == kElu) return r < T(0) ? r + T(1) : T(0);
  if constexpr (ACT == kSelu) return r < T(0) ? r + T(kSeluScale * kSeluAlpha) : T(0);
  if constexpr (ACT == kSoftplus) {
    T e = sg_exp(-r);
    return (T(1) - e) * e;
  }
  if constexpr (ACT == kSwish) {
    T s = sigmoid_of(r);
    return s * (T(1) - s) * (T(2) + r * (T(1) - T(2) * s));
  }
  return T(0);
}

// One element of bias_act in the given mode. Arguments absent for a mode are passed as zero.
//   forward:  clamp(gain * f(x + b))
//   grad:     x * gain * f'(z) * [|y| < clamp]             (x is the incoming gradient)
//   gradgrad: x * dy * gain * f''(z) * [|y| < clamp]       (x is the incoming gradient of the gradient)
// xref is the forward input (used with the x reference), yref the forward output (y reference and clamp mask).
// clamp < 0 means no clamping. Clamped elements have a zero derivative, like torch.clamp outside its range. The
// caller passes clamp as the storage type holds it (e.g. 0.9 -> 0.89990234 in float16), so a stored clamped output
// is recognised as clamped.
template <int ACT, typename T>
SG_HOSTDEV T bias_act_element(int mode, T x, T b, T xref, T yref, T dy, bool ref_is_x, T alpha, T gain, T clamp) {
  if (mode == kForward) {
    T y = activation<ACT>(x + b, alpha) * gain;
    if (clamp >= T(0)) y = y > clamp ? clamp : (y < -clamp ? -clamp : y);
    return y;
  }
  if (clamp >= T(0) && !(sg_abs(yref) < clamp)) return T(0);
  T r = ref_is_x ? xref + b : (gain != T(0) ? yref / gain : T(0));
  if (mode == kGrad) return x * gain * activation_grad<ACT>(r, alpha);
  return x * dy * gain * activation_grad2<ACT>(r, alpha);
}

// Calls fn(std::integral_constant<int, ACT>) for a run-time activation id, so each activation gets its own kernel.
template <int ACT>
struct ActivationTag {
  static constexpr int value = ACT;
};

template <typename Fn>
inline bool dispatch_activation(int act, Fn&& fn) {
  switch (act) {
    case kLinear: fn(ActivationTag<kLinear>{}); return true;
    case kRelu: fn(ActivationTag<kRelu>{}); return true;
    case kLrelu: fn(ActivationTag<kLrelu>{}); return true;
    case kTanh: fn(ActivationTag<kTanh>{}); return true;
    case kSigmoid: fn(ActivationTag<kSigmoid>{}); return true;
    case kElu: fn(ActivationTag<kElu>{}); return true;
    case kSelu: fn(ActivationTag<kSelu>{}); return true;
    case kSoftplus: fn(ActivationTag<kSoftplus>{}); return true;
    case kSwish: fn(ActivationTag<kSwish>{}); return true;
    default: return false;
  }
}

// The bias index of successive linear offsets start, start + step, ... of a dense tensor, (offset / stride) % size,
// kept up to date with additions: a grid-stride loop then divides only once, before its first element (64-bit
// division costs about a hundred instructions on a GPU, more than the element's memory traffic).
struct BiasIndexWalker {
  int64_t stride, size;    // x.stride(dim), x.size(dim)
  int64_t rem, index;      // offset % stride, (offset / stride) % size
  int64_t step_rem, step_index;

  SG_HOSTDEV BiasIndexWalker(int64_t start, int64_t step, int64_t stride_, int64_t size_)
      : stride(stride_), size(size_) {
    rem = start % stride;
    index = (start / stride) % size;
    step_rem = step % stride;
    step_index = (step / stride) % size;
  }
  SG_HOSTDEV void advance() {
    rem += step_rem;
    int64_t carry = 0;
    if (rem >= stride) {
      rem -= stride;
      carry = 1;
    }
    index += step_index + carry;  // < 2 * size, so one subtraction wraps it
    if (index >= size) index -= size;
  }
};

// ---------------------------------------------------------------------------------------------------------------
// upfirdn2d. Coordinates within one image plane are 32-bit (the launcher checks that planes have < 2^31 samples).

// Floor and ceiling division by a positive divisor, correct for negative numerators.
SG_HOSTDEV int floor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
SG_HOSTDEV int ceil_div(int a, int b) { return -floor_div(-a, b); }

struct UpfirdnShape {
  int in_h, in_w, out_h, out_w;
  int taps_h, taps_w;  // filter height and width
  int upx, upy, downx, downy;
  int padx0, pady0;    // padding before the first sample (negative crops); the far padding only sets out_h/out_w
};

// Output size of upsample -> pad -> filter -> downsample along one axis; <= 0 when nothing is left.
SG_HOSTDEV int64_t upfirdn_out_size(int64_t in, int up, int pad0, int pad1, int taps, int down) {
  int64_t numerator = in * up + pad0 + pad1 - taps + down;
  return numerator >= 0 ? numerator / down : -((-numerator + down - 1) / down);
}

// The inputs one output sample reads, and the taps they meet. As a correlation with taps g[taps_h][taps_w] (see
// correlation_tap), output o reads upsampled-padded position o*down + k for
// tap k, and input i sits at upsampled position i*up + pad0, so input i meets tap k = i*up + pad0 - o*down. Walking
// the inputs rather than the taps visits only taps that meet real (not inserted) samples: taps/up per axis.
struct UpfirdnWindow {
  int iy0, iy1, ix0, ix1;  // inclusive input ranges (empty when iy1 < iy0 or ix1 < ix0)
  int ky0, kx0;            // the taps met by inputs iy0 and ix0; each next input moves up (upy, upx) taps
};

SG_HOSTDEV UpfirdnWindow upfirdn_window(const UpfirdnShape& s, int oy, int ox) {
  const int base_y = oy * s.downy - s.pady0;
  const int base_x = ox * s.downx - s.padx0;
  UpfirdnWindow w;
  w.iy0 = ceil_div(base_y, s.upy);
  w.ix0 = ceil_div(base_x, s.upx);
  w.iy0 = w.iy0 < 0 ? 0 : w.iy0;
  w.ix0 = w.ix0 < 0 ? 0 : w.ix0;
  w.iy1 = floor_div(base_y + s.taps_h - 1, s.upy);
  w.ix1 = floor_div(base_x + s.taps_w - 1, s.upx);
  w.iy1 = w.iy1 > s.in_h - 1 ? s.in_h - 1 : w.iy1;
  w.ix1 = w.ix1 > s.in_w - 1 ? s.in_w - 1 : w.ix1;
  w.ky0 = w.iy0 * s.upy - base_y;
  w.kx0 = w.ix0 * s.upx - base_x;
  return w;
}

// Correlation tap g[ky][kx] from the caller's filter f: the outer product f[y] * f[x] of a 1-D (separable) filter or
// f[y][x] of a 2-D one, flipped on both axes for a true convolution unless flip_filter, times the gain.
template <typename acc_t>
SG_HOSTDEV acc_t correlation_tap(const acc_t* f, int taps_h, int taps_w, bool separable, bool flip_filter, acc_t gain,
                                 int ky, int kx) {
  const int fy = flip_filter ? ky : taps_h - 1 - ky;
  const int fx = flip_filter ? kx : taps_w - 1 - kx;
  return (separable ? f[fy] * f[fx] : f[fy * taps_w + fx]) * gain;
}

// One output sample of one image plane, from the correlation taps g[taps_h][taps_w].
template <typename scalar_t, typename acc_t>
SG_HOSTDEV acc_t upfirdn2d_sum(const scalar_t* plane, const acc_t* g, const UpfirdnShape& s, const UpfirdnWindow& w) {
  acc_t sum = acc_t(0);
  for (int iy = w.iy0, ky = w.ky0; iy <= w.iy1; ++iy, ky += s.upy) {
    const acc_t* g_row = g + ky * s.taps_w;
    const scalar_t* x_row = plane + static_cast<int64_t>(iy) * s.in_w;
    for (int ix = w.ix0, kx = w.kx0; ix <= w.ix1; ++ix, kx += s.upx) {
      sum += static_cast<acc_t>(x_row[ix]) * g_row[kx];
    }
  }
  return sum;
}

}  // namespace sg_ops
