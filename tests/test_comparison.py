"""The cross-study comparison keeps a metric when a study has no value for it (a blank), counts a metric
as differing only when two studies have different values, and keeps blank-holed columns numeric."""
import numpy as np

from conftest import tiny_study
from rom import config
from rom.comparison import differing, numeric, table


def test_blanks_do_not_hide_metrics_that_differ():
    studies = {n: config.validate(tiny_study(name=n)) for n in ("a", "b", "c")}
    pod = lambda n, e: {"title": "POD", "order": 20, "metrics": {"POD modes": n, "error": e}}  # noqa: E731
    sections = {"a": [pod(15, 6e-5)], "b": [pod(4, 0.22)], "c": [{"title": "MMGP", "order": 50,
                                                                  "metrics": {"u_x RRMSE": 0.04, "morphing": "mean_value"}}]}
    columns, rows, first = table(studies, sections)
    j = columns.index("POD: POD modes")
    assert [r[j] for r in rows] == [15, 4, ""]  # c has no POD: a blank, not a dropped column
    np.testing.assert_array_equal(numeric(rows, j), [15.0, 4.0, np.nan])
    varying = {columns[k] for k in differing(columns, rows, first)}
    # Present in one study only: not a difference. Equal up to 12 digits: not a difference either.
    assert varying == {"POD: POD modes", "POD: error"}
    sections["b"][0]["metrics"]["error"] = 6e-5 * (1 + 1e-14)
    columns, rows, first = table(studies, sections)
    assert {columns[k] for k in differing(columns, rows, first)} == {"POD: POD modes"}
