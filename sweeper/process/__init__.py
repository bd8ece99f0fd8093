"""A job's processes: starting them, their logs, their limits, and stopping every one of them."""
