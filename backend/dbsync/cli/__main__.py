"""`python -m dbsync.cli`."""

import sys

from dbsync.cli import main

sys.exit(main())
