"""DVC stage ``evaluate`` (see ``smartassign evaluate --help``)."""

import sys

from smartassign.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
