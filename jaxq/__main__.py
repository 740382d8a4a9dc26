"""``python -m jaxq``: the command-line interface (see ``jaxq.cli``)."""

from jaxq.cli import main

raise SystemExit(main())
