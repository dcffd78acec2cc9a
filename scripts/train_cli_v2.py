#!/usr/bin/env python
"""The seed's entry point, kept as a thin alias: ``python scripts/train_cli_v2.py KEY=VALUE ...`` is
``streetvision run KEY=VALUE ...``."""

import sys

from streetvision.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
