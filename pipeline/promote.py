"""DVC stage ``promote`` (see ``smartassign promote --help``)."""

import sys

from smartassign.cli import main

if __name__ == "__main__":
    sys.exit(main(["promote", *sys.argv[1:]]))
