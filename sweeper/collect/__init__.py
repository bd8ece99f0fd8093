"""The collector: from a run's logs to result.json, and from a sweep's results to tables."""


# Here, not in sweeper.errors (which is Hydra's): `parse` starts without importing Hydra.
class CompareError(ValueError):
    """Input that cannot be compared (a missing path, a malformed or ambiguous reference)."""
