"""The reproduction studies of the SEW paper's claims, as a library; ``scripts/repro_*.py``,
``compare_systems.py`` and ``convert.py`` are their command lines.

- :mod:`.sweep` -- grids of training runs through :func:`sj_sew.training.run` (resumable, shardable), seed
  aggregation, where a study writes, and trained nets read back for analysis.
- :mod:`.ablation` (Table 4), :mod:`.degradation` (Table 2), :mod:`.surrogate` (Table 9) -- training sweeps.
- :mod:`.gradients` (Figs. 6-8), :mod:`.firing_rates` (Figs. 4, 5, 11), :mod:`.energy` -- analyses of
  networks at init or trained.
- :mod:`.conversion`, :mod:`.systems` -- ANN-to-SNN conversion and the competing residual SNNs.
- :mod:`.tables` -- REPRODUCTION.md's tables rendered from the results files.
"""
