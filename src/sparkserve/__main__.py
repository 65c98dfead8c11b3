"""`python -m sparkserve`: the same command line as the `sparkserve` script (the exporter image uses it)."""

from sparkserve.cli import main

main()
