"""`python -m conr`: the same command as `conr` (torchrun starts it this way)."""

from conr.cli import main

raise SystemExit(main())
