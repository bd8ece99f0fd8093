"""Where a job runs (Hydra's hydra/launcher): this machine one job after another, or a
SLURM cluster.
"""
