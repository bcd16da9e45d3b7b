"""The fitted host-overhead constant in the code is the one the vTrain data gives (refit after model changes)."""

import numpy as np

from fathom.specs.hardware import HOST_OP_US_DEFAULT
from fathom.validation.calibrate import fit_host_op_us


def test_host_overhead_default_is_the_vtrain_fit():
    fit = fit_host_op_us("vtrain", grid_us=np.arange(HOST_OP_US_DEFAULT - 6, HOST_OP_US_DEFAULT + 6.5, 1.0))
    assert fit.host_op_us == HOST_OP_US_DEFAULT, "re-run `fathom validate fit-host-overhead` and update the default"
    assert fit.rows == 1440
