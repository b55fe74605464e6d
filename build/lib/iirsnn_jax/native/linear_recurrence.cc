// The filters' linear recurrence (recurrence.py, the sequential solver) as an XLA FFI kernel for CPU:
//
//   order 2: y[t] = a1 y[t-1] + a2 y[t-2] + b x[t]        order 1: y[t] = a1 y[t-1] + x[t]
//
// and its adjoint (lam[t] = ct[t] + a1 lam[t+1] + a2 lam[t+2]; the coefficient gradients accumulated per element,
// d/dx[t] = b lam[t]), in recurrence.step's and recurrence.adjoint_step's float order, for the filters that do not
// share a spiking scan (a network's input filter, filters after pooling). As in spiking_scan.cc, a block of
// elements is carried through all T steps. A block never crosses a sample, so x may also be batch-major
// ([B, T, F], read in place, as recurrence._sequential reads it): each row of a block is contiguous either way.
//
// Arrays: y and its cotangent [T, B, F]; x and its cotangent [T, B, F] or [B, T, F] (attribute batch_major);
// coefficients [F]; states and accumulators [B, F]; absent ones have no elements.
#include <algorithm>
#include <cstdint>

#include "blocks.h"

namespace iirsnn {
namespace {

template <typename R>
struct RecurrenceArgs {
  int64_t length, batch, features;
  bool batch_major;
  const R *x, *a1, *a2, *b;
  const R *init1, *init2;            // forward: y[-1], y[-2]
  const R *y, *ct_y, *ct1, *ct2;     // backward: y, its cotangent, the final states' cotangents
  R *out;                            // forward: y; backward: d/dx in x's layout
  R *final1, *final2;                // forward: y[T-1], y[T-2]; backward: lam[0], lam[1]
  R *g1, *g2, *gb;                   // backward: the per-element coefficient gradients
};

// Row t of a block that starts at element (sample, f0): the offset in a time-major or batch-major array.
inline int64_t Row(int64_t t, int64_t sample, int64_t f0, int64_t length, int64_t batch, int64_t features,
                   bool batch_major) {
  return batch_major ? (sample * length + t) * features + f0 : (t * batch + sample) * features + f0;
}

template <typename R, int kOrder>
void ForwardBlock(const RecurrenceArgs<R>& a, int64_t block) {
  const int64_t per_sample = (a.features + kBlock - 1) / kBlock;
  const int64_t sample = block / per_sample, f0 = (block % per_sample) * kBlock;
  const int64_t m = std::min(kBlock, a.features - f0), n0 = sample * a.features + f0;
  R y1[kBlock], y2[kBlock], c1[kBlock], c2[kBlock], cb[kBlock];
  LoadState(y1, a.init1, n0, m);
  LoadState(y2, a.init2, n0, m);
  LoadFeatures(c1, a.a1, f0, m, a.features, R(0));
  LoadFeatures(c2, a.a2, f0, m, a.features, R(0));
  LoadFeatures(cb, a.b, f0, m, a.features, R(0));
  for (int64_t t = 0; t < a.length; ++t) {
    const R* __restrict__ x = a.x + Row(t, sample, f0, a.length, a.batch, a.features, a.batch_major);
    R* __restrict__ y = a.out + Row(t, sample, f0, a.length, a.batch, a.features, false);
#pragma GCC ivdep
    for (int64_t i = 0; i < m; ++i) {
      if constexpr (kOrder == 2) {
        const R now = c1[i] * y1[i] + c2[i] * y2[i] + cb[i] * x[i];
        y2[i] = y1[i];
        y1[i] = now;
      } else {
        y1[i] = c1[i] * y1[i] + x[i];
      }
      y[i] = y1[i];
    }
  }
  std::copy(y1, y1 + m, a.final1 + n0);
  if (kOrder == 2) std::copy(y2, y2 + m, a.final2 + n0);
}

template <typename R, int kOrder>
void BackwardBlock(const RecurrenceArgs<R>& a, int64_t block) {
  const int64_t per_sample = (a.features + kBlock - 1) / kBlock;
  const int64_t sample = block / per_sample, f0 = (block % per_sample) * kBlock;
  const int64_t m = std::min(kBlock, a.features - f0), n0 = sample * a.features + f0, length = a.length;
  R l1[kBlock], l2[kBlock], g1[kBlock], g2[kBlock], gb[kBlock], c1[kBlock], c2[kBlock], cb[kBlock], zeros[kBlock];
  std::fill(l1, l1 + m, R(0));
  std::fill(l2, l2 + m, R(0));
  std::fill(g1, g1 + m, R(0));
  std::fill(g2, g2 + m, R(0));
  std::fill(gb, gb + m, R(0));
  std::fill(zeros, zeros + m, R(0));
  LoadFeatures(c1, a.a1, f0, m, a.features, R(0));
  LoadFeatures(c2, a.a2, f0, m, a.features, R(0));
  LoadFeatures(cb, a.b, f0, m, a.features, R(0));
  for (int64_t t = length - 1; t >= 0; --t) {
    const int64_t at = Row(t, sample, f0, length, a.batch, a.features, false);
    const int64_t x_at = Row(t, sample, f0, length, a.batch, a.features, a.batch_major);
    const R* __restrict__ ct_y = a.ct_y + at;
    const R* __restrict__ y = a.y + at;
    const R* __restrict__ x = kOrder == 2 ? a.x + x_at : zeros;
    // The final states' cotangents join at the step that produced them (recurrence.final_cotangent).
    const R* final_ct = t == length - 1 ? a.ct1 : (kOrder == 2 && t == length - 2 ? a.ct2 : nullptr);
    const R* __restrict__ extra = final_ct ? final_ct + n0 : zeros;
    R* __restrict__ ct_x = a.out + x_at;
#pragma GCC ivdep
    for (int64_t i = 0; i < m; ++i) {
      const R ct = ct_y[i] + extra[i];
      if constexpr (kOrder == 2) {
        const R lam = ct + c1[i] * l1[i] + c2[i] * l2[i];
        g1[i] = g1[i] + l1[i] * y[i];
        g2[i] = g2[i] + l2[i] * y[i];
        gb[i] = gb[i] + lam * x[i];
        ct_x[i] = cb[i] * lam;
        l2[i] = l1[i];
        l1[i] = lam;
      } else {
        const R lam = ct + c1[i] * l1[i];
        g1[i] = g1[i] + l1[i] * y[i];
        ct_x[i] = lam;
        l1[i] = lam;
      }
    }
  }
  std::copy(l1, l1 + m, a.final1 + n0);
  std::copy(g1, g1 + m, a.g1 + n0);
  if (kOrder == 2) {
    std::copy(l2, l2 + m, a.final2 + n0);
    std::copy(g2, g2 + m, a.g2 + n0);
    std::copy(gb, gb + m, a.gb + n0);
  }
}

ffi::Error Check(const ffi::AnyBuffer& x, int64_t order, int64_t length, int64_t batch, int64_t features) {
  if (x.element_type() != ffi::DataType::F32 && x.element_type() != ffi::DataType::F64)
    return ffi::Error::InvalidArgument("linear recurrence: float32 or float64 arrays expected");
  if (order != 1 && order != 2) return ffi::Error::InvalidArgument("linear recurrence: order must be 1 or 2");
  if (length <= 0 || batch <= 0 || features <= 0 ||
      static_cast<int64_t>(x.element_count()) != length * batch * features)
    return ffi::Error::InvalidArgument("linear recurrence: x must hold T x B x F elements");
  return ffi::Error::Success();
}

template <typename R>
void Run(ffi::ThreadPool& pool, const RecurrenceArgs<R>& args, int64_t order, bool backward) {
  const int64_t blocks = args.batch * ((args.features + kBlock - 1) / kBlock);
  auto kernel = backward ? (order == 2 ? &BackwardBlock<R, 2> : &BackwardBlock<R, 1>)
                         : (order == 2 ? &ForwardBlock<R, 2> : &ForwardBlock<R, 1>);
  ParallelBlocks(pool, blocks, [&args, kernel](int64_t block) { kernel(args, block); });
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer a1, ffi::AnyBuffer a2,
                       ffi::AnyBuffer b, ffi::AnyBuffer init1, ffi::AnyBuffer init2,
                       ffi::Result<ffi::AnyBuffer> y, ffi::Result<ffi::AnyBuffer> final1,
                       ffi::Result<ffi::AnyBuffer> final2, int64_t order, int64_t length, int64_t batch,
                       int64_t features, bool batch_major) {
  if (auto error = Check(x, order, length, batch, features); error.failure()) return error;
  auto run = [&](auto zero) {
    using R = decltype(zero);
    RecurrenceArgs<R> args{length, batch, features, batch_major, In<R>(x), In<R>(a1), In<R>(a2), In<R>(b),
                           In<R>(init1), In<R>(init2), nullptr, nullptr, nullptr, nullptr,
                           Out<R>(y), Out<R>(final1), Out<R>(final2), nullptr, nullptr, nullptr};
    Run(pool, args, order, false);
  };
  x.element_type() == ffi::DataType::F32 ? run(0.0f) : run(0.0);
  return ffi::Error::Success();
}

ffi::Error BackwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer y, ffi::AnyBuffer ct_y,
                        ffi::AnyBuffer ct1, ffi::AnyBuffer ct2, ffi::AnyBuffer a1, ffi::AnyBuffer a2,
                        ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> ct_x, ffi::Result<ffi::AnyBuffer> lam1,
                        ffi::Result<ffi::AnyBuffer> lam2, ffi::Result<ffi::AnyBuffer> g1,
                        ffi::Result<ffi::AnyBuffer> g2, ffi::Result<ffi::AnyBuffer> gb, int64_t order,
                        int64_t length, int64_t batch, int64_t features, bool batch_major) {
  if (auto error = Check(x, order, length, batch, features); error.failure()) return error;
  auto run = [&](auto zero) {
    using R = decltype(zero);
    RecurrenceArgs<R> args{length, batch, features, batch_major, In<R>(x), In<R>(a1), In<R>(a2), In<R>(b),
                           nullptr, nullptr, In<R>(y), In<R>(ct_y), In<R>(ct1), In<R>(ct2),
                           Out<R>(ct_x), Out<R>(lam1), Out<R>(lam2), Out<R>(g1), Out<R>(g2), Out<R>(gb)};
    Run(pool, args, order, true);
  };
  x.element_type() == ffi::DataType::F32 ? run(0.0f) : run(0.0);
  return ffi::Error::Success();
}

}  // namespace
}  // namespace iirsnn

namespace ffi = xla::ffi;

#define IIRSNN_RECURRENCE_ATTRS                                                                      \
  .Attr<int64_t>("order").Attr<int64_t>("length").Attr<int64_t>("batch").Attr<int64_t>("features") \
      .Attr<bool>("batch_major")

XLA_FFI_DEFINE_HANDLER_SYMBOL(IirsnnLinearRecurrenceForward, iirsnn::ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // x [T, B, F] or [B, T, F]
                                  .Arg<ffi::AnyBuffer>()  // a1 [F]
                                  .Arg<ffi::AnyBuffer>()  // a2 [F]
                                  .Arg<ffi::AnyBuffer>()  // b [F]
                                  .Arg<ffi::AnyBuffer>()  // y[-1] [B, F]
                                  .Arg<ffi::AnyBuffer>()  // y[-2] [B, F]
                                  .Ret<ffi::AnyBuffer>()  // y [T, B, F]
                                  .Ret<ffi::AnyBuffer>()  // y[T-1] [B, F]
                                  .Ret<ffi::AnyBuffer>()  // y[T-2] [B, F]
                                      IIRSNN_RECURRENCE_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(IirsnnLinearRecurrenceBackward, iirsnn::BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // x [T, B, F] or [B, T, F]
                                  .Arg<ffi::AnyBuffer>()  // y [T, B, F]
                                  .Arg<ffi::AnyBuffer>()  // ct_y [T, B, F]
                                  .Arg<ffi::AnyBuffer>()  // cotangent of y[T-1] [B, F]
                                  .Arg<ffi::AnyBuffer>()  // cotangent of y[T-2] [B, F]
                                  .Arg<ffi::AnyBuffer>()  // a1 [F]
                                  .Arg<ffi::AnyBuffer>()  // a2 [F]
                                  .Arg<ffi::AnyBuffer>()  // b [F]
                                  .Ret<ffi::AnyBuffer>()  // ct_x, x's layout
                                  .Ret<ffi::AnyBuffer>()  // lam[0] [B, F]
                                  .Ret<ffi::AnyBuffer>()  // lam[1] [B, F]
                                  .Ret<ffi::AnyBuffer>()  // g1 [B, F]
                                  .Ret<ffi::AnyBuffer>()  // g2 [B, F]
                                  .Ret<ffi::AnyBuffer>()  // gb [B, F]
                                      IIRSNN_RECURRENCE_ATTRS);
