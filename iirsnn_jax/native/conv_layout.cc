// The layouts of a convolution's kernel gradient on CPU: XLA computes it as a convolution whose input is the
// frames with the batch innermost, [C, P, N], and whose kernel is the output cotangent with the batch between
// pixels and channels, [P, N, C] (P = H * W pixels, N = T * B frames). XLA's own transposes into those layouts
// run at about half a copy's speed; these move the same elements in cache-sized tiles. Pure data movement: the
// results are the transposes exactly.
#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__AVX__)
#include <immintrin.h>
#endif

#include "blocks.h"

namespace iirsnn {
namespace {

constexpr int64_t kPixels = 8;  // pixels per parallel block: rows of 8 pixels' channels read at once
constexpr int64_t kTile = 8;    // frames x channels tiles of the batch-last transpose

// dst[c * ds + n] = src[n * ss + c] for an n x c tile of up to kTile x kTile elements.
template <typename R>
inline void Tile(const R* src, int64_t ss, R* dst, int64_t ds, int64_t n, int64_t c) {
  for (int64_t j = 0; j < c; ++j)
    for (int64_t i = 0; i < n; ++i) dst[j * ds + i] = src[i * ss + j];
}

#if defined(__AVX__)
// The full 8 x 8 float tile in registers: eight row loads, three rounds of shuffles, eight row stores.
inline void Tile8(const float* s, int64_t ss, float* d, int64_t ds) {
  __m256 r[8], t[8], u[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(s + i * ss);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(d + i * ds, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
    _mm256_storeu_ps(d + (i + 4) * ds, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
  }
}
inline void Tile(const float* src, int64_t ss, float* dst, int64_t ds, int64_t n, int64_t c) {
  if (n == kTile && c == kTile) return Tile8(src, ss, dst, ds);
  Tile<float>(src, ss, dst, ds, n, c);  // the edges
}
#endif

// [N, P, C] -> [C, P, N]: for each pixel, the frames x channels matrix transposed tile by tile.
template <typename R>
void BatchLast(ffi::ThreadPool& pool, const R* src, R* dst, int64_t frames, int64_t pixels, int64_t channels) {
  ParallelBlocks(pool, (pixels + kPixels - 1) / kPixels, [=](int64_t block) {
    for (int64_t p = block * kPixels; p < std::min(pixels, (block + 1) * kPixels); ++p)
      for (int64_t n = 0; n < frames; n += kTile)
        for (int64_t c = 0; c < channels; c += kTile)
          Tile(src + (n * pixels + p) * channels + c, pixels * channels, dst + (c * pixels + p) * frames + n,
               pixels * frames, std::min(kTile, frames - n), std::min(kTile, channels - c));
  });
}

// [N, P, C] -> [P, N, C]: rows of C channels move whole; each block reads kPixels consecutive rows per frame.
template <typename R>
void BatchInside(ffi::ThreadPool& pool, const R* src, R* dst, int64_t frames, int64_t pixels, int64_t channels) {
  ParallelBlocks(pool, (pixels + kPixels - 1) / kPixels, [=](int64_t block) {
    int64_t p0 = block * kPixels, p1 = std::min(pixels, p0 + kPixels);
    for (int64_t n = 0; n < frames; ++n)
      for (int64_t p = p0; p < p1; ++p)
        std::memcpy(dst + (p * frames + n) * channels, src + (n * pixels + p) * channels, sizeof(R) * channels);
  });
}

ffi::Error ConvLayoutImpl(ffi::ThreadPool pool, ffi::AnyBuffer src, ffi::Result<ffi::AnyBuffer> dst,
                          int64_t frames, int64_t pixels, int64_t channels, bool batch_last) {
  if (src.element_count() != frames * pixels * channels || dst->element_count() != src.element_count())
    return ffi::Error::InvalidArgument("conv layout: the arrays do not hold frames x pixels x channels elements");
  auto run = [&](auto zero) {
    using R = decltype(zero);
    (batch_last ? BatchLast<R> : BatchInside<R>)(pool, In<R>(src), Out<R>(dst), frames, pixels, channels);
  };
  if (src.element_type() == ffi::DataType::F32) {
    run(0.0f);
  } else if (src.element_type() == ffi::DataType::F64) {
    run(0.0);
  } else {
    return ffi::Error::InvalidArgument("conv layout: float32 or float64 only");
  }
  return ffi::Error::Success();
}

}  // namespace
}  // namespace iirsnn

namespace ffi = xla::ffi;

XLA_FFI_DEFINE_HANDLER_SYMBOL(IirsnnConvLayout, iirsnn::ConvLayoutImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::AnyBuffer>()  // [N, P, C]
                                  .Ret<ffi::AnyBuffer>()  // [C, P, N] (batch_last) or [P, N, C]
                                  .Attr<int64_t>("frames")
                                  .Attr<int64_t>("pixels")
                                  .Attr<int64_t>("channels")
                                  .Attr<bool>("batch_last"));
