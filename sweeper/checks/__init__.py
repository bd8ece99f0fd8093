"""Checks before any job starts: a job's config, its workload's declaration, this machine
and the scheduler.
"""
