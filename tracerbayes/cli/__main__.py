"""``python -m tracerbayes.cli``: the command line."""

from tracerbayes.cli.main import main

raise SystemExit(main())
