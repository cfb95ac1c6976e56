// The precompiled header is all this target is for.
