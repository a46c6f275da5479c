"""zoo benchmarks: each module measures zoo against a baseline run in the same process.

Run everything with `python -m benchmarks` (see `--help`). Benchmarks are not
tests: they print ratios and whether a target was met; they never assert.
"""
