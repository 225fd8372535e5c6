"""romflow's reduced-order modelling package: full-order models (rom.hifi), reduction algorithms
(rom.reduction), reduced models (rom.models), artefacts and the stage CLI (python -m rom)."""

__version__ = "0.1.0"
