"""Every A1111 sampler name builds from the model's config, runs, and reports real evaluations."""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from desktop_app import paths
from desktop_app.errors import UserError
from desktop_app.pipeline.api import SAMPLER_NAMES
from desktop_app.pipeline.backend import samplers
from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend
from desktop_app.pipeline.backend.samplers import SAMPLERS, build_scheduler, quiet_known_warnings
from tests.pipeline.engine_helpers import images_of, request, run

STEPS = 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config_of(family: str) -> dict[str, Any]:
    path = paths.resource("configs", family, "scheduler", "scheduler_config.json")
    return dict(json.loads(path.read_text()))


def expected_evaluations(name: str, steps: int) -> int:
    if name == "PLMS":
        return steps + 1  # PNDM without PRK steps repeats its first timestep
    if SAMPLERS[name].evals_per_step == 2:
        return 2 * steps - 1  # second-order: two evaluations per step but the last
    return steps


def test_registry_covers_every_api_name() -> None:
    assert set(SAMPLERS) == set(SAMPLER_NAMES)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_prediction_type_and_training_schedule_are_kept(name: str) -> None:
    scheduler = build_scheduler(name, config_of("sd2-768-v"), seeds=[1])
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.beta_end == pytest.approx(0.012)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_karras_only_where_the_name_says_so(name: str) -> None:
    config = {**config_of("sdxl"), "use_karras_sigmas": True}
    scheduler = build_scheduler(name, config, seeds=[1])
    karras = getattr(scheduler.config, "use_karras_sigmas", False)
    assert bool(karras) == name.endswith("Karras") or name in ("DDIM", "PLMS", "LCM")


def test_k_diffusion_samplers_use_linspace_and_ddim_keeps_the_model_spacing() -> None:
    base = config_of("sd15")  # SD1.5 stores "leading" spacing (implicitly) + steps_offset 1
    assert build_scheduler("Euler", base).config.timestep_spacing == "linspace"
    assert build_scheduler("DPM++ 2M Karras", base).config.timestep_spacing == "linspace"
    ddim = build_scheduler("DDIM", base)
    assert ddim.config.timestep_spacing == "leading" and ddim.config.steps_offset == 1
    assert type(build_scheduler("PLMS", base)).__name__ == "PNDMScheduler"


def test_dpmpp_sde_brownian_noise_is_seeded_per_image() -> None:
    scheduler = build_scheduler("DPM++ SDE Karras", config_of("sd15"), seeds=[5, 6])
    assert scheduler.config.noise_sampler_seed == [5, 6]
    assert build_scheduler("DPM++ SDE Karras", config_of("sd15"), seeds=[5]).config[
        "noise_sampler_seed"] == 5


def _trajectory(scheduler: Any, steps: int = 4) -> list[torch.Tensor]:
    """The samples a scheduler steps through for a fixed stand-in model and seeded noise."""
    takes_generator = "generator" in inspect.signature(scheduler.step).parameters
    generator = torch.Generator().manual_seed(0)
    seen = []
    with warnings.catch_warnings():
        quiet_known_warnings()  # as the engine does around its schedulers
        scheduler.set_timesteps(steps)
        sample = torch.randn(1, 4, 8, 8, generator=generator) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_output = 0.1 * scheduler.scale_model_input(sample, t) + 0.01 * t
            extra = {"generator": generator} if takes_generator else {}
            sample = scheduler.step(model_output, t, sample, **extra).prev_sample
            seen.append(sample)
    return seen


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_each_job_gets_a_scheduler_as_good_as_new(name: str) -> None:
    """Schedulers are copied from one built per sampler and config (some take 0.2 s to
    build): a job's scheduler steps exactly as a freshly built one, whatever jobs before it
    did with theirs."""
    config = config_of("sd15")
    used = build_scheduler(name, config, seeds=[3])
    _trajectory(used, steps=6)  # a job that ran: state advanced, noise sampler made
    clean = {k: v for k, v in config.items() if not k.startswith("_")}
    fresh = samplers._build(SAMPLERS[name], {**clean, "noise_sampler_seed": 3})  # SDE's seed
    again = build_scheduler(name, config, seeds=[3])
    assert again is not used and dict(again.config) == {**fresh.config}
    for ours, theirs in zip(_trajectory(again), _trajectory(fresh), strict=True):
        assert torch.equal(ours, theirs)


def test_unknown_sampler_is_bad_input() -> None:
    with pytest.raises(UserError, match="Unknown sampler"):
        build_scheduler("Euler Z", config_of("sd15"))


@pytest.fixture(scope="module")
def backend() -> Iterator[DiffusersBackend]:
    yield DiffusersBackend(previews=True)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_every_sampler_runs_and_counts_model_evaluations(
        backend: DiffusersBackend, tiny_sd15_file: Path, tiny_sd15_config: Path,
        name: str) -> None:
    req = request(tiny_sd15_file, tiny_sd15_config, sampler=name, steps=STEPS)
    run(backend, request(tiny_sd15_file, tiny_sd15_config, steps=1))  # load the model
    unet = backend.loaded.pipe.unet
    calls: list[int] = []
    original = unet.forward

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    unet.forward = counting
    try:
        result, updates = run(backend, req)
    finally:
        del unet.forward
    evaluations = expected_evaluations(name, STEPS)
    assert len(calls) == evaluations
    assert [u.step for u in updates] == list(range(1, evaluations + 1))
    assert {u.total for u in updates} == {evaluations}
    assert all(u.preview is not None for u in updates)
    image = images_of(result)[0]
    assert image.std() > 0


def test_v_prediction_override_reaches_the_job_scheduler(
        backend: DiffusersBackend, tiny_sd15_file: Path, tiny_sd15_config: Path) -> None:
    eps, _ = run(backend, request(tiny_sd15_file, tiny_sd15_config, sampler="DPM++ 2M Karras"))
    assert backend.loaded.pipe.scheduler.config.prediction_type == "epsilon"
    v, _ = run(backend, request(tiny_sd15_file, tiny_sd15_config, sampler="DPM++ 2M Karras",
                                prediction_type="v_prediction"))
    scheduler = backend.loaded.pipe.scheduler
    assert type(scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.use_karras_sigmas
    assert not (images_of(eps)[0] == images_of(v)[0]).all()
