"""DVC stage ``register`` (see ``smartassign register --help``)."""

import sys

from smartassign.cli import main

if __name__ == "__main__":
    sys.exit(main(["register", *sys.argv[1:]]))
