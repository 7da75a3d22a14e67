// network.h -- the inside of an lwNetwork_t, shared by network.cpp (creation,
// forward, training) and nothing else: model files go through the public API.
#pragma once

#include <cstdint>
#include <vector>

#include "device_memory.h"
#include "layerwise/layerwise.h"

struct lwNetworkStruct {
  lwHandle_t handle = nullptr;
  lwDevice_t device = LW_DEVICE_CPU;
  lwDataType_t dtype = LW_FLOAT32;
  size_t elem_bytes = 4;
  int nlayers = 0;
  std::vector<int64_t> sizes;                  // nlayers + 1
  std::vector<lwActivationMode_t> activations;  // nlayers
  std::vector<int> has_bias;                   // nlayers
  std::vector<int64_t> weight_offset, bias_offset;  // elements into params; bias -1 when absent
  int64_t param_count = 0;
  lw::api::DeviceBuffer params;                   // every layer's W then b, back to back
  std::vector<lwTensorDescriptor_t> weight_desc, bias_desc;  // bias NULL when absent

  // Batch descriptors, re-set for each call's n: act_desc[i] is (n, sizes[i]).
  std::vector<lwTensorDescriptor_t> act_desc;
  lwTensorDescriptor_t label_desc = nullptr;  // (n, 1) int32 for softmax cross-entropy

  // Inference workspace: two ping-pong buffers of forward_rows x max hidden width.
  lw::api::DeviceBuffer forward_work;
  int64_t forward_rows = 0;

  // Training workspace (see network.cpp).
  lw::api::DeviceBuffer train_acts;   // a_1 .. a_L for train_rows rows
  lw::api::DeviceBuffer train_grads;  // two ping-pong gradient buffers
  lw::api::DeviceBuffer input_grad;   // dJ/dx when requested
  int64_t train_rows = 0;
  int64_t input_grad_rows = 0;
  int64_t input_grad_valid_rows = -1;  // rows of the last step's dJ/dx (-1: none)
  lwTensorDescriptor_t input_grad_desc = nullptr;
  bool keep_input_grad = false;

  // Gradients dW, db laid out like params (the flat buffer of lwNetworkGetGradients).
  lw::api::DeviceBuffer grads;
  lwTensorDescriptor_t grads_desc = nullptr;  // (1, param_count), made at the first GetGradients
  bool grads_computed = false;  // a ComputeGradients (or an unfused TrainStep) has filled grads
  bool gradient_norms = false;
  std::vector<double> last_norms;  // per layer, from the last step with gradient_norms on

  // Optimizer state: `opt_state_count` buffers laid out like params, back to back.
  lw::api::DeviceBuffer opt_state;
  int opt_state_count = -1;  // buffers the state was laid out for (-1: none yet)
  int opt_state_mode = -1;
  double opt_state_init = 0;  // ADAGRAD's initial_accumulator_value it was filled with
  // Once lwNetworkGetOptimizerState has handed out pointers, a replaced state buffer is kept
  // here until destroy, so that those pointers never dangle (their contents are then unused).
  bool opt_state_viewed = false;
  std::vector<lw::api::DeviceBuffer> retired_opt_state;

  // The last layer's output of the last training step (a view into train_acts).
  lwTensorDescriptor_t output_desc = nullptr;
  const void *last_output = nullptr;  // NULL: no training step yet
};

namespace lw {
namespace api {

// Element `offset` of the parameter block (or of a block laid out like it).
inline char *param_block_ptr(const lwNetworkStruct *net, const DeviceBuffer &block, int64_t offset) {
  return static_cast<char *>(block.data()) + offset * static_cast<int64_t>(net->elem_bytes);
}

// act_desc[i] := (n, sizes[i]) dense, for every i.
void set_batch_descs(lwNetworkStruct *net, int64_t n);

}  // namespace api
}  // namespace lw
