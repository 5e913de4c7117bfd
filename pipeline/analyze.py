"""DVC stage ``analyze`` (see ``smartassign analyze --help``)."""

import sys

from smartassign.cli import main

if __name__ == "__main__":
    sys.exit(main(["analyze", *sys.argv[1:]]))
