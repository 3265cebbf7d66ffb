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
