"""`python -m tailgate`: the same as the installed `tailgate` command."""

from tailgate.cli import main

raise SystemExit(main())
