"""Reproducible benchmarks, run by `make bench` (`python -m benchmarks`).

Each benchmark starts nothing itself: `__main__` starts one embedded PostgreSQL 18 server with the
server's default lock settings (so the 10,000-table figure holds on a stock configuration), and
every figure is a median of several runs printed next to the stock or naive way measured in the
same run. Benchmarks measure; the test suite checks behaviour.
"""
