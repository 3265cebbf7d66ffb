"""Fixtures for widget and controller tests: a scripted backend and a controller per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytestqt.qtbot import QtBot

from desktop_app.state.jobs import JobQueue
from desktop_app.worker.controller import GenerationController
from tests.qt.fake_backend import FakeBackend


@pytest.fixture
def fake_backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def job_queue(qtbot: QtBot) -> JobQueue:
    return JobQueue()


@pytest.fixture
def controller(qtbot: QtBot, job_queue: JobQueue,
               fake_backend: FakeBackend) -> Iterator[GenerationController]:
    ctrl = GenerationController(job_queue, lambda: fake_backend)
    yield ctrl
    ctrl.shutdown()


@pytest.fixture
def fake_token_counter():
    """Counts words as tokens, A1111-style chunks (the engine's own count is tested separately)."""
    from desktop_app.pipeline.api import TokenCount

    def count(prompt: str) -> TokenCount:
        tokens = len(prompt.split())
        return TokenCount(tokens, max(1, -(-tokens // 75)))

    return count


@pytest.fixture
def window(qtbot: QtBot, controller: GenerationController, fake_token_counter):
    from desktop_app.settings import load_settings
    from desktop_app.state.parameters import ParametersState
    from desktop_app.ui.main_window import MainWindow

    parameters = ParametersState()
    win = MainWindow(controller, parameters, load_settings(), token_counter=fake_token_counter)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    return win
