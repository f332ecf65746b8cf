// The Python bindings of the runtime's CPU kernels (runtime/fused.py builds every csrc/*.cpp into one module).
#include <torch/extension.h>

void mix_neuron(torch::Tensor y, torch::Tensor omega, int64_t frac_bits, int64_t rows, bool front,
                torch::Tensor leak, int64_t leak_frac_bits, torch::Tensor theta, torch::Tensor v_init,
                int64_t levels, int64_t membrane_bits, int64_t C, int64_t inner, int64_t per_sample,
                bool acc32, bool v32, torch::Tensor k, torch::Tensor sat, torch::Tensor csum);
void affine_shift(torch::Tensor x, torch::Tensor scale, torch::Tensor bias, int64_t lw, int64_t e, int64_t C,
                  int64_t inner, torch::Tensor out);
bool event_conv(torch::Tensor x, torch::Tensor wp, torch::Tensor out, int64_t kh, int64_t kw, int64_t sh,
                int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t planes, int64_t nmax,
                int64_t max_events, bool epilogue, int64_t e, torch::Tensor bias, int64_t lw);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("mix_neuron", &mix_neuron, "T-GIM mix + qneuron steps of one layer, in one pass (CPU)");
  m.def("affine_shift", &affine_shift, "synapse exponent, per-channel gain and bias in one pass (CPU)");
  m.def("event_conv", &event_conv, "event-driven qconv2d sums on spike counts, optionally with the synapse's exponent and bias (CPU); false above max_events");
}
