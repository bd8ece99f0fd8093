"""The composed config: its schema, composition of a sweep's jobs, the seed's recipes, and
the keys it knows.
"""
