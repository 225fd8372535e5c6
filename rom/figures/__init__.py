"""Report figures and sections of each stage family, as library functions on artefacts (the stages,
tests and benchmarks call them)."""
