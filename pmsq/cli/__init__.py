"""The roof of pmsq: the `pmsq` command line, the demo and the process supervisor they share.

Nothing in pmsq imports from here; this package imports the rest (`pmsq.api`, `pmsq.workers`...).
"""
