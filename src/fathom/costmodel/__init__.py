"""Cost model: turns ops (GEMMs, attention, memory-bound kernels, collectives) into seconds.

Every function takes NumPy arrays, so one call prices thousands of plans at once.
"""
