"""The hardware catalog: every file loads, datasheet peaks hold, bad input fails in one clear line."""

from __future__ import annotations

import pytest

from fathom.catalog.hardware import get_device, get_system, list_gpus, list_systems, resolve_cluster
from fathom.errors import FathomInputError
from fathom.specs.hardware import Cluster, DeviceSpec, SystemSpec

CANONICAL_GPUS = {
    "v100", "a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h800", "h200", "b200", "gb200", "l4", "l40s",
    "mi250x", "mi300x", "cpu",
}  # fmt: skip
CANONICAL_SYSTEMS = {
    "dgx-a100", "dgx-a100-40gb", "dgx-h100", "hgx-h800", "hgx-h200", "dgx-b200", "gb200-nvl72", "frontier",
    "mi300x-8", "dgx-v100", "pcie-node-h100", "l4-node", "l40s-node", "cpu-node",
}  # fmt: skip


def _one_line_error(excinfo: pytest.ExceptionInfo[FathomInputError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_canonical_names_present():
    assert CANONICAL_GPUS <= set(list_gpus())
    assert CANONICAL_SYSTEMS <= set(list_systems())


@pytest.mark.parametrize("name", list_gpus())
def test_every_device_loads_with_sources_and_sane_efficiencies(name):
    device = get_device(name)
    assert isinstance(device, DeviceSpec) and device.name == name
    assert device.source.strip() and device.efficiency.source.strip()
    assert device.efficiency.source != "fathom defaults"  # each file says where its efficiencies come from
    assert device.default_system in list_systems()
    eff = device.efficiency
    fractions = [*eff.gemm.values(), eff.memory, *eff.attention.values()]
    assert all(0 < f <= 1 for f in fractions)
    assert device.efficiency.kernel_launch_us >= 0


@pytest.mark.parametrize("name", list_systems())
def test_every_system_loads_and_its_device_exists(name):
    system = get_system(name)
    assert isinstance(system, SystemSpec) and system.name == name
    assert system.source.strip()
    assert system.device in list_gpus()
    assert 0 < system.intra_node_efficiency <= 1 and 0 < system.inter_node_efficiency <= 1
    assert system.domain_size >= system.gpus_per_node


@pytest.mark.parametrize(
    ("name", "bf16"),
    [("a100-80gb", 312.0), ("a100-40gb", 312.0), ("h100-sxm", 989.4), ("mi250x", 191.5), ("mi300x", 1307.4),
     ("b200", 2250.0)],
)  # fmt: skip
def test_dense_bf16_peaks_match_datasheets(name, bf16):
    assert get_device(name).peak_tflops["bf16"] == pytest.approx(bf16)


def test_datasheet_details_that_are_easy_to_get_wrong():
    assert get_device("mi250x").memory_gib == 64  # one GCD, not the 128 GB package
    assert get_device("h800").peak_tflops == get_device("h100-sxm").peak_tflops
    assert get_system("hgx-h800").intra_node_bw_GBps == 200  # 400 GB/s bidirectional
    assert get_system("dgx-h100").inter_node_bw_GBps == 50  # 400 Gb/s NDR per GPU
    assert get_system("frontier").inter_node_bw_GBps == 12.5  # 4 x 200 Gb/s per 8 GCDs
    nvl72 = get_system("gb200-nvl72")
    assert (nvl72.gpus_per_node, nvl72.scaleup_domain, nvl72.domain_size) == (4, 72, 72)
    assert "bf16" not in get_device("v100").peak_tflops  # V100 has no BF16 tensor cores: falls back to fp16
    assert get_device("v100").peak_flops_per_s("bf16") == pytest.approx(125e12)


def test_names_are_case_insensitive():
    assert get_device("H100-SXM") == get_device("h100-sxm")
    assert get_system(" DGX-H100 ") == get_system("dgx-h100")


def test_gpu_alone_implies_its_default_system():
    cluster = resolve_cluster("h100-sxm", 64)
    assert isinstance(cluster, Cluster)
    assert (cluster.system.name, cluster.system.device, cluster.num_gpus) == ("dgx-h100", "h100-sxm", 64)
    assert resolve_cluster("mi250x", 16).system.name == "frontier"
    assert resolve_cluster("cpu", 1).system.name == "cpu-node"


def test_explicit_system_takes_the_chosen_gpu():
    cluster = resolve_cluster("h200", 16, system="dgx-h100")
    assert cluster.device.name == "h200" and cluster.system.device == "h200"
    assert cluster.system.intra_node_bw_GBps == get_system("dgx-h100").intra_node_bw_GBps


def test_overrides_change_system_fields():
    overrides = {"gpus_per_node": 4, "inter_node_bw_GBps": "12.5", "intra_node_efficiency": 0.7}
    cluster = resolve_cluster("a100-80gb", 32, overrides=overrides)
    assert cluster.system.gpus_per_node == 4
    assert cluster.system.inter_node_bw_GBps == 12.5
    assert cluster.system.intra_node_efficiency == 0.7
    assert get_system("dgx-a100").gpus_per_node == 8  # the catalog entry is untouched


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"inter_node_bw_GBps": -1}, "inter_node_bw_GBps"),
     ({"intra_node_efficiency": 1.5}, "intra_node_efficiency"),
     ({"gpus_per_node": 0}, "gpus_per_node"),
     ({"gpus_per_node": 8, "scaleup_domain": 4}, "scaleup_domain"),
     ({"device": "mi300x"}, "device")],
)  # fmt: skip
def test_invalid_overrides_give_one_line_errors(overrides, field):
    with pytest.raises(FathomInputError) as excinfo:
        resolve_cluster("h100-sxm", 8, overrides=overrides)
    assert field in _one_line_error(excinfo)


def test_unknown_override_field_suggests_the_real_one():
    with pytest.raises(FathomInputError) as excinfo:
        resolve_cluster("h100-sxm", 8, overrides={"gpus_per_nodes": 4})
    assert "'gpus_per_node'" in _one_line_error(excinfo)


@pytest.mark.parametrize("bad", [0, -8, 2.5, True, "8"])
def test_num_gpus_must_be_a_positive_integer(bad):
    with pytest.raises(FathomInputError, match="num_gpus"):
        resolve_cluster("h100-sxm", bad)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("h100", ["'h100-sxm'", "'h100-pcie'"]), ("a100", ["'a100-40gb'", "'a100-80gb'", "'a100-pcie-80gb'"])],
)
def test_unknown_gpu_suggests_close_matches(typed, expected):
    with pytest.raises(FathomInputError) as excinfo:
        get_device(typed)
    message = _one_line_error(excinfo)
    hint = message.split("did you mean", 1)[1].split("(valid:", 1)[0]
    assert message.startswith("gpu: unknown name") and all(name in hint for name in expected)


def test_unknown_system_names_the_field():
    with pytest.raises(FathomInputError) as excinfo:
        resolve_cluster("h100-sxm", 8, system="dgx-h1000")
    message = _one_line_error(excinfo)
    assert message.startswith("system: unknown name") and "'dgx-h100'" in message


def test_yaml_gpu_file_with_base_overrides_and_system(tmp_path):
    path = tmp_path / "my-h100.yaml"
    path.write_text(
        "base: H100-SXM\n"
        "peak_tflops: {bf16: 900}\n"
        "efficiency: {gemm: {bf16: 0.7}}\n"
        "system: {gpus_per_node: 4, inter_node_bw_GBps: 25}\n"
    )
    device = get_device(str(path))
    base = get_device("h100-sxm")
    assert device.name == "my-h100"
    assert device.peak_tflops["bf16"] == 900
    assert device.peak_tflops["fp8"] == base.peak_tflops["fp8"]  # merged key by key
    assert device.efficiency.gemm["bf16"] == 0.7
    assert device.efficiency.gemm["fp8"] == base.efficiency.gemm["fp8"]
    assert device.memory_gib == base.memory_gib and "my-h100.yaml" in device.source
    cluster = resolve_cluster(str(path), 16)
    assert cluster.system.name == "dgx-h100" and cluster.system.device == "my-h100"
    assert (cluster.system.gpus_per_node, cluster.system.inter_node_bw_GBps) == (4, 25)
    explicit = resolve_cluster(str(path), 16, overrides={"gpus_per_node": 2})
    assert explicit.system.gpus_per_node == 2  # explicit overrides win over the file's system block


def test_yaml_full_device_and_system_files(tmp_path):
    device_file = tmp_path / "tiny.yaml"
    device_file.write_text(
        "name: tiny\nvendor: test\npeak_tflops: {bf16: 10}\nmemory_gib: 8\nmem_bw_GBps: 100\ntdp_w: 50\n"
        "num_compute_units: 4\ndefault_system: cpu-node\nsource: a test device\n"
    )
    system_file = tmp_path / "rack.yml"
    system_file.write_text("base: dgx-a100\ngpus_per_node: 16\n")
    cluster = resolve_cluster(str(device_file), 32, system=str(system_file))
    assert cluster.device.name == "tiny"
    assert (cluster.system.name, cluster.system.gpus_per_node, cluster.system.device) == ("rack", 16, "tiny")


@pytest.mark.parametrize(
    ("text", "needle"),
    [("base: h100-sxm\npeak_tflops: {bf16: -1}\n", "peak_tflops.bf16"),
     ("base: h100-sxm\npeak_tflops: {fp4: 9000}\n", "peak_tflops.fp4"),
     ("base: h100-sxm\nefficiency: {gemm: {bf16: 1.3}}\n", "efficiency.gemm.bf16"),
     ("base: h100-sxm\nefficiency: {memory: 0}\n", "efficiency.memory"),
     ("base: h100-sxm\nmemory_gib: lots\n", "memory_gib"),
     ("base: h100-sxm\nsram_mib: 50\n", "sram_mib"),
     ("base: h100\n", "base"),
     ("name: x\nvendor: y\n", "peak_tflops"),
     ("base: h100-sxm\n  bad: [indent\n", "invalid YAML"),
     ("- just\n- a list\n", "expected a mapping")],
)  # fmt: skip
def test_bad_gpu_files_name_file_and_field(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(FathomInputError) as excinfo:
        get_device(str(path))
    message = _one_line_error(excinfo)
    assert str(path) in message and needle in message


def test_bad_system_block_in_gpu_file_names_the_file(tmp_path):
    path = tmp_path / "gpu.yaml"
    path.write_text("base: h100-sxm\nsystem: {intra_node_bw_GBps: -5}\n")
    with pytest.raises(FathomInputError) as excinfo:
        resolve_cluster(str(path), 8)
    message = _one_line_error(excinfo)
    assert str(path) in message and "intra_node_bw_GBps" in message


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FathomInputError, match="no such file"):
        get_device(str(tmp_path / "nope.yaml"))


def test_gh100_parts_share_the_fitted_in_step_gemm_share():
    """H200 and H800 are the H100 SXM's die at the same power: they carry its fitted ``gemm_sustained``."""
    h100 = get_device("h100-sxm").efficiency.gemm_sustained
    assert h100 < 0.8  # fitted on its own rows, below the A100-fitted default
    for name in ("h200", "h800"):
        assert get_device(name).efficiency.gemm_sustained == h100
