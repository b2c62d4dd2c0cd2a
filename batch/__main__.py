"""`python -m batch` runs the same command line as `invite-batch`."""

from .cli import main

raise SystemExit(main())
