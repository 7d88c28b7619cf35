"""Check a pickle's opcodes against stylegan_core.io.limits before the real unpickler allocates anything.

CPython's unpickler allocates a bytes object of the length an opcode *declares* before reading it, sizes its memo
by the largest index a PUT names, and hashes dict keys and set items recursively. So a few hundred bytes can ask
for gigabytes or nest deeply enough to overflow the C stack. This scan walks the opcodes with ``pickletools``
(which reads at most what the file holds) and simulates the unpickler's stack, tracking for every value its
nesting depth and its size counted with repetition, so those requests are refused first, in one line.
"""

from __future__ import annotations

import pickletools
from typing import Any, BinaryIO

from stylegan_core.io.limits import MAX_BLOB_BYTES, MAX_DEPTH, MAX_TREE_NODES, LimitError, UnsafePickleError

_MEMO_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_MEMO_GETS = {"GET", "BINGET", "LONG_BINGET"}
# Ops whose first popped value is a container that stays on the stack, filled with the other popped values.
_FILLING = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}
_EMPTY = {"EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET", "EMPTY_TUPLE"}
_REFUSED = {"EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID", "NEXT_BUFFER", "INST", "OBJ"}


class _Value:
    """What the scan knows about one value on the simulated stack: nesting depth and size with repetition."""

    __slots__ = ("depth", "size")

    def __init__(self, depth: int, size: int) -> None:
        self.depth, self.size = depth, size


def scan_pickle(file: BinaryIO, where: str, persistent_ids: bool = False) -> None:
    """Read one pickle (up to its STOP) from ``file``; raise LimitError or ValueError naming ``where`` if it asks
    for more than the limits allow, uses an opcode network pickles never need, or is truncated.

    ``persistent_ids`` allows BINPERSID, which only the storage blobs inside a pickle use.
    """
    refused = _REFUSED - {"BINPERSID"} if persistent_ids else _REFUSED
    stack: list[_Value | None] = []  # None marks a MARK
    memo: dict[int, _Value] = {}
    opcodes = pickletools.genops(file)
    while True:
        try:
            opcode, arg, _position = next(opcodes)
        except StopIteration:
            return
        except Exception as error:  # pickletools raises assorted types on short or malformed input
            raise ValueError(f"{where}: truncated or corrupt pickle ({error})") from None
        name = opcode.name
        if name in refused:
            raise UnsafePickleError(f"{where}: uses pickle opcode {name}, which network pickles never need")
        if isinstance(arg, (bytes, bytearray, str)) and len(arg) > MAX_BLOB_BYTES:
            raise LimitError(f"{where}: one value of {len(arg)} bytes exceeds the limit of {MAX_BLOB_BYTES}")
        _step(name, opcode, arg, stack, memo, where)


def _step(name: str, opcode: Any, arg: Any, stack: list[_Value | None], memo: dict[int, _Value], where: str) -> None:
    if name == "MARK":
        stack.append(None)
        return
    if name in _MEMO_PUTS or name == "MEMOIZE":
        index = len(memo) if name == "MEMOIZE" else int(arg)
        if index > len(memo):  # the pickler numbers memo entries 0, 1, 2, ...; a gap only inflates the memo
            raise ValueError(f"{where}: memo index {index} skips ahead of {len(memo)} entries (corrupt pickle)")
        memo[index] = _top(stack, where)
        return
    if name in _MEMO_GETS:
        if int(arg) not in memo:
            raise ValueError(f"{where}: memo index {arg} was never stored (corrupt pickle)")
        stack.append(memo[int(arg)])
        return
    if name == "DUP":
        stack.append(_top(stack, where))
        return
    before = opcode.stack_before
    popped: list[_Value] = []
    if pickletools.markobject in before:
        while stack and stack[-1] is not None:
            popped.append(stack.pop())
        if not stack:
            raise ValueError(f"{where}: {name} without a MARK (corrupt pickle)")
        stack.pop()
        popped.reverse()
        below = before.index(pickletools.markobject)
    else:
        below = len(before)
    under = [_pop(stack, where) for _ in range(below)][::-1]
    values = under + popped
    if name in _FILLING:
        container, items = values[0], values[1:]
        for item in items:
            container.depth = max(container.depth, item.depth + 1)
            container.size += item.size
        _check(container, where)
        stack.append(container)
        return
    for _ in opcode.stack_after:
        if values:
            value = _Value(1 + max(item.depth for item in values), 1 + sum(item.size for item in values))
        else:
            value = _Value(1 if name in _EMPTY else 0, 1)
        _check(value, where)
        stack.append(value)


def _top(stack: list[_Value | None], where: str) -> _Value:
    if not stack or stack[-1] is None:
        raise ValueError(f"{where}: memo or DUP with nothing on the stack (corrupt pickle)")
    return stack[-1]


def _pop(stack: list[_Value | None], where: str) -> _Value:
    value = stack.pop() if stack else None
    if value is None:
        raise ValueError(f"{where}: stack underflow (corrupt pickle)")
    return value


def _check(value: _Value, where: str) -> None:
    if value.depth > MAX_DEPTH:
        raise LimitError(f"{where}: values nested more than {MAX_DEPTH} deep")
    if value.size > MAX_TREE_NODES:
        raise LimitError(f"{where}: more than {MAX_TREE_NODES} values (counting repeated references)")
