// The spiking scan of neurons.py (neuron, then optional dropout and IIR filter) as an XLA FFI kernel for CPU.
//
// XLA runs a `lax.scan` as a loop over T whose body is several separate passes over all B x F elements (no
// multi-output fusion on CPU): each pass re-reads the step's inputs and the carried state from memory. Here the
// loops are the other way round: a block of elements is carried through all T steps in local arrays, so the
// state stays in cache and every [T, N] array is read or written once. The float operations are those of
// neurons._forward_step and neurons._scan_bwd in the same order (with FMA contraction, as XLA CPU compiles
// them), so the forward pass is bit-identical to the XLA route; the backward pass multiplies by reciprocals
// where neurons.py divides by a constant (an ulp apart). tests/test_native_scan.py checks both passes.
//
// Arrays: the step arrays are [T, B, F] (N = B x F elements per step, time-major); the per-element parameters are
// [F] (element n uses n % F); states and accumulators are [N]; an absent optional array is passed with no
// elements. Element type float32 or float64 (the golden checks), the spike counts always float32.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "blocks.h"

namespace iirsnn {
namespace {

// ---------------------------------------------------------------------------------------------------------
// Surrogate slopes (surrogate.py), evaluated in the backward kernel: a precomputed [T, N] slope would be one
// more pass over memory per layer. The order of surrogate.SURROGATES; results agree with XLA's to an ulp or two
// (its exp is another polynomial), which only the gradients see. Divisions by constants are multiplications by
// their reciprocals: a vector division costs several multiplications' time, and with ten of them per element
// the backward kernel was bound by the divider (snn_conv_1_mnist's backward kernels 1.2-1.3x faster without).
// ---------------------------------------------------------------------------------------------------------
enum Surrogate : int64_t { kGaussian = 0, kFastSigmoid = 1, kAtan = 2, kTriangle = 3 };

// exp(x) for x <= 0, plain arithmetic so that gcc vectorises the loop around it: x = n ln2 + r, |r| <= ln2 / 2,
// exp(r) by its Taylor series (float: degree 7, double: degree 13; truncation below half an ulp), times 2^n
// built in the exponent bits. Below the smallest normal result it returns 0.
template <typename R>
inline R ExpNonPositive(R x) {
  constexpr bool kFloat = sizeof(R) == 4;
  using Int = std::conditional_t<kFloat, int32_t, int64_t>;
  const R lowest = kFloat ? R(-87.0) : R(-708.0);
  const bool zero = x < lowest;
  x = x < lowest ? lowest : x;
  const R n = std::floor(x * R(1.4426950408889634) + R(0.5));
  const R r = (x - n * R(6.93147180369123816490e-01)) - n * R(1.90821492927058770002e-10);
  R p = R(1);
  constexpr int kDegree = kFloat ? 7 : 13;
  for (int k = kDegree; k >= 1; --k) p = R(1) + p * r * R(1.0 / k);  // Horner on 1 + r/1 (1 + r/2 (1 + ...))
  const Int bits = (static_cast<Int>(n) + (kFloat ? 127 : 1023)) << (kFloat ? 23 : 52);
  R scale;
  std::memcpy(&scale, &bits, sizeof(R));
  return zero ? R(0) : p * scale;
}

// A surrogate and its constants in R, the reciprocals taken once per kernel call (Slopes runs per chunk).
template <typename R>
struct SlopeParams {
  int64_t kind;
  R threshold, over_w, over_twice_var, over_norm, half_over_w, pi_over_two_w;
};

template <typename R>
SlopeParams<R> MakeSlopeParams(int64_t kind, R threshold, double width) {
  return {kind, threshold, R(1) / static_cast<R>(width), R(1) / static_cast<R>(2.0 * width * width),
          R(1) / static_cast<R>(2.506628 * width), static_cast<R>(0.5 / width),
          static_cast<R>(3.141592653589793) / static_cast<R>(2.0 * width)};
}

// slope[i] = surrogate'(v[i] - threshold), the formulas of surrogate.py.
template <typename R>
void Slopes(R* __restrict__ slope, const R* __restrict__ v, int64_t m, const SlopeParams<R>& p) {
  const R threshold = p.threshold;
  switch (p.kind) {
    case kGaussian:
      for (int64_t i = 0; i < m; ++i) {
        const R x = v[i] - threshold;
        slope[i] = ExpNonPositive(-(x * x) * p.over_twice_var) * p.over_norm;
      }
      break;
    case kFastSigmoid:
      for (int64_t i = 0; i < m; ++i) {
        const R d = R(1) + std::abs(v[i] - threshold) * p.over_w;
        slope[i] = R(1) / (d * d);
      }
      break;
    case kAtan:
      for (int64_t i = 0; i < m; ++i) {
        const R u = (v[i] - threshold) * p.pi_over_two_w;
        slope[i] = p.half_over_w / (R(1) + u * u);
      }
      break;
    default:  // kTriangle
      for (int64_t i = 0; i < m; ++i) {
        const R u = R(1) - std::abs(v[i] - threshold) * p.over_w;
        slope[i] = (u > R(0) ? u : R(0)) * p.over_w;
      }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Forward: v = I + bias - r (+ decay_v v[t-1] first, with the membrane filter); s = v > threshold;
// r = reset_decay r + reset_v s; x = dropout(s); y = a1 y[t-1] + a2 y[t-2] + b x (order 2) or a1 y[t-1] + x.
// ---------------------------------------------------------------------------------------------------------
template <typename R>
struct ForwardArgs {
  Shape shape;
  const R *current, *bias, *reset_decay, *reset_v, *decay_v, *a1, *a2, *b;
  const uint8_t* keep;  // XLA PRED: one byte each (read as bytes: a bool load is not vectorised)
  const R *v0, *r0, *y1_0, *y2_0;
  R *out, *v_out, *spikes;  // v_out is the current's buffer (XLA aliases them): element i is read, then written
  float* counts;
  R *v_final, *r_final, *y1_final, *y2_final;
  // keep_scale = 1 / (1 - dropout rate): s / (1 - rate) is s times it exactly, s being 0 or 1 (the XLA route
  // divides)
  R threshold, keep_scale;
};

template <typename R, int kOrder, bool kKeep, bool kMembrane>
void ForwardBlock(const ForwardArgs<R>& a, int64_t block) {
  const int64_t n0 = block * kBlock, m = std::min(kBlock, a.shape.n - n0), n = a.shape.n, f = a.shape.features;
  R v[kBlock], r[kBlock], y1[kBlock], y2[kBlock], bias[kBlock], rd[kBlock], rv[kBlock], dv[kBlock];
  R c1[kBlock], c2[kBlock], cb[kBlock];
  float counts[kBlock];
  LoadState(v, a.v0, n0, m);
  LoadState(r, a.r0, n0, m);
  LoadState(y1, a.y1_0, n0, m);
  LoadState(y2, a.y2_0, n0, m);
  LoadFeatures(bias, a.bias, n0, m, f, R(0));
  LoadFeatures(rd, a.reset_decay, n0, m, f, R(0));
  LoadFeatures(rv, a.reset_v, n0, m, f, R(0));
  LoadFeatures(dv, a.decay_v, n0, m, f, R(0));
  LoadFeatures(c1, a.a1, n0, m, f, R(0));
  LoadFeatures(c2, a.a2, n0, m, f, R(0));
  LoadFeatures(cb, a.b, n0, m, f, R(0));
  std::fill(counts, counts + m, 0.0f);
  const R threshold = a.threshold, keep_scale = a.keep_scale;
  // Absent outputs are written to a scratch row: branch-free stores keep the loop vectorised.
  R scratch_v[kBlock], scratch_s[kBlock];
  for (int64_t t = 0; t < a.shape.length; ++t) {
    const int64_t at = t * n + n0;
    const R* __restrict__ current = a.current + at;
    const uint8_t* __restrict__ keep = kKeep ? a.keep + at : nullptr;
    R* __restrict__ out = a.out + at;
    R* __restrict__ v_out = a.v_out ? a.v_out + at : scratch_v;
    R* __restrict__ spikes = a.spikes ? a.spikes + at : scratch_s;
#pragma GCC ivdep
    for (int64_t i = 0; i < m; ++i) {
      const R in = current[i] + bias[i];
      const R vt = kMembrane ? dv[i] * v[i] + in - r[i] : in - r[i];
      const R s = vt > threshold ? R(1) : R(0);
      r[i] = rd[i] * r[i] + rv[i] * s;
      counts[i] += static_cast<float>(s);
      v[i] = vt;
      R o = s;
      if constexpr (kOrder > 0) {
        const R scaled = s * keep_scale;  // unconditional: keeps the loop branch-free, so vectorised
        const R x = kKeep ? (keep[i] != 0 ? scaled : R(0)) : s;
        if constexpr (kOrder == 2) {
          o = c1[i] * y1[i] + c2[i] * y2[i] + cb[i] * x;
          y2[i] = y1[i];
        } else {
          o = c1[i] * y1[i] + x;
        }
        y1[i] = o;
      }
      out[i] = o;
      v_out[i] = vt;
      spikes[i] = s;
    }
  }
  std::copy(counts, counts + m, a.counts + n0);
  std::copy(v, v + m, a.v_final + n0);
  std::copy(r, r + m, a.r_final + n0);
  if (a.y1_final) std::copy(y1, y1 + m, a.y1_final + n0);
  if (a.y2_final) std::copy(y2, y2 + m, a.y2_final + n0);
}

// ---------------------------------------------------------------------------------------------------------
// Backward (the reverse scan of neurons._scan_bwd, with the filter's adjoint of recurrence.adjoint_step):
// lam = ct_y + a1 lam[t+1] + a2 lam[t+2]; g1 += lam[t+1] y; g2 += lam[t+2] y; gb += lam x;
// ct_s = ct_counts + dropout'(b lam) (+ ct_spikes); gv = slope (ct_s + reset_v gr) (+ gvm or ct_v_final);
// gvm = decay_v gv; gr = reset_decay gr - gv.
// ---------------------------------------------------------------------------------------------------------
// A 2x2, stride-2 max-pool after the filter (see RoutePool); padding 0 or 1, out_h x out_w windows.
struct Pool {
  int64_t padding, height, width, channels, out_h, out_w;
};

template <typename R>
struct BackwardArgs {
  Shape shape;
  const R *ct_out, *ct_spikes, *v, *y;
  const uint8_t* keep;  // XLA PRED: one byte each (read as bytes: a bool load is not vectorised)
  const R *reset_decay, *reset_v, *decay_v, *a1, *a2, *b, *ct_counts;
  const R *ct_v_final, *ct_r_final, *ct_y1_final, *ct_y2_final;
  R *ct_current, *ct_v0, *ct_r0, *lam1, *lam2, *g1, *g2, *gb;  // ct_current is v's buffer: read, then written
  R* ct_current_sum;  // [N]: ct_current summed over T (the bias gradient before the sum over B), or null
  R threshold, keep_scale;  // keep_scale as in ForwardArgs
  SlopeParams<R> slope;
  // With a 2x2 max-pool after the filter: ct_out is the pooled output's cotangent [T, B, H', W', C], pooled the
  // pooled output itself; null without.
  const R* pooled;
  Pool pool;
};

// ---------------------------------------------------------------------------------------------------------
// A 2x2, stride-2 max-pool after the filter (pooling.py's rule): each window's cotangent goes to its FIRST
// maximum in row-major window order; padded cells (minus infinity) never win. The backward kernel routes it
// itself, so the [T, B, H, W, C] cotangent of the unpooled output is never written. A block is cut into runs
// of one pixel's channels: within a run the window position, the pooled index and the earlier elements of the
// window to look at are the same, so the routing is a vectorised loop over channels.
// ---------------------------------------------------------------------------------------------------------
struct PoolRun {
  int64_t start, length;  // in the block
  int64_t base;           // pooled index of the run's first element (within a step), or -1: in no window
  int64_t earlier[3];     // element offsets of the window's earlier real elements (row-major order)
  int count;
};

// The runs of the block [n0, n0 + m) of a step of B x H x W x C elements.
inline int64_t PoolRuns(PoolRun* runs, const Pool& p, int64_t n0, int64_t m) {
  const int64_t per_sample = p.height * p.width * p.channels, row = p.width * p.channels;
  const int64_t pooled_sample = p.out_h * p.out_w * p.channels;
  int64_t count = 0;
  for (int64_t i = 0; i < m;) {
    const int64_t e = n0 + i, sample = e / per_sample, r = e % per_sample;
    const int64_t h = r / row, w = (r / p.channels) % p.width, c = r % p.channels;
    PoolRun& run = runs[count++];
    run.start = i;
    run.length = std::min(p.channels - c, m - i);
    const int64_t hp = h + p.padding, wp = w + p.padding, wh = hp / 2, ww = wp / 2;
    run.base = wh < p.out_h && ww < p.out_w ? sample * pooled_sample + (wh * p.out_w + ww) * p.channels + c : -1;
    run.count = 0;
    auto add = [&](int64_t dh, int64_t dw) {
      if (h + dh >= 0 && w + dw >= 0 && w + dw < p.width) run.earlier[run.count++] = dh * row + dw * p.channels;
    };
    if (hp % 2 == 0 && wp % 2 == 1) add(0, -1);
    if (hp % 2 == 1 && wp % 2 == 0) add(-1, 0), add(-1, 1);
    if (hp % 2 == 1 && wp % 2 == 1) add(-1, -1), add(-1, 0), add(0, -1);
    i += run.length;
  }
  return count;
}

// routed[i] = the cotangent element i of the unpooled output takes at step t (y_step, pooled_step, ct_step: the
// step's rows of y [B x F], the pooled output and its cotangent [B x F']).
template <typename R>
void RoutePool(R* __restrict__ routed, const PoolRun* runs, int64_t count, int64_t n0, const R* y_step,
               const R* pooled_step, const R* ct_step, const R* nan_row) {
  for (int64_t k = 0; k < count; ++k) {
    const PoolRun& run = runs[k];
    R* __restrict__ dst = routed + run.start;
    if (run.base < 0) {
      std::fill(dst, dst + run.length, R(0));
      continue;
    }
    const R* __restrict__ y = y_step + n0 + run.start;
    const R* __restrict__ o = pooled_step + run.base;
    const R* __restrict__ g = ct_step + run.base;
    // an absent earlier element reads NaN, which equals nothing
    const R* __restrict__ e0 = run.count > 0 ? y + run.earlier[0] : nan_row;
    const R* __restrict__ e1 = run.count > 1 ? y + run.earlier[1] : nan_row;
    const R* __restrict__ e2 = run.count > 2 ? y + run.earlier[2] : nan_row;
    for (int64_t c = 0; c < run.length; ++c) {
      const bool taken = (e0[c] == o[c]) | (e1[c] == o[c]) | (e2[c] == o[c]);  // not ||: vectorised
      dst[c] = (y[c] == o[c]) & !taken ? g[c] : R(0);
    }
  }
}

constexpr int64_t kChunk = 128;  // elements whose surrogate slopes are computed at once

template <typename R, int kOrder, bool kKeep, bool kMembrane>
void BackwardBlock(const BackwardArgs<R>& a, int64_t block) {
  const int64_t n0 = block * kBlock, m = std::min(kBlock, a.shape.n - n0), n = a.shape.n, f = a.shape.features;
  const int64_t per_sample = n / a.shape.batch, length = a.shape.length;
  R gr[kBlock], gvm[kBlock], l1[kBlock], l2[kBlock], g1[kBlock], g2[kBlock], gb[kBlock], gi[kBlock];
  R rd[kBlock], rv[kBlock], dv[kBlock], c1[kBlock], c2[kBlock], cb[kBlock], ct_counts[kBlock];
  LoadState(gr, a.ct_r_final, n0, m);
  LoadState(gvm, kMembrane ? a.ct_v_final : nullptr, n0, m);
  std::fill(l1, l1 + m, R(0));
  std::fill(l2, l2 + m, R(0));
  std::fill(g1, g1 + m, R(0));
  std::fill(g2, g2 + m, R(0));
  std::fill(gb, gb + m, R(0));
  std::fill(gi, gi + m, R(0));
  LoadFeatures(rd, a.reset_decay, n0, m, f, R(0));
  LoadFeatures(rv, a.reset_v, n0, m, f, R(0));
  LoadFeatures(dv, a.decay_v, n0, m, f, R(0));
  LoadFeatures(c1, a.a1, n0, m, f, R(0));
  LoadFeatures(c2, a.a2, n0, m, f, R(0));
  LoadFeatures(cb, a.b, n0, m, f, R(0));
  for (int64_t i = 0, sample = n0 / per_sample, k = n0 % per_sample; i < m; ++i) {
    ct_counts[i] = a.ct_counts[sample];
    if (++k == per_sample) k = 0, ++sample;
  }
  const R threshold = a.threshold, keep_scale = a.keep_scale;
  // Absent inputs read a zero row (the XLA route adds zeros there too): branch-free, vectorised loop.
  R zeros[kBlock];
  std::fill(zeros, zeros + m, R(0));
  PoolRun runs[kBlock];
  R routed[kBlock], nan_row[kBlock];
  const int64_t run_count = a.pooled ? PoolRuns(runs, a.pool, n0, m) : 0;
  const int64_t pooled_n = a.pooled ? n / (a.pool.height * a.pool.width) * a.pool.out_h * a.pool.out_w : 0;
  if (a.pooled) std::fill(nan_row, nan_row + m, std::numeric_limits<R>::quiet_NaN());
  for (int64_t t = length - 1; t >= 0; --t) {
    const int64_t at = t * n + n0;
    if (a.pooled) RoutePool(routed, runs, run_count, n0, a.y + t * n, a.pooled + t * pooled_n, a.ct_out + t * pooled_n,
                            nan_row);
    const R* __restrict__ ct_out = a.pooled ? routed : a.ct_out + at;
    const R* __restrict__ v = a.v + at;
    const R* __restrict__ y = kOrder > 0 ? a.y + at : zeros;
    const R* __restrict__ ct_spikes = a.ct_spikes ? a.ct_spikes + at : zeros;
    const uint8_t* __restrict__ keep = kKeep ? a.keep + at : nullptr;
    // The final states' cotangents join at the step that produced them (recurrence.final_cotangent).
    const R* final_y = t == length - 1 ? a.ct_y1_final : (kOrder == 2 && t == length - 2 ? a.ct_y2_final : nullptr);
    const R* __restrict__ ct_final_y = final_y ? final_y + n0 : zeros;
    const R* __restrict__ ct_final_v = t == length - 1 && a.ct_v_final ? a.ct_v_final + n0 : zeros;
    R* __restrict__ ct_current = a.ct_current + at;
    // The slopes of a chunk at a time, written and read back while in L1: a whole row of them, written by one
    // loop and read by the next, made snn_conv_1_mnist's backward kernels 1.1-1.3x slower.
    for (int64_t c0 = 0; c0 < m; c0 += kChunk) {
      const int64_t end = std::min(m, c0 + kChunk);
      R slope[kChunk];  // slope[i - c0]
      Slopes(slope, v + c0, end - c0, a.slope);
#pragma GCC ivdep
      for (int64_t i = c0; i < end; ++i) {
        const R s = v[i] > threshold ? R(1) : R(0);
        R ct_s = ct_counts[i];
        if constexpr (kOrder > 0) {
          const R ct_y = ct_out[i] + ct_final_y[i];
          const R scaled = s * keep_scale;
          const R x = kKeep ? (keep[i] != 0 ? scaled : R(0)) : s;
          R ct_x;
          if constexpr (kOrder == 2) {
            const R lam = ct_y + c1[i] * l1[i] + c2[i] * l2[i];
            g1[i] = g1[i] + l1[i] * y[i];
            g2[i] = g2[i] + l2[i] * y[i];
            gb[i] = gb[i] + lam * x;
            ct_x = cb[i] * lam;
            l2[i] = l1[i];
            l1[i] = lam;
          } else {
            const R lam = ct_y + c1[i] * l1[i];
            g1[i] = g1[i] + l1[i] * y[i];
            ct_x = lam;
            l1[i] = lam;
          }
          const R ct_scaled = ct_x * keep_scale;
          ct_s = ct_s + (kKeep ? (keep[i] != 0 ? ct_scaled : R(0)) : ct_x);
          ct_s = ct_s + ct_spikes[i];
        } else {
          ct_s = ct_s + ct_out[i];
        }
        const R gs = ct_s + rv[i] * gr[i];
        R gv = slope[i - c0] * gs;
        if constexpr (kMembrane) {
          gv = gv + gvm[i];
          gvm[i] = dv[i] * gv;
        } else {
          gv = gv + ct_final_v[i];
        }
        gr[i] = rd[i] * gr[i] - gv;
        ct_current[i] = gv;
        gi[i] = gi[i] + gv;
      }
    }
  }
  std::copy(gr, gr + m, a.ct_r0 + n0);
  // summed while ct_current is in registers: XLA's sum over T would read the whole [T, N] array again
  if (a.ct_current_sum) std::copy(gi, gi + m, a.ct_current_sum + n0);
  if (kMembrane) {
    std::copy(gvm, gvm + m, a.ct_v0 + n0);
  } else {
    std::fill(a.ct_v0 + n0, a.ct_v0 + n0 + m, R(0));
  }
  if constexpr (kOrder > 0) {
    std::copy(l1, l1 + m, a.lam1 + n0);
    std::copy(g1, g1 + m, a.g1 + n0);
  }
  if constexpr (kOrder == 2) {
    std::copy(l2, l2 + m, a.lam2 + n0);
    std::copy(g2, g2 + m, a.g2 + n0);
    std::copy(gb, gb + m, a.gb + n0);
  }
}

// Picks the instantiation for the runtime flags and runs it over all blocks.
template <template <typename, int, bool, bool> class Kernel, typename R, typename Args>
void Dispatch(ffi::ThreadPool& pool, const Args& args, int64_t order, bool keep, bool membrane) {
  const int64_t blocks = (args.shape.n + kBlock - 1) / kBlock;
  auto run = [&](void (*fn)(const Args&, int64_t)) {
    ParallelBlocks(pool, blocks, [&args, fn](int64_t b) { fn(args, b); });
  };
#define IIRSNN_CASE(O, K, M) \
  if (order == O && keep == K && membrane == M) return run(&Kernel<R, O, K, M>::Run);
  IIRSNN_CASE(0, false, false) IIRSNN_CASE(0, false, true) IIRSNN_CASE(0, true, false) IIRSNN_CASE(0, true, true)
  IIRSNN_CASE(1, false, false) IIRSNN_CASE(1, false, true) IIRSNN_CASE(1, true, false) IIRSNN_CASE(1, true, true)
  IIRSNN_CASE(2, false, false) IIRSNN_CASE(2, false, true) IIRSNN_CASE(2, true, false) IIRSNN_CASE(2, true, true)
#undef IIRSNN_CASE
}

template <typename R, int O, bool K, bool M>
struct Forward {
  static void Run(const ForwardArgs<R>& a, int64_t b) { ForwardBlock<R, O, K, M>(a, b); }
};
template <typename R, int O, bool K, bool M>
struct Backward {
  static void Run(const BackwardArgs<R>& a, int64_t b) { BackwardBlock<R, O, K, M>(a, b); }
};

ffi::Error CheckCommon(const ffi::AnyBuffer& steps, int64_t order, int64_t batch, int64_t features) {
  if (steps.element_type() != ffi::DataType::F32 && steps.element_type() != ffi::DataType::F64)
    return ffi::Error::InvalidArgument("spiking scan: float32 or float64 arrays expected");
  if (order < 0 || order > 2) return ffi::Error::InvalidArgument("spiking scan: filter order must be 0, 1 or 2");
  const int64_t count = static_cast<int64_t>(steps.element_count());
  if (batch <= 0 || features <= 0 || count <= 0 || count % (batch * features) != 0)
    return ffi::Error::InvalidArgument("spiking scan: step arrays must hold T x batch x features elements, T > 0");
  return ffi::Error::Success();
}

const uint8_t* Keep(const ffi::AnyBuffer& keep) {
  return keep.element_count() ? static_cast<const uint8_t*>(keep.untyped_data()) : nullptr;
}

// The step arrays' shape: [T, B, F] in memory, whatever dimensions XLA gives them (the current arrives as
// [T B, *F], the shape of the matmul or conv that made it, so that it can be aliased without a copy).
Shape StepShape(const ffi::AnyBuffer& steps, int64_t batch, int64_t features) {
  const int64_t n = batch * features;
  return {static_cast<int64_t>(steps.element_count()) / n, n, features, batch};
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer current, ffi::AnyBuffer bias,
                       ffi::AnyBuffer reset_decay, ffi::AnyBuffer reset_v, ffi::AnyBuffer decay_v,
                       ffi::AnyBuffer a1, ffi::AnyBuffer a2, ffi::AnyBuffer b, ffi::AnyBuffer keep,
                       ffi::AnyBuffer v0, ffi::AnyBuffer r0, ffi::AnyBuffer y1_0, ffi::AnyBuffer y2_0,
                       ffi::Result<ffi::AnyBuffer> out, ffi::Result<ffi::AnyBuffer> v_out,
                       ffi::Result<ffi::AnyBuffer> spikes, ffi::Result<ffi::AnyBuffer> counts,
                       ffi::Result<ffi::AnyBuffer> v_final, ffi::Result<ffi::AnyBuffer> r_final,
                       ffi::Result<ffi::AnyBuffer> y1_final, ffi::Result<ffi::AnyBuffer> y2_final,
                       int64_t order, bool membrane, int64_t batch, int64_t features, double threshold,
                       double keep_divisor) {
  if (auto error = CheckCommon(current, order, batch, features); error.failure()) return error;
  auto run = [&](auto zero) {
    using R = decltype(zero);
    ForwardArgs<R> args{StepShape(current, batch, features),
                        In<R>(current), In<R>(bias), In<R>(reset_decay), In<R>(reset_v), In<R>(decay_v),
                        In<R>(a1), In<R>(a2), In<R>(b), Keep(keep), In<R>(v0), In<R>(r0), In<R>(y1_0), In<R>(y2_0),
                        Out<R>(out), Out<R>(v_out), Out<R>(spikes), static_cast<float*>(counts->untyped_data()),
                        Out<R>(v_final), Out<R>(r_final), Out<R>(y1_final), Out<R>(y2_final),
                        static_cast<R>(threshold), R(1) / static_cast<R>(keep_divisor)};
    Dispatch<Forward, R>(pool, args, order, args.keep != nullptr, membrane);
  };
  current.element_type() == ffi::DataType::F32 ? run(0.0f) : run(0.0);
  return ffi::Error::Success();
}

ffi::Error BackwardImpl(ffi::ThreadPool thread_pool, ffi::AnyBuffer ct_out, ffi::AnyBuffer ct_spikes,
                        ffi::AnyBuffer v,
                        ffi::AnyBuffer y, ffi::AnyBuffer keep, ffi::AnyBuffer reset_decay,
                        ffi::AnyBuffer reset_v, ffi::AnyBuffer decay_v, ffi::AnyBuffer a1, ffi::AnyBuffer a2,
                        ffi::AnyBuffer b, ffi::AnyBuffer ct_counts, ffi::AnyBuffer ct_v_final,
                        ffi::AnyBuffer ct_r_final, ffi::AnyBuffer ct_y1_final, ffi::AnyBuffer ct_y2_final,
                        ffi::AnyBuffer pooled,
                        ffi::Result<ffi::AnyBuffer> ct_current, ffi::Result<ffi::AnyBuffer> ct_v0,
                        ffi::Result<ffi::AnyBuffer> ct_r0, ffi::Result<ffi::AnyBuffer> lam1,
                        ffi::Result<ffi::AnyBuffer> lam2, ffi::Result<ffi::AnyBuffer> g1,
                        ffi::Result<ffi::AnyBuffer> g2, ffi::Result<ffi::AnyBuffer> gb,
                        ffi::Result<ffi::AnyBuffer> ct_current_sum, int64_t order,
                        bool membrane, int64_t batch, int64_t features, double threshold, double keep_divisor,
                        int64_t surrogate, double width, int64_t pool_padding, int64_t pool_height,
                        int64_t pool_width, int64_t pool_channels) {
  if (auto error = CheckCommon(v, order, batch, features); error.failure()) return error;
  Pool pool{pool_padding, pool_height, pool_width, pool_channels, 0, 0};
  if (pooled.element_count()) {
    if (order == 0 || pool_padding < 0 || pool_padding > 1 || pool_height * pool_width * pool_channels != features)
      return ffi::Error::InvalidArgument(
          "spiking scan: the pool needs a filter, padding 0 or 1 and H x W x C features");
    pool.out_h = (pool_height + 2 * pool_padding - 2) / 2 + 1;
    pool.out_w = (pool_width + 2 * pool_padding - 2) / 2 + 1;
    const int64_t length = static_cast<int64_t>(v.element_count()) / (batch * features);
    const int64_t pooled_count = length * batch * pool.out_h * pool.out_w * pool_channels;
    if (pool.out_h < 1 || pool.out_w < 1 || static_cast<int64_t>(pooled.element_count()) != pooled_count ||
        static_cast<int64_t>(ct_out.element_count()) != pooled_count)
      return ffi::Error::InvalidArgument(
          "spiking scan: the pooled output and its cotangent must be [T, B, H', W', C]");
  }
  if (surrogate < kGaussian || surrogate > kTriangle || !(width > 0))
    return ffi::Error::InvalidArgument("spiking scan: unknown surrogate or width not positive");
  auto run = [&](auto zero) {
    using R = decltype(zero);
    BackwardArgs<R> args{StepShape(v, batch, features),
                         In<R>(ct_out), In<R>(ct_spikes), In<R>(v), In<R>(y), Keep(keep),
                         In<R>(reset_decay), In<R>(reset_v), In<R>(decay_v), In<R>(a1), In<R>(a2), In<R>(b),
                         In<R>(ct_counts), In<R>(ct_v_final), In<R>(ct_r_final), In<R>(ct_y1_final),
                         In<R>(ct_y2_final),
                         Out<R>(ct_current), Out<R>(ct_v0), Out<R>(ct_r0), Out<R>(lam1), Out<R>(lam2), Out<R>(g1),
                         Out<R>(g2), Out<R>(gb), Out<R>(ct_current_sum), static_cast<R>(threshold),
                         R(1) / static_cast<R>(keep_divisor),
                         MakeSlopeParams(surrogate, static_cast<R>(threshold), width), In<R>(pooled), pool};
    Dispatch<Backward, R>(thread_pool, args, order, args.keep != nullptr, membrane);
  };
  v.element_type() == ffi::DataType::F32 ? run(0.0f) : run(0.0);
  return ffi::Error::Success();
}

}  // namespace
}  // namespace iirsnn

namespace ffi = xla::ffi;

#define IIRSNN_ATTRS                                                                               \
  .Attr<int64_t>("order").Attr<bool>("membrane").Attr<int64_t>("batch").Attr<int64_t>("features") \
      .Attr<double>("threshold").Attr<double>("keep_divisor")

XLA_FFI_DEFINE_HANDLER_SYMBOL(IirsnnSpikingScanForward, iirsnn::ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // current [T, N]
                                  .Arg<ffi::AnyBuffer>()  // bias [F]
                                  .Arg<ffi::AnyBuffer>()  // reset_decay [F]
                                  .Arg<ffi::AnyBuffer>()  // reset_v [F]
                                  .Arg<ffi::AnyBuffer>()  // decay_v [F]
                                  .Arg<ffi::AnyBuffer>()  // a1 [F]
                                  .Arg<ffi::AnyBuffer>()  // a2 [F]
                                  .Arg<ffi::AnyBuffer>()  // b [F]
                                  .Arg<ffi::AnyBuffer>()  // keep [T, N] bool
                                  .Arg<ffi::AnyBuffer>()  // v0 [N]
                                  .Arg<ffi::AnyBuffer>()  // r0 [N]
                                  .Arg<ffi::AnyBuffer>()  // y1_0 [N]
                                  .Arg<ffi::AnyBuffer>()  // y2_0 [N]
                                  .Ret<ffi::AnyBuffer>()  // out [T, N]
                                  .Ret<ffi::AnyBuffer>()  // v [T, N]
                                  .Ret<ffi::AnyBuffer>()  // spikes [T, N]
                                  .Ret<ffi::AnyBuffer>()  // counts [N] float32
                                  .Ret<ffi::AnyBuffer>()  // v_final [N]
                                  .Ret<ffi::AnyBuffer>()  // r_final [N]
                                  .Ret<ffi::AnyBuffer>()  // y1_final [N]
                                  .Ret<ffi::AnyBuffer>()  // y2_final [N]
                                      IIRSNN_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(IirsnnSpikingScanBackward, iirsnn::BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // ct_out [T, N] (with the pool [T, B, H', W', C])
                                  .Arg<ffi::AnyBuffer>()  // ct_spikes [T, N]
                                  .Arg<ffi::AnyBuffer>()  // v [T, N]
                                  .Arg<ffi::AnyBuffer>()  // y [T, N] (the filter's output)
                                  .Arg<ffi::AnyBuffer>()  // keep [T, N] bool
                                  .Arg<ffi::AnyBuffer>()  // reset_decay [F]
                                  .Arg<ffi::AnyBuffer>()  // reset_v [F]
                                  .Arg<ffi::AnyBuffer>()  // decay_v [F]
                                  .Arg<ffi::AnyBuffer>()  // a1 [F]
                                  .Arg<ffi::AnyBuffer>()  // a2 [F]
                                  .Arg<ffi::AnyBuffer>()  // b [F]
                                  .Arg<ffi::AnyBuffer>()  // ct_counts [B]
                                  .Arg<ffi::AnyBuffer>()  // ct_v_final [N]
                                  .Arg<ffi::AnyBuffer>()  // ct_r_final [N]
                                  .Arg<ffi::AnyBuffer>()  // ct_y1_final [N]
                                  .Arg<ffi::AnyBuffer>()  // ct_y2_final [N]
                                  .Arg<ffi::AnyBuffer>()  // pooled [T, B, H', W', C] (or no elements)
                                  .Ret<ffi::AnyBuffer>()  // ct_current [T, N]
                                  .Ret<ffi::AnyBuffer>()  // ct_v0 [N]
                                  .Ret<ffi::AnyBuffer>()  // ct_r0 [N]
                                  .Ret<ffi::AnyBuffer>()  // lam1 = lam[0] [N]
                                  .Ret<ffi::AnyBuffer>()  // lam2 = lam[1] [N]
                                  .Ret<ffi::AnyBuffer>()  // g1 [N]
                                  .Ret<ffi::AnyBuffer>()  // g2 [N]
                                  .Ret<ffi::AnyBuffer>()  // gb [N]
                                  .Ret<ffi::AnyBuffer>()  // ct_current_sum [N] (or no elements)
                                      IIRSNN_ATTRS.Attr<int64_t>("surrogate").Attr<double>("width")
                                          .Attr<int64_t>("pool_padding").Attr<int64_t>("pool_height")
                                          .Attr<int64_t>("pool_width").Attr<int64_t>("pool_channels"));
