"""DVC stage ``tune``: Ray Tune sweep as configured in params.yaml's ``tune`` section."""

import sys

from smartassign.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
