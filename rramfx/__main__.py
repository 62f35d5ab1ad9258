"""``python -m rramfx``: the same command line as the ``rramfx`` script."""

from rramfx.cli import main

raise SystemExit(main())
