"""The ``entropymon`` command line (``entropymon.cli.main:main``): a thin shell over the library."""
