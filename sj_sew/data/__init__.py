"""Data sets for sj_sew: registry, embedded offline sets, DVS loaders, transforms."""
