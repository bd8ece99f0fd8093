"""The batch-size search (`hydra/sweeper=batch_search`): per cell of the other swept
choices, the batch size of peak throughput, the knee, the largest that fits in memory and the
largest within a latency budget, in rounds of ordinary jobs.

- settings.py: the sweeper's parameters and their checks;
- strategy.py: one cell's search, from its measured probes to the next batch sizes to try
  and its answers (no I/O: tested on its own);
- sweep.py: the rounds, launched through Hydra's launcher;
- report.py: search.json, search.md, search.png and the terminal table.
"""
