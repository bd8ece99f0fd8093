"""A sweep: its jobs expanded, checked, launched and reported; its directory; the batch-
size search.
"""
