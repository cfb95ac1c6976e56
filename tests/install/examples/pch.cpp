// The precompiled header is what this target is for; including the umbrella
// header here also proves that every installed header compiles on its own
// include paths (no internal src/ header leaks into the public API).
#include <paratorch/paratorch.h>
