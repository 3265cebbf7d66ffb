"""UserError: readable, comparable, and safe to raise through context managers."""

from __future__ import annotations

import contextlib
import pickle

import pytest

from desktop_app.errors import ErrorKind, UserError, friendly_error


@contextlib.contextmanager
def _passthrough():  # type: ignore[no-untyped-def]
    yield


def test_user_error_raised_through_a_context_manager_keeps_its_fields() -> None:
    with pytest.raises(UserError) as info, _passthrough():
        raise UserError(ErrorKind.corrupt_file, "The file is damaged.", "Download it again.")
    assert info.value.kind is ErrorKind.corrupt_file
    assert str(info.value) == "The file is damaged. — Download it again."


def test_user_error_fields_are_read_only_and_survive_pickling() -> None:
    error = UserError(ErrorKind.bad_input, "Steps must be between 1 and 150.")
    with pytest.raises(AttributeError):
        error.kind = ErrorKind.runtime  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(error)) == error


def test_out_of_memory_gets_a_hint() -> None:
    error = friendly_error(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert error.kind is ErrorKind.out_of_memory
    assert "low-VRAM" in error.hint
