"""CPU tests of the compiled ops' plumbing: ``choose_impl`` rules, build diagnosis, cache key and the build lock."""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from pathlib import Path

import pytest
import torch

from stylegan_core.ops import dispatch
from stylegan_core.ops.cuda import build
from stylegan_core.ops.cuda.build import CudaOpsUnavailable, build_once, cache_key, summarize_build_log
from stylegan_core.ops.dispatch import ENV_VAR, choose_impl


class FakeCudaTensor:
    """Stands in for a CUDA tensor: choose_impl reads only ``is_cuda`` and ``device``."""

    is_cuda = True
    device = torch.device("cuda", 0)


def _failing_build() -> None:
    raise CudaOpsUnavailable("ninja is not installed (torch builds extensions with it)", "`pip install ninja`")


@pytest.fixture(autouse=True)
def fresh_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(dispatch, "_warned", False)


def _choose(impl: str, x: object) -> tuple[str, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        choice = choose_impl("bias_act", impl, x)  # type: ignore[arg-type]
    return choice, caught


def test_cpu_tensor_uses_reference_without_building_or_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "load_extension", lambda: pytest.fail("must not build for a CPU tensor"))
    for impl in ("auto", "ref"):
        assert _choose(impl, torch.zeros(2)) == ("ref", [])
    with pytest.raises(ValueError, match="impl must be"):
        choose_impl("bias_act", "fast", torch.zeros(2))


def test_failed_build_falls_back_with_one_warning_naming_cause_and_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "load_extension", _failing_build)
    choice, caught = _choose("auto", FakeCudaTensor())
    assert choice == "ref" and len(caught) == 1
    message = str(caught[0].message)
    assert "ninja is not installed" in message and "pip install ninja" in message and ENV_VAR in message
    assert _choose("auto", FakeCudaTensor()) == ("ref", [])  # once per process


def test_explicit_cuda_raises_instead_of_falling_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "load_extension", _failing_build)
    with pytest.raises(CudaOpsUnavailable, match=r"bias_act \(impl='cuda'\): ninja is not installed"):
        choose_impl("bias_act", "cuda", FakeCudaTensor())  # type: ignore[arg-type]


def test_successful_build_selects_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "load_extension", lambda: object())
    assert _choose("auto", FakeCudaTensor()) == ("cuda", [])
    assert _choose("cuda", FakeCudaTensor()) == ("cuda", [])
    assert _choose("ref", FakeCudaTensor()) == ("ref", [])


def test_environment_variable_overrides_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "load_extension", _failing_build)
    monkeypatch.setenv(ENV_VAR, "ref")
    assert _choose("auto", FakeCudaTensor()) == ("ref", [])  # no build attempted, no warning
    monkeypatch.setenv(ENV_VAR, "cuda")
    with pytest.raises(CudaOpsUnavailable, match="ninja"):
        choose_impl("upfirdn2d", "auto", FakeCudaTensor())  # type: ignore[arg-type]
    assert _choose("auto", torch.zeros(2)) == ("ref", [])  # CPU tensors have only the reference
    assert _choose("ref", FakeCudaTensor()) == ("ref", [])  # an explicit impl is not overridden
    monkeypatch.setenv(ENV_VAR, "gpu")
    with pytest.raises(ValueError, match=f"{ENV_VAR}='gpu'"):
        choose_impl("bias_act", "auto", torch.zeros(2))


def test_explicit_cuda_on_machine_without_cuda_names_the_cause() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises((CudaOpsUnavailable, ValueError)) as raised:
        choose_impl("bias_act", "cuda", torch.zeros(2))
    if torch.version.cuda is None:
        assert "built without CUDA" in str(raised.value) and "install a CUDA build of PyTorch" in str(raised.value)
    else:
        assert "is_available() is False" in str(raised.value)


def test_auto_on_cuda_like_tensor_with_cpu_torch_warns_with_real_diagnosis(monkeypatch: pytest.MonkeyPatch) -> None:
    if torch.version.cuda is not None:
        pytest.skip("needs a PyTorch built without CUDA")
    monkeypatch.setattr(build, "_result", None)
    choice, caught = _choose("auto", FakeCudaTensor())
    assert choice == "ref" and len(caught) == 1 and "built without CUDA" in str(caught[0].message)


def test_diagnosis_names_each_missing_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CudaOpsUnavailable, match="is_available"):
        build.diagnose_environment()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: False)
    with pytest.raises(CudaOpsUnavailable, match="ninja is not installed") as raised:
        build.diagnose_environment()
    assert "pip install ninja" in raised.value.fix
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: True)
    monkeypatch.setattr(build, "_find_nvcc", lambda: None)
    with pytest.raises(CudaOpsUnavailable, match="nvcc is not under CUDA_HOME") as raised:
        build.diagnose_environment()
    assert "CUDA_HOME" in raised.value.fix
    monkeypatch.setattr(build, "_find_nvcc", lambda: "/opt/cuda/bin/nvcc")
    monkeypatch.setattr(build, "_toolkit_problem", lambda: "CUDA_HOME=/usr/local is not a CUDA toolkit")
    with pytest.raises(CudaOpsUnavailable, match="CUDA_HOME=/usr/local is not") as raised:
        build.diagnose_environment()
    assert "set CUDA_HOME to the CUDA toolkit folder" in raised.value.fix
    monkeypatch.setattr(build, "_toolkit_problem", lambda: None)
    monkeypatch.setattr(build, "_nvcc_version", lambda nvcc: "12.4")
    with pytest.raises(CudaOpsUnavailable, match="nvcc 12.4 .* does not match the CUDA 13.0"):
        build.diagnose_environment()
    monkeypatch.setattr(build, "_nvcc_version", lambda nvcc: "13.0")
    assert build.diagnose_environment() == "13.0"


def test_build_check_needs_the_toolchain_but_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: True)
    monkeypatch.setattr(build, "_find_nvcc", lambda: "/opt/cuda/bin/nvcc")
    monkeypatch.setattr(build, "_nvcc_version", lambda nvcc: "13.0")
    monkeypatch.setattr(build, "_toolkit_problem", lambda: None)
    assert build.diagnose_environment(require_gpu=False) == "13.0"
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    with pytest.raises(CudaOpsUnavailable, match="no GPU is visible") as raised:
        build.gpu_arch_list()
    assert "TORCH_CUDA_ARCH_LIST" in raised.value.fix
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    assert build.gpu_arch_list() == "9.0"
    complete = type("Module", (), {"bias_act": staticmethod(len), "upfirdn2d": staticmethod(len)})
    assert build.missing_entry_points(complete) == []
    assert build.missing_entry_points(type("Module", (), {"bias_act": staticmethod(len)})) == ["upfirdn2d"]


def _pass_diagnosis(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    monkeypatch.setattr(build, "diagnose_environment", lambda require_gpu=True: "13.0")
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(root))


def test_compiler_error_reports_first_error_lines_and_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _pass_diagnosis(monkeypatch, tmp_path)
    log = "Error building extension 'x':\n[1/3] c++ -c sg_ops.cpp\nbias_act.cu(12): error: identifier \"foo\" is bad\n"

    def compile_fails(build_dir: Path, module_name: str, arch_list: str) -> None:
        raise RuntimeError(log)

    monkeypatch.setattr(build, "_compile_into", compile_fails)
    with pytest.raises(CudaOpsUnavailable, match='(?s)compiling the CUDA ops failed.*identifier "foo"') as raised:
        build._build_and_import()
    assert "CXX" in raised.value.fix
    assert [p.suffix for p in tmp_path.iterdir() if p.suffix != ".lock"] == [".log"]  # no build folder left
    assert (tmp_path / next(p.name for p in tmp_path.iterdir() if p.suffix == ".log")).read_text() == log


def test_unloadable_library_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _pass_diagnosis(monkeypatch, tmp_path)
    monkeypatch.setattr(build, "_compile_into", lambda d, name, arch: (d / f"{name}.so").write_text("not a library"))
    with pytest.raises(CudaOpsUnavailable, match="could not be loaded"):
        build._build_and_import()


def test_build_outcome_is_cached_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(build, "_result", None)
    monkeypatch.setattr(build, "_build_and_import", lambda: calls.append(1) or _failing_build())
    for _ in range(3):
        with pytest.raises(CudaOpsUnavailable, match="ninja"):
            build.load_extension()
    assert calls == [1]


def test_toolkit_problem_names_a_cuda_home_without_headers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(tmp_path))  # a folder with bin/nvcc only, like /usr/local
    assert "is not a CUDA toolkit" in build._toolkit_problem()
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "cuda_runtime.h").write_text("")
    assert build._toolkit_problem() is None
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", None)
    assert "no CUDA toolkit" in build._toolkit_problem()
    log = "[3/4] c++ sg_ops.o -o x.so\n/usr/bin/ld: cannot find -lcudart: No such file or directory\ncollect2: error"
    assert "cannot find -lcudart" in summarize_build_log(log)


def test_summarize_build_log_keeps_distinct_compiler_errors() -> None:
    # Shaped like torch's message: its prefix, ninja's progress, a compiler command line, the error (twice).
    command = "nvcc -DTORCH_EXTENSION_NAME=x -O3 -std=c++20 -c bias_act.cu -o bias_act.cuda.o"
    log = (
        f"Error building extension 'x': [1/3] {command}\nFAILED: [code=1] bias_act.cuda.o\n{command}\n"
        "In file included from bias_act.cu:8:\nCUDAMacros.h:9:10: fatal error: cuda_cmake_macros.h: No such file\n"
        "warning: something\na.cu(3): error: bad\nCUDAMacros.h:9:10: fatal error: cuda_cmake_macros.h: No such file\n"
        "ninja: build stopped: subcommand failed."
    )
    assert (
        summarize_build_log(log)
        == "CUDAMacros.h:9:10: fatal error: cuda_cmake_macros.h: No such file\na.cu(3): error: bad"
    )
    assert summarize_build_log("line one\n\nline two\nline three", max_lines=2) == "line one\nline two"


def test_cache_key_changes_with_every_input(tmp_path: Path) -> None:
    a, b = tmp_path / "a.cu", tmp_path / "b.h"
    a.write_text("kernel one")
    b.write_text("header")
    base = cache_key([a, b], "2.11.0", "13.0", "9.0", ["-O3"])
    assert len(base) == 16 and int(base, 16) >= 0
    assert cache_key([b, a], "2.11.0", "13.0", "9.0", ["-O3"]) == base  # order of the list does not matter
    variants = [
        cache_key([a, b], "2.12.0", "13.0", "9.0", ["-O3"]),
        cache_key([a, b], "2.11.0", "12.8", "9.0", ["-O3"]),
        cache_key([a, b], "2.11.0", "13.0", "8.0;9.0", ["-O3"]),
        cache_key([a, b], "2.11.0", "13.0", "9.0", ["-O2"]),
        cache_key([a], "2.11.0", "13.0", "9.0", ["-O3"]),
    ]
    b.write_text("header, edited")
    variants.append(cache_key([a, b], "2.11.0", "13.0", "9.0", ["-O3"]))
    assert len({base, *variants}) == len(variants) + 1


def test_cache_root_respects_torch_extensions_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert build.cache_root() == tmp_path


def _race_to_build(root: str, counter: str, start: multiprocessing.synchronize.Event, results) -> None:  # noqa: ANN001
    def slow_build(temp_dir: Path) -> None:
        with open(counter, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.4)  # long enough that every racer arrives while the first is still building
        (temp_dir / "ext.so").write_text(f"built by {os.getpid()}")

    start.wait()
    results.put(str(build_once(Path(root) / "ext-key", "ext.so", slow_build)))


def test_concurrent_processes_build_once(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")  # children inherit the imports: they start in milliseconds
    start, results = context.Event(), context.Queue()
    counter = tmp_path / "builds.txt"
    racers = [
        context.Process(target=_race_to_build, args=(str(tmp_path), str(counter), start, results)) for _ in range(4)
    ]
    for racer in racers:
        racer.start()
    start.set()
    paths = {results.get(timeout=60) for _ in racers}
    for racer in racers:
        racer.join(timeout=60)
        assert racer.exitcode == 0
    builders = counter.read_text().split()
    assert len(builders) == 1, f"built {len(builders)} times"
    assert paths == {str(tmp_path / "ext-key" / "ext.so")}
    assert (tmp_path / "ext-key" / "ext.so").read_text() == f"built by {builders[0]}"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_failed_build_leaves_nothing_and_next_call_retries(tmp_path: Path) -> None:
    final = tmp_path / "ext-key"
    (tmp_path / "ext-key.lock").write_text("")  # a lock file left by a dead process does not block
    with pytest.raises(RuntimeError, match="compiler exploded"):
        build_once(final, "ext.so", lambda d: (_ for _ in ()).throw(RuntimeError("compiler exploded")))
    with pytest.raises(RuntimeError, match="without producing"):
        build_once(final, "ext.so", lambda d: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext-key.lock"]
    final.mkdir()  # an incomplete folder is replaced
    assert build_once(final, "ext.so", lambda d: (d / "ext.so").write_text("ok")).read_text() == "ok"
    assert build_once(final, "ext.so", lambda d: pytest.fail("already built")) == final / "ext.so"
