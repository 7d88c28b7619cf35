"""Crafted NVIDIA-style pickles (issue 13): each is refused by `stylegan import-nvidia` in one line, exit 1.

Every file is generated here and read only by a subprocess capped at 3 GiB of address space (hostile_support), so
a regression fails an assertion (signal death, traceback, MemoryError) instead of crashing the test run.
"""

from __future__ import annotations

import pytest
from hostile_support import assert_clean_refusal, hostile_pickles, run_stylegan

CASES = hostile_pickles()
# What the one line must say for the cases the issue names (the rest only need a clean refusal).
EXPECTED = {
    "ndarray_object_call": "only plain number dtypes",
    "ndarray_object_state": "only plain number dtypes",
    "scalar_object": "only plain number dtypes",
    "bytearray_1gib": "bytearray(int) refused",
    "torch_tensor_call": "torch.Tensor is called directly",
    "kwargs_list_where_dict": "synthesis_kwargs is a list",
    "shared_storage_views": "refusing to build it",
    "ndarray_stride0": "numpy.ndarray is called directly",
    "tensor_stride0": "without overlapping",
    "storage_declares_1tib": "more than the limits allow",
    "channel_base_huge": "channel_base",
    "c_dim_million": "c_dim = 1000000 is outside [0, 10000]",
    "kwargs_without_tensors": "refusing to build it",
    "deep_lists": "nested more than 100 deep",
    "deep_tuple_key": "nested more than 100 deep",
    "binbytes8_1tib": "truncated or corrupt",
    "bytearray8_1tib": "truncated or corrupt",
    "memo_index_4g": "memo index",
    "shared_list_bomb": "counting repeated references",
    "truncated": "truncated or corrupt",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_import_nvidia_refuses_crafted_pickle(tmp_path, name):
    source = tmp_path / f"{name}.pkl"
    source.write_bytes(CASES[name])
    result = run_stylegan("import-nvidia", str(source), str(tmp_path / "out.pt"))
    line = assert_clean_refusal(result, EXPECTED.get(name))
    assert result.returncode == 1 and str(source) in line
    assert not (tmp_path / "out.pt").exists() and list(tmp_path.iterdir()) == [source]


@pytest.mark.parametrize("name", ["ndarray_object_call", "deep_tuple_key"])
def test_generate_refuses_crafted_pickle(tmp_path, name):
    source = tmp_path / f"{name}.pkl"
    source.write_bytes(CASES[name])
    result = run_stylegan("generate", "--network", str(source), "--seeds", "0", "--outdir", str(tmp_path / "out"),
                          "--device", "cpu")  # fmt: skip
    line = assert_clean_refusal(result, EXPECTED[name])
    assert result.returncode == 1 and str(source) in line and not any((tmp_path / "out").glob("*.png"))
