"""DVC stage ``prepare``: synthetic default + benchmark layouts -> manifests and report.

Everything comes from the ``data`` section of params.yaml (``--params`` to use another
file; ``--strict`` to fail on any skipped file; ``--quiet`` for no progress bar).
"""

import sys

from smartassign.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
