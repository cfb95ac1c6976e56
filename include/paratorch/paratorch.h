// paratorch/paratorch.h — the whole public API in one include.
//
// Example:
///   #include <paratorch/paratorch.h>
///   int main(int argc, char** argv) {
///     paratorch::World world(argc, argv);
///     auto layout = paratorch::Layout::parse("dp=auto,pp=1,tp=1").resolve(world.size());
///     paratorch::ProcessGroups groups(world.comm(), layout);
///     auto model = std::make_shared<MyNet>();
///     paratorch::DistributedDataParallel ddp(model, groups.dp());
///     ...
///   }
// docs/library.md maps each header to its PyTorch / DeepSpeed counterpart.
#pragma once
#include <paratorch/async.h>
#include <paratorch/checkpoint.h>
#include <paratorch/communicator.h>
#include <paratorch/compression.h>
#include <paratorch/compat.h>
#include <paratorch/ddp.h>
#include <paratorch/errors.h>
#include <paratorch/flight_recorder.h>
#include <paratorch/grad_clip.h>
#include <paratorch/init.h>
#include <paratorch/layout.h>
#include <paratorch/mixed_precision.h>
#include <paratorch/pipeline.h>
#include <paratorch/sampler.h>
#include <paratorch/tensor_parallel.h>
#include <paratorch/tensor_parallel_layers.h>
#include <paratorch/verify.h>
#include <paratorch/world.h>
#include <paratorch/zero.h>
