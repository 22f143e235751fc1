"""lagmon's benchmarks, run from the repo root as modules: `python -m bench.accuracy` etc.
(bench/run_all.sh runs them all). They import the test harness from the top-level testing package."""
