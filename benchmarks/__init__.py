"""lmhtc benchmarks: `make bench` (or `.venv/bin/python -m benchmarks`) prints every table."""
