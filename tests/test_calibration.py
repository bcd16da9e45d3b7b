"""The in-training constants in the code are the vTrain fit: no neighbouring value explains the data better."""

from fathom.specs.hardware import GEMM_SUSTAINED_DEFAULT, HOST_OP_US_DEFAULT
from fathom.validation.calibrate import is_local_optimum


def test_stack_constants_are_the_vtrain_fit():
    assert is_local_optimum("vtrain", HOST_OP_US_DEFAULT, GEMM_SUSTAINED_DEFAULT), (
        "re-run `fathom validate fit-constants` and update the defaults in fathom.specs.hardware"
    )
