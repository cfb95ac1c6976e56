// src/comm/debug_check.h — PARATORCH_DEBUG=1: do all ranks agree on this collective?
//
// Before a collective, every rank contributes a fixed-size signature
// (sequence number, operation, dtype, shape, root) to an all-gather and
// compares. A mismatch — one rank calling all_reduce on 1024 floats while
// another broadcasts 512, or a rank that skipped a collective — raises a
// RuntimeFailure that lists every rank's view, instead of corrupting data or
// hanging.
#pragma once
#include "comm/op_info.h"

#include <mpi.h>

namespace paratorch::comm {

/// Collective over `comm`; throws RuntimeFailure on disagreement.
void check_collective_agreement(MPI_Comm comm, const OpInfo& info);

}  // namespace paratorch::comm
