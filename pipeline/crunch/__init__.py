"""The crunch stage: CPU-bound work on a page, in the worker's process pool.

Pool processes import modules of this package, so this file imports nothing.
"""
