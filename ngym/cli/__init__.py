"""Console scripts (``ng_*``): one module per command, all sharing :mod:`ngym.cli.common`."""
