"""`python -m controller` runs the same CLI as `presence-controller`."""

from controller.cli import main

raise SystemExit(main())
