"""DVC stage ``train``: train SmartAssign on Ray Train as configured in params.yaml."""

import sys

from smartassign.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
