"""The collector: from a run's logs to result.json, and from a sweep's results to tables."""
