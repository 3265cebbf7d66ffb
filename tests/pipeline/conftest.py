"""Fixtures shared by the engine tests (tiny random models on CPU)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; two oversubscribe a shared CI machine.

    Modules opt in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
