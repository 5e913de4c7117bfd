"""DVC stage ``ablate``: the ablation study of params.yaml's ``ablation`` section."""

import sys

from smartassign.cli import main

if __name__ == "__main__":
    sys.exit(main(["ablate", *sys.argv[1:]]))
