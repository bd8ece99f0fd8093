"""Stand-in for Graphcore's train.py: see _standin.py."""

from _standin import main

main("train.py")
