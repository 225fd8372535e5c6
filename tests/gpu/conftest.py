"""Registers the `gpu` marker for these tests until pyproject.toml lists it (the lead owns it:
markers = [..., "gpu: needs an NVIDIA GPU (CUDA); skipped without one"])."""


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU (CUDA); skipped without one")
