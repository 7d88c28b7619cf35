"""Write network pickles byte-for-byte in the layout of NVIDIA's `torch_utils.persistence`, from our own modules.

NVIDIA's persistent classes pickle as ``_reconstruct_persistent_obj(meta)`` with ``meta = {type: 'class',
version: 6, module_src: <source text of the defining module>, class_name, state: <the module's __dict__>}``;
``state`` holds ``_parameters``/``_buffers``/``_modules`` (sub-modules are persistent objects too), torch's hook
dicts, ``_init_args``/``_init_kwargs`` (nested kwargs as ``dnnlib.util.EasyDict``) and plain attributes (gains as
numpy float64). Tensors go through torch's own reduce functions; storages through ``torch.storage._load_from_bytes``.

To make pickle emit the globals ``torch_utils.persistence._reconstruct_persistent_obj`` and
``dnnlib.util.EasyDict``, stand-in modules of those names are registered in ``sys.modules`` while pickling (and
while running NVIDIA's loading behaviour in a test). The stand-in reconstruct function behaves as NVIDIA's does:
it *executes* ``module_src``; tests use it to show that a payload in the source would run under NVIDIA's loader.
"""

from __future__ import annotations

import contextlib
import copy
import pickle
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from conftest import REFERENCE

_PERSISTENCE_VERSION = 6
_PLAIN = (bool, int, float, str, type(None))


def _nvidia_reconstruct(meta: dict) -> dict:
    # Like NVIDIA's loader: exec the embedded source in a fresh module (this is what makes such pickles unsafe).
    module = types.ModuleType("_imported_module_test")
    exec(meta["module_src"], module.__dict__)  # noqa: S102 - deliberately NVIDIA's behaviour, on test payloads only
    return dict(meta)


class EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict (a dict with attribute access)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


_nvidia_reconstruct.__module__ = "torch_utils.persistence"
_nvidia_reconstruct.__name__ = _nvidia_reconstruct.__qualname__ = "_reconstruct_persistent_obj"
EasyDict.__module__ = "dnnlib.util"


@contextlib.contextmanager
def nvidia_modules() -> Iterator[None]:
    """Register stand-ins for `torch_utils.persistence` and `dnnlib.util` in sys.modules, then remove them."""
    modules = {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": types.ModuleType("torch_utils.persistence"),
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.util": types.ModuleType("dnnlib.util"),
    }
    modules["torch_utils.persistence"]._reconstruct_persistent_obj = _nvidia_reconstruct
    modules["dnnlib.util"].EasyDict = EasyDict
    modules["dnnlib"].EasyDict = EasyDict
    saved = {name: sys.modules.get(name) for name in modules}
    if any(saved.values()):
        raise RuntimeError("real torch_utils/dnnlib modules are loaded; refusing to shadow them")
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name in modules:
            sys.modules.pop(name, None)


def easy(value: Any) -> Any:
    """Nested mappings as EasyDict, as NVIDIA's train.py builds kwargs."""
    if isinstance(value, Mapping):
        return EasyDict({key: easy(item) for key, item in value.items()})
    return copy.deepcopy(value)


class AugmentPipe(torch.nn.Module):
    """Stand-in with NVIDIA's AugmentPipe buffers (p, Hz_geom, Hz_fbank) and a few of its float attributes."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.register_buffer("p", torch.tensor(p))
        self.xflip, self.rotate90, self.imgfilter_bands = 1.0, 1.0, [1, 1, 1, 1]
        self.register_buffer("Hz_geom", torch.randn([12]))
        self.register_buffer("Hz_fbank", torch.randn([4, 15]))


class NvidiaPickler(pickle.Pickler):
    """Pickles torch modules as NVIDIA's persistent objects carrying ``module_src``."""

    def __init__(self, file: Any, protocol: int, module_src: str, init_kwargs: Mapping[int, Any], legacy: bool):
        super().__init__(file, protocol=protocol)
        self.module_src = module_src
        self.init_kwargs = init_kwargs  # id(module) -> kwargs recorded for it (top-level networks)
        self.legacy = legacy

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, torch.nn.Module):
            meta = dict(type="class", version=_PERSISTENCE_VERSION, module_src=self.module_src,
                        class_name=type(obj).__name__, state=self._state(obj))  # fmt: skip
            return _nvidia_reconstruct, (meta,)
        if self.legacy and type(obj) is torch.Tensor:
            # torch < 1.0 layout: _rebuild_tensor(storage, offset, size, stride) without requires_grad/hooks.
            storage = obj.untyped_storage()
            typed = torch.storage.TypedStorage(wrap_storage=storage, dtype=obj.dtype, _internal=True)
            return torch._utils._rebuild_tensor, (typed, obj.storage_offset(), tuple(obj.size()), obj.stride())
        return NotImplemented

    def _state(self, module: torch.nn.Module) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for key, value in vars(module).items():
            if key in ("_parameters", "_buffers", "_modules"):
                state[key] = OrderedDict(value)
            elif isinstance(value, (OrderedDict, dict, set)) and key.startswith("_") and not value:
                state[key] = value  # torch's (empty) hook dicts and the non-persistent buffer set
            elif isinstance(value, _PLAIN) or (isinstance(value, list) and all(isinstance(v, _PLAIN) for v in value)):
                state[key] = value
        for key in ("weight_gain", "act_gain"):  # NVIDIA computes these with numpy: lr / np.sqrt(fan_in)
            if isinstance(state.get(key), float):
                state[key] = np.float64(state[key])
        state["_init_args"] = ()
        state["_init_kwargs"] = easy(self.init_kwargs.get(id(module), {}))
        return state


def write_nvidia_pickle(
    path: Path,
    networks: Mapping[str, torch.nn.Module | None],
    *,
    module_src: str = "# training/networks.py\nclass Generator: pass\n",
    protocol: int = 4,
    init_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    augment_p: float | None = 0.25,
    extra: Mapping[str, Any] | None = None,
    legacy_tensors: bool = False,
) -> Path:
    """Write ``{G, D, G_ema, augment_pipe, training_set_kwargs, **extra}`` as NVIDIA's training loop does.

    ``init_kwargs`` overrides the constructor kwargs recorded per network (default: the module's ``init_kwargs``).
    """
    overrides = dict(init_kwargs or {})
    data: dict[str, Any] = dict(networks)
    data["augment_pipe"] = AugmentPipe(augment_p) if augment_p is not None else None
    data["training_set_kwargs"] = dict(class_name="training.dataset.ImageFolderDataset", path="/data/x.zip",
                                       use_labels=False, max_size=12, xflip=False, resolution=16)  # fmt: skip
    data.update(extra or {})
    recorded = {
        id(module): overrides.get(name, getattr(module, "init_kwargs", {}))
        for name, module in networks.items()
        if module is not None
    }
    with nvidia_modules(), open(path, "wb") as file:
        NvidiaPickler(file, protocol, module_src, recorded, legacy_tensors).dump(data)
    return path


def load_like_nvidia(path: Path) -> Any:
    """Unpickle as NVIDIA's legacy.load_network_pkl would: plain pickle.load, executing each module_src."""
    with nvidia_modules(), open(path, "rb") as file:
        return pickle.load(file)  # noqa: S301 - demonstrates the unsafe loader on a test file


def perturbed(module: torch.nn.Module, seed: int, scale: float = 0.2) -> torch.nn.Module:
    """A deep copy with every floating tensor moved by seeded noise, so zero-initialised biases matter too."""
    clone = copy.deepcopy(module)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in clone.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=generator) * scale)
    return clone


def reference_generator() -> torch.nn.Module:
    """G32_skip_c0 from NVIDIA's reference state: the network NVIDIA's scripts ran as its own pickle in the
    comparisons (style mixing, video, projected w, projector, PR/IS/PPL)."""
    import json

    from stylegan_core.io.nvidia import load_state_dict_strict
    from stylegan_core.networks import Generator

    spec = json.loads((REFERENCE / "networks" / "networks.json").read_text())["models"]["G32_skip_c0"]
    G = Generator(**spec["kwargs"]).eval().requires_grad_(False)
    with np.load(REFERENCE / "networks" / "G32_skip_c0_state.npz") as state:
        load_state_dict_strict(G, {key: state[key] for key in state.files}, "G32_skip_c0")
    return G
