"""Hydra plugins of sweeper (Hydra only loads plugins from the hydra_plugins namespace)."""
