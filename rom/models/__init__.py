"""Reduced models: small objects with solve(mu) and estimate_error(mu), built from artefacts."""
