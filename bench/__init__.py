"""nncompile's benchmarks: `make bench` (bench/run.py) writes bench/RESULTS.md."""
