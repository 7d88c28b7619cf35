// CPU stand-in for the compiled ops, for tests on machines without a GPU.
//
// It runs the exact per-element code of the CUDA kernels (stylegan_core/ops/cuda/sg_ops_math.h) in plain loops, so
// the arithmetic, the index math and the Python autograd wiring are checked on CPU; only the kernels' thread mapping
// and launch code stay for the GPU tests. Built by tests/test_ops_cuda_host.py with g++ and called through ctypes.
#include <stdint.h>

#include <vector>

#include "sg_ops_math.h"

namespace {

// The kernel's grid-stride loop, run by `threads` simulated threads one after another, so that the bias index walker
// is exercised with the same starts and steps it sees on the GPU.
template <typename T>
int bias_act_host(const T* x, const T* b, const T* xref, const T* yref, const T* dy, T* out, int64_t numel,
                  int64_t bias_stride, int64_t bias_size, int mode, int act, int ref_is_x, double alpha, double gain,
                  double clamp, int64_t threads) {
  bool known = sg_ops::dispatch_activation(act, [&](auto tag) {
    constexpr int kAct = decltype(tag)::value;
    for (int64_t first = 0; first < threads; ++first) {
      sg_ops::BiasIndexWalker bias_index(first, threads, bias_stride, bias_size);
      for (int64_t i = first; i < numel; i += threads, bias_index.advance()) {
        T bias = b ? b[bias_index.index] : T(0);
        out[i] = sg_ops::bias_act_element<kAct, T>(mode, x[i], bias, xref ? xref[i] : T(0), yref ? yref[i] : T(0),
                                                   dy ? dy[i] : T(0), ref_is_x != 0, T(alpha), T(gain), T(clamp));
      }
    }
  });
  return known ? 0 : 1;
}

template <typename T>
void upfirdn2d_host(const T* x, const T* f, T* y, int64_t planes, const sg_ops::UpfirdnShape& s, bool separable,
                    bool flip_filter, T gain) {
  std::vector<T> taps(static_cast<size_t>(s.taps_h) * s.taps_w);  // what each CUDA block stages in shared memory
  for (int k = 0; k < s.taps_h * s.taps_w; ++k) {
    taps[k] = sg_ops::correlation_tap(f, s.taps_h, s.taps_w, separable, flip_filter, gain, k / s.taps_w, k % s.taps_w);
  }
  for (int oy = 0; oy < s.out_h; ++oy) {
    for (int ox = 0; ox < s.out_w; ++ox) {
      const sg_ops::UpfirdnWindow window = sg_ops::upfirdn_window(s, oy, ox);
      for (int64_t p = 0; p < planes; ++p) {
        const T* plane = x + p * s.in_h * s.in_w;
        y[(p * s.out_h + oy) * s.out_w + ox] = sg_ops::upfirdn2d_sum<T, T>(plane, taps.data(), s, window);
      }
    }
  }
}

sg_ops::UpfirdnShape make_shape(int in_h, int in_w, int taps_h, int taps_w, int upx, int upy, int downx, int downy,
                                int padx0, int padx1, int pady0, int pady1) {
  sg_ops::UpfirdnShape s;
  s.in_h = in_h;
  s.in_w = in_w;
  s.taps_h = taps_h;
  s.taps_w = taps_w;
  s.upx = upx;
  s.upy = upy;
  s.downx = downx;
  s.downy = downy;
  s.padx0 = padx0;
  s.pady0 = pady0;
  s.out_w = static_cast<int>(sg_ops::upfirdn_out_size(in_w, upx, padx0, padx1, taps_w, downx));
  s.out_h = static_cast<int>(sg_ops::upfirdn_out_size(in_h, upy, pady0, pady1, taps_h, downy));
  return s;
}

}  // namespace

extern "C" {

#define SG_BIAS_ACT_HOST(SUFFIX, T)                                                                               \
  int sg_host_bias_act_##SUFFIX(const T* x, const T* b, const T* xref, const T* yref, const T* dy, T* out,       \
                                int64_t numel, int64_t bias_stride, int64_t bias_size, int mode, int act,         \
                                int ref_is_x, double alpha, double gain, double clamp, int64_t threads) {         \
    return bias_act_host<T>(x, b, xref, yref, dy, out, numel, bias_stride, bias_size, mode, act, ref_is_x, alpha, \
                            gain, clamp, threads);                                                                \
  }
SG_BIAS_ACT_HOST(f32, float)
SG_BIAS_ACT_HOST(f64, double)

// Output size along one axis, the same function the CUDA launcher uses.
int64_t sg_host_upfirdn_out_size(int64_t in, int up, int pad0, int pad1, int taps, int down) {
  return sg_ops::upfirdn_out_size(in, up, pad0, pad1, taps, down);
}

#define SG_UPFIRDN_HOST(SUFFIX, T)                                                                                  \
  void sg_host_upfirdn2d_##SUFFIX(const T* x, const T* f, T* y, int64_t planes, int in_h, int in_w, int taps_h,     \
                                  int taps_w, int upx, int upy, int downx, int downy, int padx0, int padx1,         \
                                  int pady0, int pady1, int separable, int flip_filter, double gain) {              \
    upfirdn2d_host<T>(x, f, y, planes,                                                                              \
                      make_shape(in_h, in_w, taps_h, taps_w, upx, upy, downx, downy, padx0, padx1, pady0, pady1),   \
                      separable != 0, flip_filter != 0, T(gain));                                                   \
  }
SG_UPFIRDN_HOST(f32, float)
SG_UPFIRDN_HOST(f64, double)

}  // extern "C"
