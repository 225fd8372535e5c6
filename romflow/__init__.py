"""romflow's public API (the workflow itself is the packages rom and surrogates).

romflow.open(path): a finished study's results folder and its trained models, queried in batches
(romflow.api: Study, Model, Prediction).
romflow.worker: serve a solver as a persistent black-box worker (docs/bring_your_own.md, route 3).

Attributes load lazily: `import romflow` imports nothing heavy."""

__all__ = ["Model", "Prediction", "Study", "open"]


def __getattr__(name):
    # PEP 562: the API module (and numpy) load on first use; `import romflow.worker` is unaffected.
    if name in __all__:
        from romflow import api

        return getattr(api, name)
    raise AttributeError(f"module 'romflow' has no attribute {name!r}")
