import sys

from agent.cli import main

if __name__ == "__main__":  # not when a spawned child (collectors/edge.py) imports it
    sys.exit(main())
