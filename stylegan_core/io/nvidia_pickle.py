"""Import NVIDIA's StyleGAN2 network pickles (stylegan2-ada-pytorch, StyleGAN3's `stylegan2` config) as our modules.

The pickle is read by :mod:`stylegan_core.io.nvidia_unpickler`, which runs none of its code and returns the
persistent networks as :class:`ModuleRecord` (class name + pickled ``__dict__``). Here our Generator and
Discriminator are built from each record's constructor kwargs and loaded with the state dict rebuilt from the nested
``_parameters``/``_buffers``/``_modules`` (keys exactly as NVIDIA's ``state_dict()``). StyleGAN3's generator takes
its synthesis kwargs flat and some defaults differ from ADA's; those pickles are translated to ADA's kwargs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from stylegan_core.io.limits import (
    MAX_KWARGS_ARRAY,
    MAX_KWARGS_VALUES,
    LimitError,
    check_network_kwargs,
    check_network_size,
    stored_values,
)
from stylegan_core.io.nvidia import discriminator_from_nvidia, generator_from_nvidia
from stylegan_core.io.nvidia_unpickler import (
    ModuleRecord,
    RestrictedUnpickler,
    UnsafePickleError,
    is_nvidia_pickle,
    read_nvidia_pickle,
)

__all__ = [
    "ModuleRecord", "NvidiaNetworks", "RestrictedUnpickler", "UnsafePickleError", "is_nvidia_pickle",
    "load_nvidia_pickle", "module_state_dict", "read_nvidia_pickle", "snapshot_state_from_nvidia",
]  # fmt: skip

if TYPE_CHECKING:
    from stylegan_core.io.snapshot import Snapshot

NETWORK_KEYS = ("G", "D", "G_ema")
KNOWN_TOP_LEVEL_KEYS = (*NETWORK_KEYS, "augment_pipe", "training_set_kwargs")
PERSISTENCE_VERSION = 6  # torch_utils.persistence._version in both NVIDIA repositories
# NVIDIA's constructor parameter order, to name positional `init_args` (StyleGAN3's Generator takes the first six
# and then its synthesis kwargs flat).
_GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
_DISCRIMINATOR_ARGS = (
    "c_dim", "img_resolution", "img_channels", "architecture", "channel_base", "channel_max", "num_fp16_res",
    "conv_clamp", "cmap_dim", "block_kwargs", "mapping_kwargs", "epilogue_kwargs",
)  # fmt: skip
# Defaults of StyleGAN3's training/networks_stylegan2.py that differ from ADA's training/networks.py (which ours
# follow); applied when a StyleGAN3 pickle leaves them out.
_SG3_SYNTHESIS_DEFAULTS = {"num_fp16_res": 4, "conv_clamp": 256}
_SG3_MAPPING_DEFAULTS = {"w_avg_beta": 0.998}
_SG3_DISCRIMINATOR_DEFAULTS = {"num_fp16_res": 4, "conv_clamp": 256}
# Bounds for walking a recorded module tree (a 1024 px generator has about 400 modules, nested 5 deep).
_MAX_MODULES = 20_000
_MAX_MODULE_DEPTH = 16
# StyleGAN3's own (config T/R) generators have these layers; this StyleGAN2 implementation cannot rebuild them.
_SG3_ALIAS_FREE_CLASSES = ("SynthesisInput",)


@dataclass(frozen=True)
class NvidiaNetworks:
    """The networks of one NVIDIA pickle, rebuilt as our modules (eval mode, no gradients); None if absent."""

    G: torch.nn.Module | None
    D: torch.nn.Module | None
    G_ema: torch.nn.Module | None
    augment_p: float | None
    notes: tuple[str, ...] = ()
    training_set_kwargs: dict[str, Any] | None = None
    source: str = ""

    def __getitem__(self, name: str) -> torch.nn.Module:
        if name not in NETWORK_KEYS:
            raise KeyError(f"{name!r}: an NVIDIA pickle holds {NETWORK_KEYS}")
        network = getattr(self, name)
        if network is None:
            raise ValueError(f"{self.source} holds no {name} network")
        return network


def load_nvidia_pickle(path: str | os.PathLike[str]) -> NvidiaNetworks:
    """Import G, D, G_ema and the augment pipe's p from an NVIDIA network pickle without running its code."""
    path = Path(path)
    try:
        return _load(path)
    except (TypeError, AttributeError, KeyError, IndexError) as error:  # values of unexpected types in the pickle
        raise ValueError(f"{path}: malformed network pickle ({type(error).__name__}: "
                         f"{' '.join(str(error).split())[:200]})") from None  # fmt: skip


def _load(path: Path) -> NvidiaNetworks:
    data = read_nvidia_pickle(path)
    if not isinstance(data, Mapping):
        raise ValueError(f"{path} is not an NVIDIA network pickle: it holds a {type(data).__name__}, expected a dict "
                         "with G, D and G_ema")  # fmt: skip
    notes: list[str] = []
    records = {key: _network_record(data.get(key), key, path, notes) for key in NETWORK_KEYS}
    if records["G"] is None and records["G_ema"] is None:
        raise ValueError(f"{path} holds no generator (keys found: {sorted(map(str, data))})")
    stylegan3 = _is_stylegan3(records)
    networks = {key: _convert_network(record, key, path, stylegan3, notes) for key, record in records.items()}
    ignored = sorted(str(key) for key in data if key not in KNOWN_TOP_LEVEL_KEYS)
    if ignored:
        notes.append(f"ignored entries {ignored}")
    training_set = data.get("training_set_kwargs")
    where = f"{path} [training_set_kwargs]"
    return NvidiaNetworks(
        G=networks["G"], D=networks["D"], G_ema=networks["G_ema"],
        augment_p=_augment_p(data.get("augment_pipe"), path, notes), notes=tuple(notes),
        training_set_kwargs=_plain(training_set, where) if isinstance(training_set, Mapping) else None,
        source=str(path),
    )  # fmt: skip


def _network_record(record: Any, key: str, path: Path, notes: list[str]) -> ModuleRecord | None:
    if record is None:
        notes.append(f"no {key} in the pickle")
        return None
    expected = "Discriminator" if key == "D" else "Generator"
    if not isinstance(record, ModuleRecord) or record.class_name != expected:
        found = record.class_name if isinstance(record, ModuleRecord) else type(record).__name__
        raise ValueError(f"{path} [{key}]: expected NVIDIA's persistent {expected}, found {found}")
    if any(name in _SG3_ALIAS_FREE_CLASSES for name in _class_names(record)):
        raise ValueError(f"{path} [{key}]: a StyleGAN3 (config T or R) network, which this StyleGAN2 implementation "
                         "cannot import; StyleGAN3's `stylegan2` config pickles are supported")  # fmt: skip
    if record.version != PERSISTENCE_VERSION:
        notes.append(f"{key}: persistence version {record.version!r} (NVIDIA's is {PERSISTENCE_VERSION}); read anyway")
    return record


def _is_stylegan3(records: Mapping[str, ModuleRecord | None]) -> bool:
    """StyleGAN3's networks_stylegan2.py: by its source text, or by its Generator's flat synthesis kwargs."""
    if any(record is not None and record.flavour == "stylegan3" for record in records.values()):
        return True
    generator = records["G_ema"] or records["G"]
    kwargs = generator.state.get("_init_kwargs") or {}
    return isinstance(kwargs, Mapping) and "synthesis_kwargs" not in kwargs and "channel_base" in kwargs


def _convert_network(
    record: ModuleRecord | None, key: str, path: Path, stylegan3: bool, notes: list[str]
) -> torch.nn.Module | None:
    if record is None:
        return None
    where = f"{path} [{key}]"
    state_dict = module_state_dict(record, where)
    try:
        if key == "D":
            kwargs = _discriminator_kwargs(record, where, stylegan3)
        else:
            kwargs = _generator_kwargs(record, where, stylegan3, notes)
    except (TypeError, AttributeError) as error:  # kwargs of the wrong shape (a list where a dict belongs, ...)
        raise ValueError(f"{where}: malformed constructor kwargs ({type(error).__name__})") from None
    # Bounded before anything of that size is built: a few hundred bytes of kwargs must not allocate gigabytes.
    check_network_kwargs(kwargs, where)
    owner = "Discriminator" if key == "D" else "Generator"
    check_network_size(owner, kwargs, stored_values(state_dict.values()), where)
    try:
        build = discriminator_from_nvidia if key == "D" else generator_from_nvidia
        network = build(kwargs, state_dict)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    except Exception as error:  # kwargs within bounds that the constructor still rejects (asserts, odd values)
        raise ValueError(f"{where}: cannot build the network from its kwargs ({type(error).__name__}: "
                         f"{' '.join(str(error).split())[:200]})") from None  # fmt: skip
    return network.eval().requires_grad_(False)


def module_state_dict(record: ModuleRecord, where: str) -> dict[str, torch.Tensor]:
    """The tensors of a recorded module tree, keyed and ordered as torch's ``state_dict()`` would."""
    tensors: dict[str, torch.Tensor] = {}
    budget = [_MAX_MODULES]

    def visit(node: ModuleRecord, prefix: str) -> None:
        budget[0] -= 1
        if budget[0] < 0 or prefix.count(".") > _MAX_MODULE_DEPTH:
            raise LimitError(f"{where}: more modules, or modules nested deeper, than any network has")
        state = node.state
        transient = set(state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, value in _mapping(state.get(group), f"{where}: {prefix}{group}").items():
                if value is None or (group == "_buffers" and name in transient):
                    continue
                if not torch.is_tensor(value):
                    raise ValueError(f"{where}: {prefix}{name} is a {type(value).__name__}, expected a tensor")
                tensors[prefix + name] = value
        for name, child in _mapping(state.get("_modules"), f"{where}: {prefix}_modules").items():
            if child is None:
                continue
            if not isinstance(child, ModuleRecord):
                raise ValueError(f"{where}: submodule {prefix}{name} is a {type(child).__name__}, not a persistent "
                                 "NVIDIA module")  # fmt: skip
            visit(child, f"{prefix}{name}.")

    visit(record, "")
    return tensors


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} is a {type(value).__name__}, expected a dict")
    return value


def _class_names(record: ModuleRecord) -> list[str]:
    names, pending, seen = [], [record], set()
    while pending and len(seen) < _MAX_MODULES:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        names.append(node.class_name)
        modules = node.state.get("_modules")
        if isinstance(modules, Mapping):
            pending += [child for child in modules.values() if isinstance(child, ModuleRecord)]
    return names


def _constructor_kwargs(record: ModuleRecord, order: tuple[str, ...], where: str) -> dict[str, Any]:
    args = record.state.get("_init_args") or ()
    kwargs = record.state.get("_init_kwargs")
    if kwargs is None and not args:
        raise ValueError(f"{where}: the pickle records no constructor arguments for {record.class_name}")
    if not isinstance(args, (tuple, list)) or len(args) > len(order) or not isinstance(kwargs or {}, Mapping):
        raise ValueError(f"{where}: unexpected constructor arguments ({type(args).__name__} / "
                         f"{type(kwargs).__name__})")  # fmt: skip
    return _plain({**dict(zip(order[: len(args)], args, strict=True)), **(kwargs or {})}, where)


def _generator_kwargs(record: ModuleRecord, where: str, stylegan3: bool, notes: list[str]) -> dict[str, Any]:
    kwargs = _constructor_kwargs(record, _GENERATOR_ARGS, where)
    if not stylegan3:
        return kwargs
    # StyleGAN3's Generator(z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs, **synthesis_kwargs).
    synthesis = {**_SG3_SYNTHESIS_DEFAULTS, **kwargs.pop("synthesis_kwargs", {})}
    synthesis.update({name: kwargs.pop(name) for name in list(kwargs) if name not in _GENERATOR_ARGS})
    fused = synthesis.pop("fused_modconv_default", None)
    note = (f"StyleGAN3 fused_modconv_default={fused!r} dropped: ours fuses modulated convolutions for inference "
            "and not in training (as 'inference_only', except float16 blocks with batch > 1)")  # fmt: skip
    if fused is not None and note not in notes:
        notes.append(note)
    kwargs["synthesis_kwargs"] = synthesis
    kwargs["mapping_kwargs"] = {**_SG3_MAPPING_DEFAULTS, **kwargs.get("mapping_kwargs", {})}
    return kwargs


def _discriminator_kwargs(record: ModuleRecord, where: str, stylegan3: bool) -> dict[str, Any]:
    kwargs = _constructor_kwargs(record, _DISCRIMINATOR_ARGS, where)
    return {**_SG3_DISCRIMINATOR_DEFAULTS, **kwargs} if stylegan3 else kwargs


def _augment_p(record: Any, path: Path, notes: list[str]) -> float | None:
    if record is None:
        return None
    if not isinstance(record, ModuleRecord) or record.class_name != "AugmentPipe":
        notes.append(f"augment_pipe ignored: a {getattr(record, 'class_name', type(record).__name__)}, not an "
                     "AugmentPipe")  # fmt: skip
        return None
    p = _mapping(record.state.get("_buffers"), f"{path} [augment_pipe]").get("p")
    if not torch.is_tensor(p) or p.numel() != 1:
        raise ValueError(f"{path} [augment_pipe]: no scalar buffer p")
    notes.append("augment_pipe: only its probability p is imported (its transform settings are not)")
    return float(p)


def _plain(value: Any, where: str) -> Any:
    """JSON-like copy: mappings -> dict, tuples -> list, numpy values -> Python numbers and lists.

    Bounded (values, depth, array sizes) so a pickle cannot make this copy larger than any network's kwargs.
    """
    budget = [MAX_KWARGS_VALUES]

    def copy(item: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0 or depth > 8:
            raise LimitError(f"{where}: constructor kwargs are larger or deeper than any network's")
        if isinstance(item, Mapping):
            return {str(key)[:200]: copy(child, depth + 1) for key, child in item.items()}
        if isinstance(item, (list, tuple)):
            return [copy(child, depth + 1) for child in item]
        if isinstance(item, np.ndarray):
            if item.size > MAX_KWARGS_ARRAY:
                raise LimitError(f"{where}: an array of {item.size} values in constructor kwargs")
            return item.tolist()
        if isinstance(item, np.generic):
            return item.item()
        if item is None or isinstance(item, (str, int, float, bool)):
            return item
        return f"<{type(item).__name__}>"

    return copy(value, 0)


# ---------------------------------------------------------------------------------------------------------------
# Our snapshot format.


def snapshot_state_from_nvidia(networks: NvidiaNetworks) -> Snapshot:
    """A weights-only Snapshot from imported networks, for ``--resume`` and ``import-nvidia``.

    It has no progress or options: training from it is always a transfer (fine-tune). A missing G is taken from
    G_ema (and the other way round), as both are needed to train.
    """
    from stylegan_core.io.snapshot import Snapshot

    if networks.D is None:
        raise ValueError(f"{networks.source} holds no D network, which a training snapshot needs (commands that "
                         "only generate images read the .pkl directly)")  # fmt: skip
    notes = list(networks.notes)
    G, D, G_ema, p = networks.G, networks.D, networks.G_ema, networks.augment_p
    if G is None:
        G = G_ema
        notes.append("G missing: copied from G_ema")
    if G_ema is None:
        G_ema = G
        notes.append("G_ema missing: copied from G")
    return Snapshot(
        G_kwargs=_plain(G.init_kwargs, networks.source), D_kwargs=_plain(D.init_kwargs, networks.source),
        G=_cpu_state(G), D=_cpu_state(D), G_ema=_cpu_state(G_ema), augment_p=p,
        imported_from={"file": Path(networks.source).name, "notes": notes,
                       "training_set_kwargs": networks.training_set_kwargs},
    )  # fmt: skip


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().clone() for name, tensor in module.state_dict().items()}
