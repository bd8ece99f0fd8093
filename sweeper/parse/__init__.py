"""From a program's output to figures: log formats, a metrics file, out-of-memory lines."""
