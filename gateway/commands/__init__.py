"""Sub-commands of the ``ebts-gateway`` command line, one module each."""
