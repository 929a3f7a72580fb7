"""Tiny random models built with the real diffusers/transformers classes.

Shared by the test suite, the benchmarks and the demo model, so all three
exercise exactly the loading code path real checkpoints take.
"""
