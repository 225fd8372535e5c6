"""Artefacts: netCDF4 that xarray opens with named dims and provenance; atomic writes."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

from rom import artefacts


def test_roundtrip_with_dims_units_and_provenance(tmp_path):
    ds = xr.Dataset({"u": (("sample", "dof"), np.arange(6.0).reshape(2, 3), {"units": "K"})})
    path = artefacts.write(ds, tmp_path / "a.h5", {"name": "s", "problem": {"name": "heat"}}, "test")
    with xr.open_dataset(path) as back:
        assert back["u"].dims == ("sample", "dof") and back["u"].attrs["units"] == "K"
        np.testing.assert_array_equal(back["u"].values, ds["u"].values)
        for key in ("problem", "config_digest", "package_versions", "git_commit", "created"):
            assert key in back.attrs
        assert back.attrs["problem"] == "heat"


def test_failed_write_leaves_no_file(tmp_path):
    target = tmp_path / "b.h5"
    with pytest.raises(RuntimeError):
        with artefacts.atomic_path(target) as tmp:
            xr.Dataset({"x": ("i", np.ones(3))}).to_netcdf(tmp, engine="h5netcdf")
            raise RuntimeError("killed after writing")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_write_killed_midway_leaves_no_file(tmp_path):
    """SIGKILL while a large artefact is being written: no file under the final name."""
    target = tmp_path / "big.h5"
    code = (
        "import numpy as np, xarray as xr; from rom import artefacts\n"
        "ds = xr.Dataset({'u': (('sample', 'dof'), np.random.default_rng(0).random((400, 250000)))})\n"
        f"artefacts.write(ds, {str(target)!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.startswith(".big.h5.tmp") for p in tmp_path.iterdir()):
        time.sleep(0.01)
    assert any(p.name.startswith(".big.h5.tmp") for p in tmp_path.iterdir()), "the write never started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not target.exists()


def test_missing_artefact_is_one_clear_error(tmp_path):
    with pytest.raises(artefacts.ArtefactError, match="artefact not found"):
        artefacts.read(tmp_path / "nope.h5")
