"""Stand-in for Graphcore's validation.py: see _standin.py."""

from _standin import main

main("validation.py")
