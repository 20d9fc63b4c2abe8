"""`python -m harness.cli`: the same as `unlearn`."""
from . import main

main()
