"""``python -m ggufref`` runs the CLI."""

import sys

from ggufref.cli import main

sys.exit(main())
