"""Hostile inputs for the hardening tests: hand-made pickles and a runner for CLI commands under a memory cap.

Nothing here is unpickled in the test process: every crafted file is written to a temporary folder and read by a
`stylegan` subprocess whose address space is capped (RLIMIT_AS), so a regression shows as a failed assertion
(signal death, MemoryError traceback) instead of crashing or swapping the test run.
"""

from __future__ import annotations

import os
import pickle
import resource
import struct
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transfer_support import _nvidia_reconstruct, nvidia_modules

ADDRESS_SPACE_LIMIT = 3 << 30
REPO = Path(__file__).resolve().parents[1]


class Call:
    """Pickles as ``func(*args)`` (plus ``BUILD state`` when given): how a pickle asks for any call it likes."""

    def __init__(self, func: Any, args: tuple, state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple:
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def persistent(class_name: str, state: dict[str, Any]) -> Call:
    """An NVIDIA persistent object (as torch_utils.persistence pickles it) with the given ``__dict__``."""
    meta = dict(type="class", version=6, module_src="# training/networks.py\n", class_name=class_name, state=state)
    return Call(_nvidia_reconstruct, (meta,))


def generator(init_kwargs: Any, parameters: dict[str, Any] | None = None) -> Call:
    state = {"_parameters": OrderedDict(parameters or {}), "_buffers": OrderedDict(), "_modules": OrderedDict(),
             "_init_args": (), "_init_kwargs": init_kwargs}  # fmt: skip
    return persistent("Generator", state)


def network_pickle(G: Any, **extra: Any) -> bytes:
    """``{G, D: None, G_ema: G, **extra}`` pickled with protocol 4, as NVIDIA's snapshot dict."""
    with nvidia_modules():
        return pickle.dumps({"G": G, "D": None, "G_ema": G, **extra}, protocol=4)


def storage_blob(declared: int, data: bytes, count: int | None = None) -> bytes:
    """A legacy torch.save of one FloatStorage declaring ``declared`` elements and holding ``data``."""

    def text(value: str) -> bytes:
        return b"X" + struct.pack("<I", len(value)) + value.encode()

    pid = (b"\x80\x02(" + text("storage") + b"ctorch\nFloatStorage\n" + text("k") + text("cpu") + b"\x8a\x08"
           + struct.pack("<q", declared) + b"NtQ.")  # fmt: skip
    header = b"".join(pickle.dumps(value, protocol=2) for value in (0x1950A86A20F9469CFC6C, 1001,
                                                                        {"little_endian": True}))  # fmt: skip
    keys = pickle.dumps(["k"], protocol=2)
    return header + pid + keys + struct.pack("<q", declared if count is None else count) + data


def tensor_call(blob: bytes, size: tuple[int, ...], stride: tuple[int, ...]) -> Call:
    storage = Call(torch.storage._load_from_bytes, (blob,))
    return Call(torch._utils._rebuild_tensor_v2, (storage, 0, size, stride, False, OrderedDict()))


def nested_lists(depth: int) -> bytes:
    return b"]" * depth + b"a" * (depth - 1)


def hostile_pickles() -> dict[str, bytes]:
    """name -> file content of a crafted NVIDIA-style pickle that must be refused in one line."""
    object_dtype = np.dtype("O")
    reconstruct = np.zeros(1).__reduce__()[0]
    cases = {
        # The 248-byte segfault: numpy.ndarray called with dtype 'O' over attacker bytes.
        "ndarray_object_call": network_pickle(generator({"z_dim": Call(np.ndarray, ((4,), object_dtype, b"A" * 32))})),
        "ndarray_object_state": network_pickle(generator({"z_dim": Call(
            reconstruct, (np.ndarray, (0,), b"b"), (1, (4,), object_dtype, False, b"A" * 32))})),  # fmt: skip
        "scalar_object": network_pickle(generator({"z_dim": Call(np.float64(0).__reduce__()[0], (object_dtype,
                                                                                               b"A" * 8))})),
        "structured_object_dtype": network_pickle(generator({"z_dim": Call(np.dtype, ("V8", False, True), (
            3, "|", None, ("a",), {"a": (object_dtype, 0)}, 8, 1, 16))})),  # fmt: skip
        "bytearray_1gib": network_pickle(generator({"z_dim": Call(bytearray, (1 << 30,))})),
        "ndarray_stride0": network_pickle(generator({"z_dim": Call(np.ndarray, ((1 << 31,), np.dtype("f8"), b"\0" * 8,
                                                                                0, (0,)))})),  # fmt: skip
        "tensor_stride0": network_pickle(generator({}, {"w": tensor_call(storage_blob(1, b"\0" * 4), (1 << 20,),
                                                                          (0,))})),  # fmt: skip
        "storage_declares_1tib": network_pickle(generator({}, {"w": tensor_call(storage_blob(1 << 38, b"\0" * 4),
                                                                                 (1,), (1,))})),  # fmt: skip
        "tensor_past_storage": network_pickle(generator({}, {"w": tensor_call(storage_blob(1, b"\0" * 4), (1 << 20,),
                                                                               (1,))})),  # fmt: skip
        "torch_tensor_call": network_pickle(generator({}, {"w": Call(torch.Tensor, (1 << 31,))})),
        "channel_base_huge": network_pickle(generator(_kwargs(synthesis_kwargs={"channel_base": 1 << 60}))),
        "c_dim_million": network_pickle(generator(_kwargs(c_dim=10**6))),
        # Within every per-key bound, but a 1024 px network needs far more tensors than the file holds.
        "kwargs_without_tensors": network_pickle(generator(_kwargs(
            z_dim=512, c_dim=1000, w_dim=512, img_resolution=1024,
            synthesis_kwargs={"channel_base": 65536, "channel_max": 1024}))),  # fmt: skip
        "kwargs_list_where_dict": network_pickle(generator(_kwargs(synthesis_kwargs=[1, 2]))),
        # 300 views of one 1 M-value storage must not pass for 300 M stored values.
        "shared_storage_views": network_pickle(generator(_kwargs(
            z_dim=512, c_dim=10_000, w_dim=1024, img_resolution=1024,
            synthesis_kwargs={"channel_base": 65536, "channel_max": 1024}), _shared_views(300, 1 << 20))),
        "resolution_not_power_of_two": network_pickle(generator(_kwargs(img_resolution=24))),  # fmt: skip
        "deep_lists": b"\x80\x02}X\x01\x00\x00\x00G" + nested_lists(200_000) + b"s.",
        "deep_tuple_key": b"\x80\x02}" + b")" + b"\x85" * 200_000 + b"Ns.",
        "binbytes8_1tib": b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b".",
        "bytearray8_1tib": b"\x80\x05\x96" + struct.pack("<Q", 1 << 40) + b".",
        "memo_index_4g": b"\x80\x02Nr\xff\xff\xff\xff.",
        "shared_list_bomb": _list_bomb(60),
    }
    good = _good_pickle()
    cases["truncated"] = good[: len(good) // 2]
    return cases


def _shared_views(count: int, values: int) -> dict[str, Call]:
    storage = Call(torch.storage._load_from_bytes, (storage_blob(values, b"\0" * (4 * values)),))
    return {f"w{index}": Call(torch._utils._rebuild_tensor_v2, (storage, 0, (values,), (1,), False, OrderedDict()))
            for index in range(count)}  # fmt: skip


def _kwargs(**overrides: Any) -> dict[str, Any]:
    return {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 16, "img_channels": 3, **overrides}


def _list_bomb(levels: int) -> bytes:
    # L0 = []; L(i+1) = [Li, Li] via memo: 2**levels leaves from a few hundred bytes.
    body = b"]q\x00"
    for level in range(levels):
        body += b"(h" + bytes([level]) + b"h" + bytes([level]) + b"lq" + bytes([level + 1])
    return b"\x80\x02}X\x01\x00\x00\x00G" + body + b"s."


def _good_pickle() -> bytes:
    from stylegan_core.networks import Generator

    G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs={"num_layers": 1},
                  synthesis_kwargs={"channel_base": 64, "channel_max": 8})  # fmt: skip
    import io

    from transfer_support import NvidiaPickler

    buffer = io.BytesIO()
    with nvidia_modules():
        NvidiaPickler(buffer, 4, "# training/networks.py\n", {id(G): G.init_kwargs}, False).dump(
            {"G": G, "D": None, "G_ema": G})
    return buffer.getvalue()


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


def run_stylegan(*argv: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m stylegan_core.cli ARGV`` with a 3 GiB address-space limit, single-threaded, output captured."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "stylegan_core.cli", *argv], capture_output=True, text=True, timeout=timeout,
        env=env, cwd=cwd or REPO, preexec_fn=_limit_address_space, check=False,
    )  # fmt: skip


def assert_clean_refusal(result: subprocess.CompletedProcess[str], expected: str | None = None) -> str:
    """Non-zero exit (not a signal), exactly one stderr line, no traceback, no training tick; returns the line."""
    output = result.stdout + result.stderr
    assert result.returncode > 0, f"exit {result.returncode} (negative: killed by a signal)\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert "tick " not in result.stdout, result.stdout[-3000:]
    if expected is not None:
        assert expected in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------------------------
# Training zips.


def png(width: int = 16, height: int = 16, mode: str = "RGB", seed: int = 0) -> bytes:
    import io

    import PIL.Image

    channels = {"L": 1, "RGB": 3}[mode]
    pixels = np.random.RandomState(seed).randint(0, 256, size=[height, width, channels], dtype=np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG signature and IHDR declaring a huge image, then nothing (a decompression bomb's calling card)."""
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def dataset_zip(path: Path, count: int = 64, labels: Any = None, replace: dict[int, bytes] | None = None,
                raw_labels: bytes | None = None) -> Path:  # fmt: skip
    """NVIDIA-layout zip of ``count`` 16x16 RGB PNGs (stored); ``replace`` swaps image bytes by index."""
    import json
    import zipfile

    names = [f"00000/img{index:08d}.png" for index in range(count)]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for index, name in enumerate(names):
            archive.writestr(name, (replace or {}).get(index) or png(seed=index))
        if raw_labels is not None:
            archive.writestr("dataset.json", raw_labels)
        elif labels is not None:
            archive.writestr("dataset.json", json.dumps({"labels": [[name, label] for name, label in
                                                                    zip(names, labels, strict=True)]}))  # fmt: skip
    return path


def corrupt_member(path: Path, index: int) -> Path:
    """Flip one byte inside the stored data of image ``index`` (past its PNG header): a CRC error on read."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"00000/img{index:08d}.png")
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    position = info.header_offset + 30 + name_length + extra_length + 60
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def encrypted_member(path: Path, index: int) -> Path:
    """Mark image ``index`` as encrypted in the central directory (zipfile then asks for a password)."""
    data = bytearray(path.read_bytes())
    name = f"00000/img{index:08d}.png".encode()
    entry = data.index(b"PK\x01\x02")  # central directory entries: signature, then the name at offset 46
    while data[entry + 46 : entry + 46 + len(name)] != name:
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 8] |= 0x01
    path.write_bytes(bytes(data))
    return path


def corrupt_png(seed: int = 0) -> bytes:
    """A 16x16 PNG whose compressed image data is damaged (zip CRC fine, header fine, decoding fails)."""
    data = bytearray(png(seed=seed))
    start = data.index(b"IDAT") + 4
    for offset in range(start + 2, start + 40):
        data[offset] ^= 0x5A
    return bytes(data)


def zip_bomb(path: Path) -> Path:
    import zipfile

    dataset_zip(path, count=4)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("00000/img00000004.png", b"\0" * (65 << 20))  # 65 MiB of zeros, 65 KB deflated
    return path


def hostile_training_cases(folder: Path) -> dict[str, tuple[Path, list[str], str]]:
    """name -> (dataset zip, extra `stylegan train` arguments, text the one error line must contain)."""
    folder.mkdir(parents=True, exist_ok=True)
    ints = [index % 3 for index in range(64)]
    good = dataset_zip(folder / "good.zip", labels=ints)
    evil = folder / "evil.pkl"
    evil.write_bytes(hostile_pickles()["ndarray_object_call"])
    truncated = folder / "truncated.pt"
    torch.save({"format": "stylegan_core.snapshot/1", "pad": torch.zeros(4096)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:3000])

    def labelled(name: str, labels: list[Any]) -> Path:
        return dataset_zip(folder / f"{name}.zip", labels=labels)

    return {
        "wrong_size_image": (dataset_zip(folder / "size.zip", replace={37: png(8, 8)}), [], "image is 8x8"),
        "grey_among_rgb": (dataset_zip(folder / "grey.zip", replace={5: png(mode="L")}), [], "with 1 channel"),
        "label_million": (labelled("million", ints[:-1] + [10**6]), ["--cond=1"], "integers in [0, 10000)"),
        "label_int64_max": (labelled("int64", [2**63 - 1] + ints[1:]), ["--cond=1"], "integers in [0, 10000)"),
        "label_negative": (labelled("negative", [-1] + ints[1:]), ["--cond=1"], "integers in [0, 10000)"),
        "labels_mixed": (labelled("mixed", [[1.0, 0.0]] + ints[1:]), ["--cond=1"], "labels must all be"),
        "labels_nan_vector": (labelled("nan", [[float("nan")]] * 64), ["--cond=1"], "finite numbers"),
        "labels_flat_ints": (dataset_zip(folder / "flat.zip", raw_labels=b'{"labels": [1, 2, 3]}'), ["--cond=1"],
                             "labels entry 0 is 1"),
        "labels_empty_entries": (dataset_zip(folder / "empty.zip", raw_labels=b'{"labels": [[], []]}'),
                                 ["--cond=1"], "labels entry 0 is []"),
        "labels_dict": (dataset_zip(folder / "dict.zip", raw_labels=b'{"labels": {"a.png": 1}}'), ["--cond=1"],
                        "'labels' is a dict"),
        "labels_not_json": (dataset_zip(folder / "text.zip", raw_labels=b"\xff not json"), ["--cond=1"],
                            "expected {'labels'"),
        "crc_corrupt_member": (corrupt_member(dataset_zip(folder / "crc.zip"), 10), [], "Bad CRC-32"),
        "zip_bomb_member": (zip_bomb(folder / "bomb.zip"), [], "a zip bomb?"),
        "encrypted_member": (encrypted_member(dataset_zip(folder / "encrypted.zip"), 7), [], "img00000007.png"),
        "corrupt_png_data": (dataset_zip(folder / "idat.zip", replace={20: corrupt_png()}), [], "img00000020.png"),
        "png_bomb_header": (dataset_zip(folder / "pngbomb.zip", replace={0: bomb_png_header()}), [],
                            "cannot decode image"),
        "truncated_zip": (_truncated_copy(good, folder / "cut.zip"), [], "cut.zip"),
        "resume_evil_pickle": (good, [f"--resume={evil}"], "only plain number dtypes"),
        "resume_truncated_snapshot": (good, [f"--resume={truncated}"], "truncated or corrupt snapshot"),
    }


def _truncated_copy(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target
