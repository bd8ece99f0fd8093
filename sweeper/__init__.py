"""sweeper: a declarative sweep orchestrator for CNN throughput benchmarks."""

__version__ = "0.1.0"
