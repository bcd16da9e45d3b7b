"""Device and system files: every number finite and in its range, no booleans as numbers, no unknown keys.

A bad field fails on one line naming the file, the field and the valid range; every catalog file still loads.
"""

from __future__ import annotations

import json
import math

import pytest

from fathom.catalog.hardware import get_device, get_system, list_gpus, list_systems, resolve_cluster
from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.specs.hardware import ATTENTION_KERNEL_CLASSES, DeviceEfficiency, DeviceSpec, SystemSpec
from fathom.specs.plan import ATTENTION_KERNELS

FRACTION = "a number in (0, 1]"
POSITIVE = "a finite number > 0"
NON_NEGATIVE = "a finite number >= 0"
COUNT = "a positive integer"


def _one_line(excinfo: pytest.ExceptionInfo[FathomInputError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("override", "field", "fragment"),
    [
        # efficiency fractions: (0, 1]
        ("efficiency: {attention: {flash2: -0.3}}", "efficiency.attention.flash2", f"{FRACTION}, got -0.3"),
        ("efficiency: {attention: {flash2: 2.0}}", "efficiency.attention.flash2", f"{FRACTION}, got 2.0"),
        ("efficiency: {attention: {flash3: 0}}", "efficiency.attention.flash3", FRACTION),
        ("efficiency: {gemm: {bf16: 1.3}}", "efficiency.gemm.bf16", FRACTION),
        ("efficiency: {gemm: {default: .inf}}", "efficiency.gemm.default", f"{FRACTION}, got inf"),
        ("efficiency: {memory: 0}", "efficiency.memory", FRACTION),
        ("efficiency: {memory: .nan}", "efficiency.memory", f"{FRACTION}, got nan"),
        ("efficiency: {gemm_sustained: 1.5}", "efficiency.gemm_sustained", FRACTION),
        ("efficiency: {optimizer: -0.1}", "efficiency.optimizer", FRACTION),
        ("efficiency: {gemm_memory: {fp32: 3}}", "efficiency.gemm_memory.fp32", FRACTION),
        ("efficiency: {elementwise: {bf16: 0}}", "efficiency.elementwise.bf16", FRACTION),
        ("efficiency: {memory: true}", "efficiency.memory", f"{FRACTION}, got a boolean (true)"),
        # efficiency times: finite, >= 0
        ("efficiency: {host_op_us: -1}", "efficiency.host_op_us", f"{NON_NEGATIVE}, got -1"),
        ("efficiency: {kernel_launch_us: .inf}", "efficiency.kernel_launch_us", f"{NON_NEGATIVE}, got inf"),
        ("efficiency: {loss_ns_per_element: {fwd: .nan}}", "efficiency.loss_ns_per_element.fwd", NON_NEGATIVE),
        ("efficiency: {dropout_rng_ns_per_element: -2}", "efficiency.dropout_rng_ns_per_element", NON_NEGATIVE),
        ("efficiency: {first_touch_ns_per_byte: .inf}", "efficiency.first_touch_ns_per_byte", NON_NEGATIVE),
        ("efficiency: {gemm_row_ns: {bf16: -5}}", "efficiency.gemm_row_ns.bf16", NON_NEGATIVE),
        ("efficiency: {gemm_overlap: {bf16: 0.5}}", "efficiency.gemm_overlap.bf16", "a number in [1, 16], got 0.5"),
        ("efficiency: {gemm_overlap: {bf16: .inf}}", "efficiency.gemm_overlap.bf16", "a number in [1, 16], got inf"),
        ("efficiency: {gemm_overlap: {fp4: 2}}", "efficiency.gemm_overlap.fp4", "unknown precision"),
        (
            "efficiency: {serving_in_situ: {bf16: 0.1}}",
            "efficiency.serving_in_situ.bf16",
            "a number in [0.25, 4], got 0.1",
        ),
        ("efficiency: {serving_in_situ: {int3: 1.2}}", "efficiency.serving_in_situ.int3", "unknown precision"),
        # efficiency keys: known precisions / kernel classes / passes
        ("efficiency: {gemm: {bf17: 0.5}}", "efficiency.gemm.bf17", "unknown precision (valid: default, fp32"),
        ("efficiency: {attention: {flash9: 0.5}}", "efficiency.attention.flash9", "unknown attention kernel class"),
        ("efficiency: {gemm_memory: {fp4: 0.5}}", "efficiency.gemm_memory.fp4", "unknown precision"),
        ("efficiency: {elementwise: {half: 0.5}}", "efficiency.elementwise.half", "unknown precision"),
        ("efficiency: {loss_ns_per_element: {fw: 1}}", "efficiency.loss_ns_per_element.fw", "(valid: fwd, bwd)"),
        ("efficiency: {flops: 0.5}", "efficiency.flops", "Extra inputs"),
        # device numbers: finite, positive, no booleans
        ("memory_gib: .inf", "memory_gib", f"{POSITIVE}, got inf"),
        ("memory_gib: true", "memory_gib", f"{POSITIVE}, got a boolean (true)"),
        ("memory_gib: lots", "memory_gib", f"{POSITIVE}, got 'lots'"),
        ("peak_tflops: {bf16: .inf}", "peak_tflops.bf16", f"{POSITIVE}, got inf"),
        ("peak_tflops: {bf16: -1}", "peak_tflops.bf16", POSITIVE),
        ("peak_tflops: {bf17: 100}", "peak_tflops.bf17", "unknown precision (valid: fp32"),
        ("mem_bw_GBps: .inf", "mem_bw_GBps", f"{POSITIVE}, got inf"),
        ("tdp_w: true", "tdp_w", "a boolean (true)"),
        ("host_link_GBps: -.inf", "host_link_GBps", POSITIVE),
        ("runtime_reserved_gib: .nan", "runtime_reserved_gib", POSITIVE),
        ("price_per_gpu_hour_usd: .inf", "price_per_gpu_hour_usd", POSITIVE),
        ("num_compute_units: true", "num_compute_units", f"{COUNT}, got a boolean (true)"),
        ("num_compute_units: 0", "num_compute_units", f"{COUNT}, got 0"),
        ("num_compute_units: 13.5", "num_compute_units", f"{COUNT}, got 13.5"),
    ],
)
def test_bad_device_fields_fail_on_one_line_naming_field_and_range(tmp_path, override, field, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(f"base: h100-sxm\n{override}\n")
    with pytest.raises(FathomInputError) as excinfo:
        get_device(str(path))
    message = _one_line(excinfo)
    assert str(path) in message and f"field {field}:" in message and fragment in message, message


@pytest.mark.parametrize(
    ("override", "field", "fragment"),
    [
        ("pue: 0.5", "pue", "a number in [1, 10], got 0.5"),
        ("pue: 11", "pue", "a number in [1, 10]"),
        ("pue: .inf", "pue", "a number in [1, 10], got inf"),
        ("inter_node_bw_GBps: .inf", "inter_node_bw_GBps", f"{POSITIVE}, got inf"),
        ("intra_node_bw_GBps: .nan", "intra_node_bw_GBps", POSITIVE),
        ("intra_node_latency_us: .inf", "intra_node_latency_us", POSITIVE),
        ("inter_node_efficiency: 1.2", "inter_node_efficiency", FRACTION),
        ("intra_node_efficiency: .inf", "intra_node_efficiency", FRACTION),
        ("nvme_bw_GBps: true", "nvme_bw_GBps", "a boolean (true)"),
        ("host_memory_gib: .inf", "host_memory_gib", POSITIVE),
        ("gpus_per_node: true", "gpus_per_node", f"{COUNT}, got a boolean (true)"),
        ("scaleup_domain: false", "scaleup_domain", f"{COUNT}, got a boolean (false)"),
    ],
)
def test_bad_system_fields_fail_in_gpu_and_system_files(tmp_path, override, field, fragment):
    gpu_file = tmp_path / "gpu.yaml"
    gpu_file.write_text(f"base: h100-sxm\nsystem: {{{override}}}\n")
    with pytest.raises(FathomInputError) as excinfo:
        resolve_cluster(str(gpu_file), 8)
    message = _one_line(excinfo)
    assert str(gpu_file) in message and f"field {field}:" in message and fragment in message, message

    system_file = tmp_path / "rack.yaml"
    system_file.write_text(f"base: dgx-h100\n{override}\n")
    with pytest.raises(FathomInputError) as excinfo:
        get_system(str(system_file))
    message = _one_line(excinfo)
    assert str(system_file) in message and f"field {field}:" in message and fragment in message, message


def test_a_full_system_file_with_a_low_pue_fails(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(
        "name: site\ndevice: h100-sxm\ngpus_per_node: 8\nintra_node_bw_GBps: 450\ninter_node_bw_GBps: 50\n"
        "pue: 0.3\nsource: test\n"
    )
    with pytest.raises(FathomInputError, match=r"field pue: expected a number in \[1, 10\], got 0.3"):
        resolve_cluster("h100-sxm", 8, system=str(path))


@pytest.mark.parametrize("field", ["pue", "inter_node_bw_GBps", "gpus_per_node"])
def test_bad_cli_style_overrides_fail(field):
    bad = {"pue": "0.5", "inter_node_bw_GBps": "inf", "gpus_per_node": True}[field]
    with pytest.raises(FathomInputError) as excinfo:
        resolve_cluster("h100-sxm", 8, overrides={field: bad})
    assert f"system override field {field}:" in _one_line(excinfo)


def test_good_values_still_load(tmp_path):
    """Ints where floats are expected, whole numbers as strings (CLI overrides), the edges of each range."""
    path = tmp_path / "ok.yaml"
    path.write_text(
        "base: h100-sxm\nmemory_gib: 80\ntdp_w: 700\nnum_compute_units: 132\n"
        "efficiency: {memory: 1, host_op_us: 0, kernel_launch_us: 0, gemm: {default: 1}, "
        "attention: {flash1: 0.2, unfused: 0.1}, loss_ns_per_element: {fwd: 0, bwd: 2}}\n"
        "system: {pue: 1, gpus_per_node: 4, inter_node_bw_GBps: 25}\n"
    )
    device = get_device(str(path))
    assert device.memory_gib == 80.0 and isinstance(device.memory_gib, float)
    assert device.efficiency.memory == 1.0 and device.efficiency.attention["unfused"] == 0.1
    cluster = resolve_cluster(str(path), 8, overrides={"pue": "10", "gpus_per_node": "2", "inter_node_bw_GBps": "12.5"})
    assert (cluster.system.pue, cluster.system.gpus_per_node, cluster.system.inter_node_bw_GBps) == (10.0, 2, 12.5)
    assert isinstance(cluster.system.gpus_per_node, int)


def test_the_models_check_direct_construction_too():
    with pytest.raises(ValueError, match="flash9"):
        DeviceEfficiency(attention={"flash9": 0.5})
    with pytest.raises(ValueError, match="got inf"):
        DeviceEfficiency(memory=math.inf)
    base = get_device("h100-sxm").model_dump()
    with pytest.raises(ValueError, match="boolean"):
        DeviceSpec.model_validate({**base, "memory_gib": True})
    with pytest.raises(ValueError, match=r"\[1, 10\]"):
        SystemSpec.model_validate({**get_system("dgx-h100").model_dump(), "pue": 0.5})


@pytest.mark.parametrize("name", list_gpus())
def test_every_catalog_gpu_loads_and_round_trips(name):
    device = get_device(name)
    assert DeviceSpec.model_validate(device.model_dump()) == device
    eff = device.efficiency
    for value in (*device.peak_tflops.values(), device.memory_gib, device.mem_bw_GBps, device.tdp_w):
        assert math.isfinite(value) and value > 0
    assert all(0 < f <= 1 for f in (*eff.gemm.values(), *eff.attention.values(), eff.memory, eff.gemm_sustained))


@pytest.mark.parametrize("name", list_systems())
def test_every_catalog_system_loads_with_a_real_pue(name):
    system = get_system(name)
    assert SystemSpec.model_validate(system.model_dump()) == system
    assert 1 <= system.pue <= 10


@pytest.mark.parametrize(
    ("override", "fragment"),
    [("memory_gib: .inf", "memory_gib"), ("efficiency: {attention: {flash2: -0.3}}", "efficiency.attention.flash2"),
     ("system: {pue: 0.5}", "pue")],
)  # fmt: skip
def test_cli_exits_2_with_one_line(tmp_path, capsys, override, fragment):
    path = tmp_path / "f.yaml"
    path.write_text(f"base: h100-sxm\n{override}\n")
    args = ["train", "--model", "llama-3.1-8b", "--gpu", str(path), "--num-gpus", "8", "--seq-len", "2048"]
    assert run([*args, "--global-batch", "64", "--json"]) == 2
    out = capsys.readouterr()
    assert fragment in out.err and "Infinity" not in out.out
    assert len(out.err.strip().splitlines()) == 1


def test_cli_accepts_a_good_override_file(tmp_path, capsys):
    path = tmp_path / "f.yaml"
    path.write_text("base: h100-sxm\nmemory_gib: 80\nefficiency: {attention: {flash2: 0.4}}\nsystem: {pue: 1.1}\n")
    args = ["train", "--model", "llama-3.1-8b", "--gpu", str(path), "--num-gpus", "8", "--seq-len", "2048"]
    assert run([*args, "--global-batch", "64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)


def test_attention_keys_are_the_plan_kernel_classes():
    assert ATTENTION_KERNEL_CLASSES == ATTENTION_KERNELS


def test_a_system_file_s_scale_up_domain_holds_at_least_a_node(tmp_path):
    path = tmp_path / "small-domain.yaml"
    path.write_text("base: dgx-h100\nscaleup_domain: 4\n")
    with pytest.raises(FathomInputError, match=r"field scaleup_domain: 4 is smaller than gpus_per_node \(8\)"):
        resolve_cluster("h100-sxm", 8, system=str(path))
