"""The null sink: takes readings and drops them (benchmarks, dry runs)."""
