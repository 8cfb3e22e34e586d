"""Test support: real servers (`services`) and child processes (`processes`) for the upper tiers.

Everything here starts real binaries on free 127.0.0.1 ports inside temporary directories and
guarantees that stopping them leaves no process or file behind. Nothing in this package sleeps as
a way of synchronising: readiness is polled with a deadline, and a failure to start raises with
the tail of the server's own log.
"""
