"""The fitted in-training constants in the code are the ones the vTrain data gives (refit after model changes)."""

from fathom.specs.hardware import GEMM_SUSTAINED_DEFAULT, HOST_OP_US_DEFAULT
from fathom.validation.calibrate import fit_stack_constants


def test_stack_constants_are_the_vtrain_fit():
    fit = fit_stack_constants("vtrain", around=(HOST_OP_US_DEFAULT, GEMM_SUSTAINED_DEFAULT))
    message = "re-run `fathom validate fit-constants` and update the defaults in fathom.specs.hardware"
    assert (fit.host_op_us, fit.gemm_sustained) == (HOST_OP_US_DEFAULT, GEMM_SUSTAINED_DEFAULT), message
    assert fit.rows == 1440
