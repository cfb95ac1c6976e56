// src/tensor_parallel/shard.h — ShardSpec (how one parameter is split over
// the tp group) and ShardedModule are public API now:
// <paratorch/tensor_parallel_layers.h>; the implementation stays in shard.cpp.
#pragma once
#include <paratorch/tensor_parallel_layers.h>
