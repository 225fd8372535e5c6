"""romflow's public helpers for the codes it runs (the workflow itself is the packages rom and surrogates).

romflow.worker: serve a solver as a persistent black-box worker (docs/bring_your_own.md, route 3)."""
