"""``python -m seglib``: the same as the ``seglib`` command."""

from seglib.cli import main

raise SystemExit(main())
