"""Runs: the queue between "approved" and "trained" - a SQLite store, a worker, child processes."""
