// src/tensor_parallel/context.h — TensorParallelContext (the tp group and the
// sequence-parallel flag a tp layer consults) is public API now:
// <paratorch/tensor_parallel_layers.h>. Models receive one and never see the
// Layout; a default-constructed context means tp = 1.
#pragma once
#include <paratorch/tensor_parallel_layers.h>
