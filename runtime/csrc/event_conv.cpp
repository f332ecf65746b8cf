// The event-driven convolution of a qconv2d on spike counts (docs/integer-semantics.md), CPU only: work
// proportional to the input events, not to the input size.
//
// Invariant: out[f, oy, ox, o] = Σ_{c,i,j} w[o, c, i, j] · x[f, oy·sh − ph + i·dh, ox·sw − pw + j·dw, c] (zero
// outside the input) — with ``epilogue``, e(that sum, E) + bias[o]·lw, the synapse's output — exactly, given
// what the caller (runtime/event_conv.py) proves: every x is in
// [0, 2^planes); |w| ≤ 127 (int8) and nmax · max|w| ≤ 32767, so an int16 partial sum of at most nmax weights
// never wraps; max over o of Σ|w| · max x < 2^31, so no int32 partial sum does; with the epilogue, the
// result fits int32.
//
// Method: x = Σ_q 2^q · bit_q(x). Per input position and bit plane q, the channels whose bit q is set are the
// events (found 32 channels at a time from a byte mask). Per output position and block of kCh output
// channels, the weight rows of the events it reaches are sign-extended and added into int16 accumulators
// held in registers; every nmax rows (and at the end of a plane) they are widened, shifted by q and added
// into int32. Weights are packed [Cout / kCh][kh·kw][C][kCh] int8 (zero-padded output channels), so an
// event's row is one 64-byte cache line (measured on an AVX2 EPYC: 17 % faster than int16 rows).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "rounding.h"
#if defined(__AVX2__) || defined(__SSE4_1__)
#include <immintrin.h>
#endif

namespace {

constexpr int kCh = 64;                      // output channels per register block
constexpr int kVec = 8;                      // int16 lanes per accumulator vector (128 bits)
constexpr int kAcc = kCh / kVec;

typedef int16_t v8s __attribute__((vector_size(16)));
typedef int8_t v8b __attribute__((vector_size(8)));
typedef int32_t v8i __attribute__((vector_size(32)));

// The 8 int8 weights at p, sign-extended to int16 (one vpmovsxbw from memory where SSE4.1 exists).
inline v8s widen8(const int8_t* p) {
#ifdef __SSE4_1__
  return reinterpret_cast<v8s>(_mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#else
  v8b b;
  __builtin_memcpy(&b, p, sizeof b);
  return __builtin_convertvector(b, v8s);
#endif
}

// Bit mask of the channels c0 … c0+31 of row r whose bit q is set.
inline uint32_t plane_mask(const int8_t* r, int64_t c0, int64_t C, int q) {
#ifdef __AVX2__
  if (c0 + 32 <= C) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + c0));
    const __m256i clear = _mm256_cmpeq_epi8(_mm256_and_si256(v, _mm256_set1_epi8(static_cast<char>(1 << q))),
                                            _mm256_setzero_si256());
    return ~static_cast<uint32_t>(_mm256_movemask_epi8(clear));
  }
#endif
  uint32_t m = 0;
  const int64_t end = std::min<int64_t>(C, c0 + 32);
  for (int64_t c = c0; c < end; ++c) m |= static_cast<uint32_t>((r[c] >> q) & 1) << (c - c0);
  return m;
}

}  // namespace

bool event_conv(torch::Tensor x, torch::Tensor wp, torch::Tensor out, int64_t kh, int64_t kw, int64_t sh,
                int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t planes, int64_t nmax,
                int64_t max_events, bool epilogue, int64_t e, torch::Tensor bias, int64_t lw) {
  TORCH_CHECK(x.dtype() == torch::kInt8 && x.dim() == 4 && x.is_contiguous(), "x: contiguous [F, H, W, C] int8");
  TORCH_CHECK(wp.dtype() == torch::kInt8 && wp.dim() == 4 && wp.is_contiguous() && wp.size(3) == kCh,
              "wp: contiguous [chunks, taps, C, 64] int8");
  TORCH_CHECK(out.dtype() == torch::kInt32 && out.dim() == 4 && out.is_contiguous(), "out: contiguous int32");
  TORCH_CHECK(planes >= 1 && planes <= 7 && nmax >= 1, "planes in 1..7, nmax >= 1");
  TORCH_CHECK(bias.numel() == 0 || (bias.dtype() == torch::kInt64 && bias.is_contiguous() &&
              bias.numel() == out.size(3)), "bias: empty or contiguous int64 [Cout]");
  const int64_t F = x.size(0), H = x.size(1), W = x.size(2), C = x.size(3);
  const int64_t ho = out.size(1), wo = out.size(2), cout = out.size(3);
  const int64_t nchunk = wp.size(0), taps = kh * kw;
  TORCH_CHECK(out.size(0) == F && wp.size(1) == taps && wp.size(2) == C && nchunk * kCh >= cout,
              "shapes of x, wp and out disagree");
  const int8_t* xp = x.data_ptr<int8_t>();
  const int64_t P = F * H * W, lists = P * planes;

  // the events: per (input position, plane) the channels' weight-row offsets c·kCh, as one CSR
  std::vector<int64_t> start(lists + 1, 0);
  at::parallel_for(0, P, 256, [&](int64_t a, int64_t b) {
    for (int64_t p = a; p < b; ++p)
      for (int q = 0; q < planes; ++q) {
        int64_t n = 0;
        for (int64_t c0 = 0; c0 < C; c0 += 32) n += __builtin_popcount(plane_mask(xp + p * C, c0, C, q));
        start[p * planes + q + 1] = n;
      }
  });
  for (int64_t i = 0; i < lists; ++i) start[i + 1] += start[i];
  if (start[lists] > max_events) return false;
  std::vector<int32_t> row(start[lists] + 1);
  at::parallel_for(0, P, 256, [&](int64_t a, int64_t b) {
    for (int64_t p = a; p < b; ++p)
      for (int q = 0; q < planes; ++q) {
        int64_t o = start[p * planes + q];
        for (int64_t c0 = 0; c0 < C; c0 += 32)
          for (uint32_t m = plane_mask(xp + p * C, c0, C, q); m; m &= m - 1)
            row[o++] = static_cast<int32_t>((c0 + __builtin_ctz(m)) * kCh);
      }
  });

  int32_t* op = out.data_ptr<int32_t>();
  const int8_t* w = wp.data_ptr<int8_t>();
  const int64_t Q = F * ho * wo;
  const int64_t* bp = bias.numel() ? bias.data_ptr<int64_t>() : nullptr;
  at::parallel_for(0, nchunk * Q, 16, [&](int64_t a, int64_t b) {
    for (int64_t t = a; t < b; ++t) {
      const int64_t ck = t / Q, q = t % Q;
      const int64_t f = q / (ho * wo), oy = (q / wo) % ho, ox = q % wo;
      const int8_t* wc = w + ck * taps * C * kCh;
      v8i acc[kAcc];
      for (int v = 0; v < kAcc; ++v) acc[v] = v8i{};
      for (int pl = 0; pl < planes; ++pl) {
        v8s part[kAcc];
        for (int v = 0; v < kAcc; ++v) part[v] = v8s{};
        int64_t held = 0;                       // rows added into part since it was last widened
        auto widen = [&]() {
          for (int v = 0; v < kAcc; ++v) {
            acc[v] += __builtin_convertvector(part[v], v8i) << pl;
            part[v] = v8s{};
          }
          held = 0;
        };
        for (int64_t i = 0; i < kh; ++i) {
          const int64_t iy = oy * sh - ph + i * dh;
          if (iy < 0 || iy >= H) continue;
          for (int64_t j = 0; j < kw; ++j) {
            const int64_t ix = ox * sw - pw + j * dw;
            if (ix < 0 || ix >= W) continue;
            const int64_t list = ((f * H + iy) * W + ix) * planes + pl;
            const int8_t* wt = wc + (i * kw + j) * C * kCh;
            for (int64_t e = start[list], end = start[list + 1]; e < end;) {
              const int64_t stop = std::min(end, e + (nmax - held));
              held += stop - e;
              for (; e < stop; ++e) {
                const int8_t* wr = wt + row[e];
                for (int v = 0; v < kAcc; ++v) part[v] += widen8(wr + kVec * v);
              }
              if (held == nmax) widen();
            }
          }
        }
        widen();
      }
      int32_t* o = op + q * cout + ck * kCh;
      const int64_t lanes = std::min<int64_t>(kCh, cout - ck * kCh);
      if (lanes == kCh && !epilogue) {
        __builtin_memcpy(o, acc, sizeof acc);
      } else {
        int32_t tmp[kCh];
        __builtin_memcpy(tmp, acc, sizeof acc);
        if (epilogue)       // the synapse's exponent and bias (the caller proved the result fits int32)
          for (int64_t l = 0; l < lanes; ++l)
            tmp[l] = static_cast<int32_t>(lmhtc::exp_shift(tmp[l], e) + (bp ? bp[ck * kCh + l] * lw : 0));
        std::copy(tmp, tmp + lanes, o);
      }
    }
  });
  return true;
}
