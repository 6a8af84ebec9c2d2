"""``python -m gateway``: the same as the ``ebts-gateway`` command."""

import sys

from gateway.cli import main

sys.exit(main())
