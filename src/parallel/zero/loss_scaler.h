// src/parallel/zero/loss_scaler.h — dynamic loss scaling for fp16 training.
//
// The scaler is public API (<paratorch/mixed_precision.h>, implemented in
// src/parallel/mixed_precision/loss_scaler.cpp); the engines use it under
// these names.
#pragma once
#include <paratorch/mixed_precision.h>

namespace paratorch::zero {

using LossScalerOptions = paratorch::LossScalerOptions;
using LossScaler = paratorch::LossScaler;

}  // namespace paratorch::zero
