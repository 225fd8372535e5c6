"""romflow's surrogates: streamed neural-network training (surrogates.streaming), Gaussian
processes (surrogates.gp) and mesh-morphing GP (surrogates.mmgp). CLI: python -m surrogates."""
