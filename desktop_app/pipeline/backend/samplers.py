"""A1111 sampler names → diffusers schedulers, built from the model's own scheduler config.

Every scheduler is made with `cls.from_config(model_config, **options)`, so the model's
training schedule (betas, `prediction_type`, `rescale_betas_zero_snr`, …) is kept and only the
sampling choices change. Mapping after diffusers' "A1111/k-diffusion → Diffusers" table
(docs/source/en/api/schedulers/overview.md).

Schedule choices, to match A1111's defaults:
- k-diffusion samplers (Euler, Euler a, Heun, LMS, DPM2, DPM2 a, DPM++ *) use
  `timestep_spacing="linspace"`: k-diffusion's default discrete schedule spaces `t` evenly from
  `t_max` to 0, which is diffusers' "linspace"; SD1.5's stored config says "leading", which
  starts at t=951 instead of 999. With Karras sigmas this also gives k-diffusion's sigma_max.
- DDIM and PLMS keep the model's own spacing (SD configs: "leading" + `steps_offset=1`, the
  uniform schedule A1111's timestep samplers use). UniPC and LCM keep the config as well.
- Non-Karras entries force `use_karras_sigmas=False` (and the other sigma schedules off), so a
  model config that enables Karras sigmas does not silently change "Euler" into "Euler Karras".
- DPM++ SDE Karras is k-diffusion's DPM-Solver++(2S) SDE (`DPMSolverSDEScheduler`, needs
  torchsde); its Brownian-tree noise is seeded per image (`noise_sampler_seed=[seeds]`), as
  A1111 does, so batch image i equals a single run with seed+i.
"""

from __future__ import annotations

import copy
import inspect
import json
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import diffusers

from desktop_app.errors import bad_input
from desktop_app.pipeline.api import SAMPLER_NAMES

_OFF = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}
_KARRAS = {"use_karras_sigmas": True, "use_exponential_sigmas": False, "use_beta_sigmas": False}
_LINSPACE = {"timestep_spacing": "linspace"}


@dataclass(frozen=True)
class SamplerSpec:
    """How one A1111 sampler is built: a diffusers scheduler class and its options.

    `evals_per_step` is 2 for second-order samplers (Heun, DPM2, DPM++ SDE), which call the
    model twice for each step except the last one. `seeded_noise` samplers draw fresh noise
    during sampling and get the per-image generators (or seeds).
    """

    name: str
    scheduler: str
    options: Mapping[str, Any] = field(default_factory=dict)
    evals_per_step: int = 1
    seeded_noise: bool = False


def _spec(name: str, scheduler: str, *option_maps: Mapping[str, Any], **extra: Any) -> SamplerSpec:
    options: dict[str, Any] = {}
    for mapping in option_maps:
        options.update(mapping)
    evals = int(extra.pop("evals_per_step", 1))
    seeded = bool(extra.pop("seeded_noise", False))
    options.update(extra)
    return SamplerSpec(name, scheduler, options, evals, seeded)


SAMPLERS: dict[str, SamplerSpec] = {
    spec.name: spec
    for spec in (
        _spec("DPM++ 2M", "DPMSolverMultistepScheduler", _LINSPACE, _OFF,
              algorithm_type="dpmsolver++", solver_order=2),
        _spec("DPM++ 2M Karras", "DPMSolverMultistepScheduler", _LINSPACE, _KARRAS,
              algorithm_type="dpmsolver++", solver_order=2),
        _spec("DPM++ SDE Karras", "DPMSolverSDEScheduler", _LINSPACE, _KARRAS,
              evals_per_step=2, seeded_noise=True),
        _spec("DPM++ 2M SDE", "DPMSolverMultistepScheduler", _LINSPACE, _OFF,
              algorithm_type="sde-dpmsolver++", solver_order=2, seeded_noise=True),
        _spec("DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler", _LINSPACE, _KARRAS,
              algorithm_type="sde-dpmsolver++", solver_order=2, seeded_noise=True),
        _spec("Euler a", "EulerAncestralDiscreteScheduler", _LINSPACE, seeded_noise=True),
        _spec("Euler", "EulerDiscreteScheduler", _LINSPACE, _OFF),
        _spec("LMS", "LMSDiscreteScheduler", _LINSPACE, _OFF),
        _spec("LMS Karras", "LMSDiscreteScheduler", _LINSPACE, _KARRAS),
        _spec("Heun", "HeunDiscreteScheduler", _LINSPACE, _OFF, evals_per_step=2),
        _spec("DPM2", "KDPM2DiscreteScheduler", _LINSPACE, _OFF, evals_per_step=2),
        _spec("DPM2 a", "KDPM2AncestralDiscreteScheduler", _LINSPACE, _OFF,
              evals_per_step=2, seeded_noise=True),
        _spec("DPM2 Karras", "KDPM2DiscreteScheduler", _LINSPACE, _KARRAS, evals_per_step=2),
        _spec("DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", _LINSPACE, _KARRAS,
              evals_per_step=2, seeded_noise=True),
        _spec("DDIM", "DDIMScheduler", clip_sample=False, set_alpha_to_one=False),
        _spec("PLMS", "PNDMScheduler", skip_prk_steps=True),
        _spec("UniPC", "UniPCMultistepScheduler", _OFF, predict_x0=True),
        _spec("LCM", "LCMScheduler"),
    )
}
assert set(SAMPLERS) == set(SAMPLER_NAMES), "every API sampler name needs a scheduler"


def sampler_spec(name: str) -> SamplerSpec:
    """The spec of an A1111 sampler name; unknown names are a bad-input error."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise bad_input(
            f"Unknown sampler {name!r}.", "Run `desktop-app samplers` to list the available ones."
        ) from None


def _accepted(cls: type, options: Mapping[str, Any]) -> dict[str, Any]:
    """Only the options this scheduler's constructor takes (others would be logged as unused)."""
    params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    return {k: v for k, v in options.items() if k in params}


def build_scheduler(
    name: str, base_config: Mapping[str, Any], seeds: Sequence[int] | None = None
) -> Any:
    """A fresh scheduler for sampler `name`, from the model's scheduler config.

    `seeds` (one per image of the batch) seeds the Brownian-tree noise of DPM++ SDE Karras;
    other stochastic samplers take their noise from the per-image generators instead.
    Each is a copy of one built once per sampler and config: some constructors run
    `set_timesteps` over all 1000 training steps in Python (DPM2: 180 ms, DPM++ SDE Karras:
    37 ms on dev-cpu, per batch and while the GPU waits); a copy takes 0.1–0.2 ms.
    """
    spec = sampler_spec(name)
    config = {k: v for k, v in base_config.items() if not k.startswith("_")}
    key = (name, json.dumps(config, sort_keys=True, default=repr))
    with _prototypes_lock:
        prototype = _prototypes.get(key)
        if prototype is None:
            if len(_prototypes) >= MAX_PROTOTYPES:
                _prototypes.clear()
            prototype = _prototypes[key] = _build(spec, config)
        scheduler = copy.deepcopy(prototype)  # the prototype itself is never handed out
    if spec.scheduler == "DPMSolverSDEScheduler" and seeds is not None:
        seed = list(seeds) if len(seeds) > 1 else int(seeds[0])
        defaults = [k for k in scheduler.config.get("_use_default_values", ())
                    if k != "noise_sampler_seed"]  # as if it had been built with the seed
        scheduler.register_to_config(noise_sampler_seed=seed, _use_default_values=defaults)
        scheduler.noise_sampler_seed = seed  # what its step() reads
    return scheduler


MAX_PROTOTYPES = 64
_prototypes: dict[tuple[str, str], Any] = {}
_prototypes_lock = threading.Lock()


def _build(spec: SamplerSpec, config: Mapping[str, Any]) -> Any:
    cls = getattr(diffusers, spec.scheduler)
    # Carry over only what describes the model's training (the keys every scheduler shares);
    # sampler-specific keys of the stored class (e.g. PNDM's skip_prk_steps) are dropped.
    options = _accepted(cls, config)
    options.update(_accepted(cls, spec.options))
    with warnings.catch_warnings():
        quiet_known_warnings()
        return cls.from_config(options)


def quiet_known_warnings() -> None:
    """Inside `warnings.catch_warnings()`: silence two harmless library warnings.

    - Schedulers call NumPy functions on torch tensors, which NumPy 2 reports as
      DeprecationWarnings about torch's `__array__` / `__array_wrap__` signatures.
    - torchsde (DPM++ SDE) warns when float32 rounding puts a query a hair before its
      interval start ("Should have ta>=t0").
    Neither is actionable by the user.
    """
    warnings.filterwarnings("ignore", message=r"__array(__ implementation|_wrap__ must accept)",
                            category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=r"Should have t[ab]>=t0", category=UserWarning)
