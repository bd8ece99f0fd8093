"""One job's result: its statistics, its verdict, result.json, and repeats combined."""
