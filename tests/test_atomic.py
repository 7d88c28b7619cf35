"""One module writes every file: a failed write keeps the old file, leaves no temporary, and honours the umask."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from stylegan_core.io.atomic import (
    atomic_directory,
    atomic_file,
    atomic_outputs,
    sha256_file,
    write_json_atomic,
    write_text_atomic,
)


def test_a_failed_write_keeps_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_file(target, "w") as file:
        file.write("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_outputs_are_replaced_together(tmp_path: Path) -> None:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    with atomic_outputs(a, b) as (temp_a, temp_b):
        temp_a.write_bytes(b"A")
        temp_b.write_bytes(b"B")
        assert not a.exists() and not b.exists()
    assert (a.read_bytes(), b.read_bytes()) == (b"A", b"B")
    write_json_atomic(a, {"x": 1})
    assert a.read_text() == '{\n  "x": 1\n}'


def test_files_honour_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "shared.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_directory_swap(tmp_path: Path) -> None:
    final = tmp_path / "set"
    with atomic_directory(final) as temp:
        (temp / "one").write_text("1")
    with pytest.raises(RuntimeError), atomic_directory(final) as temp:
        (temp / "two").write_text("2")
        raise RuntimeError
    assert [p.name for p in final.iterdir()] == ["one"]
    assert [p.name for p in tmp_path.iterdir()] == ["set"]


def test_sha256_file(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()


def test_a_failed_write_names_the_output_not_the_temporary_file(tmp_path):
    final = tmp_path / "out.bin"
    with pytest.raises(OSError, match=r"cannot write .*out\.bin: Read-only") as error:
        with atomic_outputs(final) as (temp,):
            raise OSError(errno.EROFS, "Read-only file system", str(temp))  # as open() would raise it
    assert error.value.errno == errno.EROFS and ".tmp" not in str(error.value)
    assert not final.exists() and not list(tmp_path.iterdir())
