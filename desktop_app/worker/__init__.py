"""The generation worker (its own QThread) and its GUI-thread controller."""
