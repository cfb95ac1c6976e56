// tests/mpi_test_env.h — access to the test process's World.
#pragma once
#include <paratorch/world.h>

extern paratorch::World* g_world;
inline paratorch::World& test_world() { return *g_world; }
