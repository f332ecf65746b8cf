// The integer semantics' rounding right shift (docs/integer-semantics.md), shared by the runtime's kernels.
#pragma once
#include <cstdint>

namespace lmhtc {

// rs(a, F) = (a − [a < 0] + 2^(F−1)) >> F, arithmetic shift; rs(a, 0) = a
template <typename T>
inline T rshift_round(T a, int64_t f) {
  if (f == 0) return a;
  return (a - static_cast<T>(a < 0) + (static_cast<T>(1) << (f - 1))) >> f;
}

// The synapse exponent E: a · 2^E for E ≥ 0, rs(a, −E) below
inline int64_t exp_shift(int64_t a, int64_t e) { return e >= 0 ? a * (int64_t(1) << e) : rshift_round<int64_t>(a, -e); }

}  // namespace lmhtc
