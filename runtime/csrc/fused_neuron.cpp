// One pass per qneuron layer: T-GIM mix + rounding shift + leak + threshold compare + multi-level
// soft reset + B-bit saturation counting (docs/integer-semantics.md), CPU only.
//
// Invariant: the spike counts and saturation events are lmhtc.semantics' (neuron_step iterated over
// temporal_mix's currents), bit for bit. Exactness of the narrow types is proven by the caller
// (runtime/fused.py) from static bounds: the mix accumulator A holds every |Σ ω·y| + 2^(F−1), and
// with a 32-bit membrane (V = int32) the bound of runtime/neuron.py's membrane_bound keeps every
// intermediate below 2^31 and no clip can happen (CLIP = false). Otherwise V = int64 with the clip.
//
// Layout: y is [Win, numel] (one dense block per window/step, the same memory layout in each block),
// the output k is [steps, numel] int8 in the same layout. Within a block an element at offset o has
// channel (o / inner) % C and sample o / per_sample (the batch is the outermost dimension). With
// inner = 1 (channels-last) the kernel also writes each position's Σ over channels of k, csum
// [steps, numel / C] int32 (the spike counts and the consumers' SOPs read it).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "rounding.h"

namespace {

constexpr int64_t kChunk = 1024;   // elements per work item: every per-step array of a chunk stays in L1

struct Params {
  int64_t numel, C, inner, per_sample, win, rows_out, steps, rows, frac_bits, leak_frac_bits, levels;
  bool front;
  int64_t lo, hi;
  const int64_t* omega;   // [rows_out, win]
  const int64_t* leak;    // [steps]
  int32_t* csum;          // [steps, numel / C] or null
};

using lmhtc::rshift_round;

// One chunk of n elements starting at offset o0 of every block; th/v0 hold each element's Θ and v_init.
template <typename Y, typename A, typename V, bool CLIP>
int64_t chunk(const Params& p, const Y* y, int8_t* k, int64_t o0, int64_t n, const V* th, const V* v0,
              V* cur, V* v) {
  // T-GIM: cur[r] = rs(Σ_j ω[r, j]·y[j], F), accumulated in A
  for (int64_t r = 0; r < p.rows_out; ++r) {
    V* c = cur + r * kChunk;
    const int64_t* w = p.omega + r * p.win;
    A acc[kChunk];
    for (int64_t e = 0; e < n; ++e) acc[e] = 0;
    for (int64_t j = 0; j < p.win; ++j) {
      if (w[j] == 0) continue;
      const A wj = static_cast<A>(w[j]);
      const Y* yj = y + j * p.numel + o0;
      for (int64_t e = 0; e < n; ++e) acc[e] += wj * static_cast<A>(yj[e]);
    }
    for (int64_t e = 0; e < n; ++e) c[e] = static_cast<V>(rshift_round<A>(acc[e], p.frac_bits));
  }
  for (int64_t e = 0; e < n; ++e) v[e] = v0[e];
  const int64_t one = int64_t(1) << p.leak_frac_bits;
  int64_t sat = 0;
  for (int64_t t = 0; t < p.steps; ++t) {
    const int64_t leak = p.leak[t];
    if (leak != one) {
      if (sizeof(V) == 8) {
        for (int64_t e = 0; e < n; ++e) v[e] = rshift_round<V>(static_cast<V>(leak) * v[e], p.leak_frac_bits);
      } else if (leak > one) {   // leak = q·2^D + r: rs(leak·v, D) = q·v + rs(r·v, D), each term in int32
        const V q = static_cast<V>(leak >> p.leak_frac_bits), rem = static_cast<V>(leak & (one - 1));
        for (int64_t e = 0; e < n; ++e) v[e] = q * v[e] + rshift_round<V>(rem * v[e], p.leak_frac_bits);
      } else {
        const V l = static_cast<V>(leak);
        for (int64_t e = 0; e < n; ++e) v[e] = rshift_round<V>(l * v[e], p.leak_frac_bits);
      }
    }
    if (!p.front || t % p.rows == 0) {
      const V* c = cur + (t / p.rows) * kChunk;
      for (int64_t e = 0; e < n; ++e) v[e] += c[e];
    }
    if (CLIP) {
      const V lo = static_cast<V>(p.lo), hi = static_cast<V>(p.hi);
      int64_t s = 0;
      for (int64_t e = 0; e < n; ++e) {
        s += (v[e] < lo) | (v[e] > hi);
        v[e] = std::min(std::max(v[e], lo), hi);
      }
      sat += s;
    }
    int8_t* kt = k + t * p.numel + o0;
    if (p.levels == 1) {
      for (int64_t e = 0; e < n; ++e) {
        const V fired = static_cast<V>(v[e] >= th[e]);
        kt[e] = static_cast<int8_t>(fired);
        v[e] -= fired * th[e];
      }
    } else {
      for (int64_t e = 0; e < n; ++e) {
        V cnt = 0;
        for (int64_t lvl = 1; lvl <= p.levels; ++lvl) cnt += static_cast<V>(v[e] >= static_cast<V>(lvl) * th[e]);
        kt[e] = static_cast<int8_t>(cnt);
        v[e] -= cnt * th[e];
      }
    }
    if (p.csum != nullptr) {   // whole positions per chunk (inner = 1, C ≤ chunk): Σ over the C channels
      int32_t* cs = p.csum + t * (p.numel / p.C) + o0 / p.C;
      for (int64_t q = 0; q < n / p.C; ++q) {
        int32_t acc = 0;
        const int8_t* kq = kt + q * p.C;
        for (int64_t c = 0; c < p.C; ++c) acc += kq[c];
        cs[q] = acc;
      }
    }
  }
  return sat;
}

template <typename Y, typename A, typename V, bool CLIP>
void run(const Params& p, const Y* y, int8_t* k, const int64_t* theta, const int64_t* v_init, int64_t* sat) {
  const int64_t samples = p.numel / p.per_sample;
  // inner == 1 (channels-last, or a flat [B, F] layer): runs of whole channel periods (Θ tiled once over
  // a run), cut into chunks; inner > 1 (NCHW): chunks within one channel's run of `inner` elements
  // (Θ constant per chunk). A run never crosses a sample, so each chunk's saturation count has one sample.
  const bool tiled = p.inner == 1;
  const int64_t span = tiled ? std::max<int64_t>(1, kChunk / p.C) * p.C : p.inner;
  const int64_t step = tiled ? std::min(span, kChunk) : std::min(p.inner, kChunk);
  const int64_t per_run = (span + step - 1) / step;                  // chunks per run of `span` elements
  const int64_t runs = p.per_sample / span + (p.per_sample % span != 0);
  std::vector<V> th_tile, v0_tile;
  if (tiled) {
    th_tile.resize(span);
    v0_tile.resize(span);
    for (int64_t e = 0; e < span; ++e) {
      th_tile[e] = static_cast<V>(theta[e % p.C]);
      v0_tile[e] = static_cast<V>(v_init[e % p.C]);
    }
  }
  const int64_t items = samples * runs * per_run;
  std::vector<int64_t> sat_item(CLIP ? items : 0, 0);
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    std::vector<V> buf(kChunk * (p.rows_out + 3));
    V* cur = buf.data();
    V* v = cur + kChunk * p.rows_out;
    V* th = v + kChunk;
    V* v0 = th + kChunk;
    for (int64_t it = begin; it < end; ++it) {
      const int64_t b = it / (runs * per_run), rr = (it / per_run) % runs, ci = it % per_run;
      const int64_t run_start = b * p.per_sample + rr * span;
      const int64_t run_len = std::min(span, p.per_sample - rr * span);
      const int64_t o0 = run_start + ci * step;
      const int64_t n = std::min(step, run_len - ci * step);
      if (n <= 0) continue;
      const V* thp;
      const V* v0p;
      if (tiled) {
        thp = th_tile.data() + ci * step;
        v0p = v0_tile.data() + ci * step;
      } else {
        const int64_t c = (run_start / p.inner) % p.C;
        std::fill(th, th + n, static_cast<V>(theta[c]));
        std::fill(v0, v0 + n, static_cast<V>(v_init[c]));
        thp = th;
        v0p = v0;
      }
      const int64_t s = chunk<Y, A, V, CLIP>(p, y, k, o0, n, thp, v0p, cur, v);
      if (CLIP) sat_item[it] = s;
    }
  });
  if (CLIP) {
    for (int64_t it = 0; it < items; ++it) sat[it / (runs * per_run)] += sat_item[it];
  }
}

template <typename Y>
void dispatch_y(const Params& p, const Y* y, int8_t* k, const int64_t* theta, const int64_t* v_init, int64_t* sat,
                bool acc32, bool v32) {
  if (v32) {   // a 32-bit membrane is proven not to clip
    if (acc32) run<Y, int32_t, int32_t, false>(p, y, k, theta, v_init, sat);
    else run<Y, int64_t, int32_t, false>(p, y, k, theta, v_init, sat);
  } else {
    if (acc32) run<Y, int32_t, int64_t, true>(p, y, k, theta, v_init, sat);
    else run<Y, int64_t, int64_t, true>(p, y, k, theta, v_init, sat);
  }
}

}  // namespace

// Spike counts into k [steps, numel] (int8) and saturation events added into sat [samples] (int64).
void mix_neuron(torch::Tensor y, torch::Tensor omega, int64_t frac_bits, int64_t rows, bool front,
                torch::Tensor leak, int64_t leak_frac_bits, torch::Tensor theta, torch::Tensor v_init,
                int64_t levels, int64_t membrane_bits, int64_t C, int64_t inner, int64_t per_sample,
                bool acc32, bool v32, torch::Tensor k, torch::Tensor sat, torch::Tensor csum) {
  TORCH_CHECK(omega.dtype() == torch::kInt64 && omega.is_contiguous() && omega.dim() == 2, "omega: int64 [R, Win]");
  TORCH_CHECK(leak.dtype() == torch::kInt64 && leak.is_contiguous(), "leak: int64 [steps]");
  TORCH_CHECK(theta.dtype() == torch::kInt64 && theta.is_contiguous() && theta.numel() == C, "theta: int64 [C]");
  TORCH_CHECK(v_init.dtype() == torch::kInt64 && v_init.is_contiguous() && v_init.numel() == C, "v_init: int64 [C]");
  TORCH_CHECK(k.dtype() == torch::kInt8 && sat.dtype() == torch::kInt64 && sat.is_contiguous(), "k int8, sat int64");
  TORCH_CHECK(levels >= 1 && levels < 128 && membrane_bits >= 2 && membrane_bits <= 63, "levels / membrane bits");
  Params p;
  p.win = omega.size(1);
  p.rows_out = omega.size(0);
  p.numel = k.numel() / leak.numel();
  TORCH_CHECK(y.numel() == p.win * p.numel && p.numel % per_sample == 0 && per_sample % (C * inner) == 0,
              "fused_neuron: layout");
  TORCH_CHECK(sat.numel() == p.numel / per_sample, "sat: one entry per sample");
  p.C = C;
  p.inner = inner;
  p.per_sample = per_sample;
  p.steps = leak.numel();
  p.rows = rows;
  p.front = front;
  TORCH_CHECK(p.rows_out * rows >= p.steps, "fused_neuron: fewer currents than steps");
  p.frac_bits = frac_bits;
  p.leak_frac_bits = leak_frac_bits;
  p.levels = levels;
  p.lo = -(int64_t(1) << (membrane_bits - 1));
  p.hi = (int64_t(1) << (membrane_bits - 1)) - 1;
  p.omega = omega.data_ptr<int64_t>();
  p.leak = leak.data_ptr<int64_t>();
  p.csum = nullptr;
  if (csum.numel() > 0) {
    TORCH_CHECK(inner == 1 && C <= kChunk && csum.dtype() == torch::kInt32 && csum.is_contiguous() &&
                    csum.numel() * C == k.numel(), "csum: int32 [steps, numel / C], channels innermost");
    p.csum = csum.data_ptr<int32_t>();
  }
  int8_t* kp = k.data_ptr<int8_t>();
  const int64_t* th = theta.data_ptr<int64_t>();
  const int64_t* v0 = v_init.data_ptr<int64_t>();
  int64_t* sp = sat.data_ptr<int64_t>();
  switch (y.scalar_type()) {
    case torch::kInt8: dispatch_y(p, static_cast<const int8_t*>(y.data_ptr()), kp, th, v0, sp, acc32, v32); break;
    case torch::kInt16: dispatch_y(p, static_cast<const int16_t*>(y.data_ptr()), kp, th, v0, sp, acc32, v32); break;
    case torch::kInt32: dispatch_y(p, static_cast<const int32_t*>(y.data_ptr()), kp, th, v0, sp, acc32, v32); break;
    case torch::kInt64: dispatch_y(p, static_cast<const int64_t*>(y.data_ptr()), kp, th, v0, sp, acc32, v32); break;
    default: TORCH_CHECK(false, "fused_neuron: y must be an integer tensor");
  }
}

namespace {

// out = e(x·scale[c], E) + bias[c]·lw per element, computed in int64 (x an exact integer in X), stored as O.
template <typename X, typename O>
void affine_run(const X* x, O* out, int64_t numel, int64_t C, int64_t inner, const int64_t* scale,
                const int64_t* bias, int64_t lw, int64_t e) {
  const int64_t period = C * inner;
  at::parallel_for(0, numel / period, 1, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      for (int64_t c = 0; c < C; c += (inner == 1 ? C : 1)) {
        // inner == 1: one pass over the C channels of a position; else one channel's run of `inner` elements
        const int64_t n = inner == 1 ? C : inner;
        const int64_t o0 = blk * period + c * inner;
        for (int64_t i = 0; i < n; ++i) {
          const int64_t ch = inner == 1 ? i : c;
          int64_t a = static_cast<int64_t>(x[o0 + i]);
          if (scale != nullptr) a *= scale[ch];
          a = lmhtc::exp_shift(a, e);
          if (bias != nullptr) a += bias[ch] * lw;
          out[o0 + i] = static_cast<O>(a);
        }
      }
    }
  });
}

template <typename X>
void affine_out(const X* x, torch::Tensor out, int64_t numel, int64_t C, int64_t inner, const int64_t* scale,
                const int64_t* bias, int64_t lw, int64_t e) {
  if (out.scalar_type() == torch::kInt32)
    affine_run(x, out.data_ptr<int32_t>(), numel, C, inner, scale, bias, lw, e);
  else
    affine_run(x, out.data_ptr<int64_t>(), numel, C, inner, scale, bias, lw, e);
}

}  // namespace

// The synapse epilogue in one pass: out = e(x·scale, E) + bias·lw (docs/integer-semantics.md: the exponent
// and the bias of a conv/linear/gain), x an exact integer (float32 below 2^24, or an integer type), out in
// the int32/int64 the caller's bound chose; scale/bias per channel (empty: none). x and out share one dense
// layout in which an element at offset o has channel (o / inner) % C.
void affine_shift(torch::Tensor x, torch::Tensor scale, torch::Tensor bias, int64_t lw, int64_t e, int64_t C,
                  int64_t inner, torch::Tensor out) {
  TORCH_CHECK(out.numel() == x.numel() && x.numel() % (C * inner) == 0, "affine_shift: layout");
  TORCH_CHECK(out.scalar_type() == torch::kInt32 || out.scalar_type() == torch::kInt64, "affine_shift: out int32/64");
  TORCH_CHECK(scale.numel() == 0 || (scale.dtype() == torch::kInt64 && scale.is_contiguous() && scale.numel() == C),
              "affine_shift: scale int64 [C]");
  TORCH_CHECK(bias.numel() == 0 || (bias.dtype() == torch::kInt64 && bias.is_contiguous() && bias.numel() == C),
              "affine_shift: bias int64 [C]");
  const int64_t* sp = scale.numel() ? scale.data_ptr<int64_t>() : nullptr;
  const int64_t* bp = bias.numel() ? bias.data_ptr<int64_t>() : nullptr;
  const int64_t n = x.numel();
  switch (x.scalar_type()) {
    case torch::kFloat: affine_out(x.data_ptr<float>(), out, n, C, inner, sp, bp, lw, e); break;
    case torch::kInt8: affine_out(x.data_ptr<int8_t>(), out, n, C, inner, sp, bp, lw, e); break;
    case torch::kInt16: affine_out(x.data_ptr<int16_t>(), out, n, C, inner, sp, bp, lw, e); break;
    case torch::kInt32: affine_out(x.data_ptr<int32_t>(), out, n, C, inner, sp, bp, lw, e); break;
    default: TORCH_CHECK(false, "affine_shift: x must be float32 or int8/16/32");
  }
}
