"""Fast mode on CPU: the eager fallbacks, the compile cache location, and the compiled path.

The compiled path is exercised with dynamo's `aot_eager` backend (one full graph, no code
generation: seconds) and, in a `slow` test, with inductor's C++ backend. CUDA graphs need a GPU:
those checks are marked `gpu` and skip here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from desktop_app import paths
from desktop_app.pipeline.api import GenerationCancelled, LoadUpdate
from desktop_app.pipeline.backend import fast_mode, fast_mode_cache, fast_mode_compile
from desktop_app.pipeline.backend.fast_mode import (
    FastModeConfig,
    apply_fast_mode,
    fast_mode_available,
)
from desktop_app.pipeline.backend.tiny import make_tiny_sd15_pipeline_small_unet

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CPU_TRACE = FastModeConfig(require_cuda=False, backend="aot_eager", compile_vae=False)
# Importing inductor's pre-grad passes pulls torch.utils.mkldnn, whose module body uses the
# deprecated torch.jit.script_method (torch 2.13); not ours to fix.
inductor_import = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)


@dataclass
class Loaded:
    pipe: Any


@pytest.fixture
def loaded() -> Loaded:
    """The shared tiny SD1 pipeline with a smaller (2-block) UNet, so a compile stays short."""
    return Loaded(make_tiny_sd15_pipeline_small_unet())


def generate(pipe: Any, seed: int = 7, steps: int = 3, cancel_at: int | None = None,
             size: int = 64) -> tuple[np.ndarray, list[int]]:
    """Images (float 0..1) and the step indexes the callback saw."""
    seen: list[int] = []

    def on_step(_pipe: Any, index: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        seen.append(index)
        if cancel_at is not None and index + 1 >= cancel_at:
            raise GenerationCancelled()
        return kwargs

    out = pipe("a photo of a cat", negative_prompt="blurry", num_inference_steps=steps,
               height=size, width=size, generator=torch.Generator().manual_seed(seed),
               output_type="np", callback_on_step_end=on_step)
    return out.images, seen


def test_fast_mode_is_unavailable_without_cuda_and_says_why() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    ok, reason = fast_mode.fast_mode_available()
    assert not ok
    assert "CUDA" in reason


def test_on_cpu_the_model_stays_eager_with_a_reason(loaded: Loaded) -> None:
    before, _ = generate(loaded.pipe)
    updates: list[LoadUpdate] = []
    state = apply_fast_mode(loaded, 64, 64, 1, updates.append)
    after, steps = generate(loaded.pipe)
    assert not state.active
    assert "CUDA" in state.reason
    assert [u.stage for u in updates] == [state.reason]  # told once, not every job
    apply_fast_mode(loaded, 64, 64, 1, updates.append)
    assert len(updates) == 1
    assert "forward" not in loaded.pipe.unet.__dict__
    assert np.array_equal(before, after)
    assert steps == list(range(len(steps)))


def test_compile_cache_goes_under_the_app_cache_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/nowhere")  # restored after the test
    root = fast_mode_cache.configure_compile_cache()
    assert root == paths.cache_dir() / "torch_compile"
    assert Path(os.environ["TORCHINDUCTOR_CACHE_DIR"]) == root / "inductor"
    assert (root / "inductor").is_dir()
    assert str(paths.cache_dir()).startswith(os.environ["DESKTOP_APP_HOME"])


def test_compiled_sizes_are_remembered_and_a_corrupt_record_is_ignored() -> None:
    root = fast_mode_cache.compile_cache_dir()
    assert not fast_mode_cache.was_compiled(root, "arch", "UNet", (512, 512, 2))
    fast_mode_cache.record_compiled(root, "arch", "UNet", (512, 512, 2))
    assert fast_mode_cache.was_compiled(root, "arch", "UNet", (512, 512, 2))
    assert not fast_mode_cache.was_compiled(root, "arch", "UNet", (768, 512, 2))
    assert not fast_mode_cache.was_compiled(root, "other", "UNet", (512, 512, 2))
    (root / "compiled.json").write_text("{not json", encoding="utf-8")
    assert not fast_mode_cache.was_compiled(root, "arch", "UNet", (512, 512, 2))
    fast_mode_cache.record_compiled(root, "arch", "UNet", (512, 512, 2))  # rewrites it cleanly
    assert json.loads((root / "compiled.json").read_text())["version"] == 1


def test_a_longer_prompt_is_its_own_entry_and_one_chunk_reads_records_made_before() -> None:
    root = fast_mode_cache.compile_cache_dir()
    fast_mode_cache.record_compiled(root, "arch", "UNet", (512, 512, 2))  # as records were
    assert fast_mode_cache.was_compiled(root, "arch", "UNet", (512, 512, 2, 77))
    assert not fast_mode_cache.was_compiled(root, "arch", "UNet", (512, 512, 2, 154))
    fast_mode_cache.record_compiled(root, "arch", "UNet", (512, 512, 2, 154))
    assert fast_mode_cache.was_compiled(root, "arch", "UNet", (512, 512, 2, 154))
    assert not fast_mode_cache.was_compiled(root, "arch", "UNet", (512, 512, 2, 231))


def test_the_record_keeps_how_long_a_compile_from_the_cache_took() -> None:
    root = fast_mode_cache.compile_cache_dir()
    size = (512, 512, 2)
    fast_mode_cache.record_compiled(root, "arch", "UNet", size)  # the first compile: not kept
    assert fast_mode_cache.warm_seconds(root, "arch", "UNet", size) is None
    fast_mode_cache.record_compiled(root, "arch", "UNet", size, 14.26)
    assert fast_mode_cache.warm_seconds(root, "arch", "UNet", size) == 14.3
    assert fast_mode_cache.warm_seconds(root, "arch", "VAE decode", size) is None
    fast_mode_cache.record_compiled(root, "arch", "UNet", size)  # known: the time stays
    assert fast_mode_cache.warm_seconds(root, "arch", "UNet", size) == 14.3
    record = root / "compiled.json"
    data = json.loads(record.read_text())
    data["warm_seconds"] = {key: "soon" for key in data["warm_seconds"]}  # damaged by hand
    record.write_text(json.dumps(data))
    assert fast_mode_cache.warm_seconds(root, "arch", "UNet", size) is None
    assert fast_mode_cache.was_compiled(root, "arch", "UNet", size)
    del data["warm_seconds"]  # as the record was written before it kept times
    record.write_text(json.dumps(data))
    assert fast_mode_cache.was_compiled(root, "arch", "UNet", size)
    assert fast_mode_cache.warm_seconds(root, "arch", "UNet", size) is None


def _slow_compiled_call(state: Any, seconds: float, fail: bool = False) -> Any:
    """A compiled call whose "compile" (its first call) sleeps `seconds` (then fails)."""
    def compiled(x: Any) -> Any:
        time.sleep(seconds)
        if fail:
            raise RuntimeError("no compiler")
        return x

    return fast_mode_compile._CompiledCall(fast_mode_compile.UNET, lambda x: x, compiled, state,
                                           "auto", cuda_graphs=False)


def test_a_compile_moves_the_progress_while_it_runs_and_stops_with_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_mode_compile, "COMPILE_TICK_S", 0.02)
    updates: list[LoadUpdate] = []
    call = _slow_compiled_call(fast_mode.FastModeState(on_load=updates.append), 0.3)
    x = torch.zeros(1)
    assert call((64, 64, 2), x) is x
    start, *ticks, end = updates
    assert (start.stage, start.fraction) == ("Compiling UNet for 64×64 (first time ~1–2 min)", 0)
    assert end.stage.startswith("Compiled UNet for 64×64 in ") and end.fraction == 1.0
    assert start.holds_cancel and all(t.holds_cancel for t in ticks) and not end.holds_cancel
    assert len(ticks) >= 2
    assert all(t.stage.startswith(f"{start.stage}: ") and t.stage.endswith(" s") for t in ticks)
    fractions = [t.fraction for t in ticks]
    assert fractions == sorted(fractions) and fractions[0] > 0 and fractions[-1] < 0.01  # of 90 s
    seen = len(updates)
    call((64, 64, 2), x)  # compiled: nothing to report
    time.sleep(0.1)
    assert len(updates) == seen  # the ticking ended with the compile


def test_compile_progress_holds_below_the_end_past_its_estimate_and_stops_on_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_mode_compile, "COMPILE_TICK_S", 0.02)
    monkeypatch.setitem(fast_mode_compile.EXPECTED_S, (fast_mode_compile.UNET, False), 0.05)
    updates: list[LoadUpdate] = []
    state = fast_mode.FastModeState(on_load=updates.append)
    x = torch.zeros(1)
    assert _slow_compiled_call(state, 0.3, fail=True)((64, 64, 2), x) is x  # eager
    *ticks, failed = updates[1:]
    assert max(t.fraction for t in ticks) == fast_mode_compile.MAX_TICK_FRACTION
    assert failed.stage.startswith("Fast mode: Compiling the UNet failed (RuntimeError")
    seen = len(updates)
    time.sleep(0.1)
    assert len(updates) == seen


def test_a_progress_report_that_fails_ends_the_ticking_not_the_compile(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(fast_mode_compile, "COMPILE_TICK_S", 0.02)
    stages: list[str] = []

    def report(update: LoadUpdate) -> None:
        if 0 < update.fraction < 1:
            raise RuntimeError("the window is gone")
        stages.append(update.stage)

    x = torch.zeros(1)
    call = _slow_compiled_call(fast_mode.FastModeState(on_load=report), 0.2)
    assert call((64, 64, 2), x) is x  # compiled, not the eager fallback
    assert not call.failed
    assert stages[-1].startswith("Compiled UNet for 64×64 in ")
    assert caplog.text.count("Compile progress could not be reported") == 1


def test_a_compile_from_the_cache_is_announced_with_the_time_it_took_last(
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = fast_mode_cache.compile_cache_dir()
    updates: list[LoadUpdate] = []

    def compile_in_a_new_run(seconds: float) -> str:
        updates.clear()
        state = fast_mode.FastModeState(on_load=updates.append, cache_dir=root, arch_key="a")
        _slow_compiled_call(state, seconds)((64, 64, 2), torch.zeros(1))
        return updates[0].stage

    assert compile_in_a_new_run(0.0) == "Compiling UNet for 64×64 (first time ~1–2 min)"
    assert compile_in_a_new_run(1.6) == "Compiling UNet for 64×64 (cached, about 20 s)"
    assert compile_in_a_new_run(0.0) == "Compiling UNet for 64×64 (cached, about 2 s)"


def test_missing_compiler_falls_back_to_eager_with_a_notice(
        loaded: Loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_mode, "_cxx_compiler", lambda: None)
    before, _ = generate(loaded.pipe)
    updates: list[LoadUpdate] = []
    state = apply_fast_mode(loaded, 64, 64, 1, updates.append, CPU_TRACE)
    after, _ = generate(loaded.pipe)
    assert not state.active
    assert "C++ compiler" in state.reason
    assert any("without compilation" in u.stage for u in updates)
    assert "forward" not in loaded.pipe.unet.__dict__
    assert "fused QKV" in state.applied  # the compile-free part still applies
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_a_frozen_build_without_a_c_compiler_is_told_why(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(fast_mode, "_c_compiler", lambda: None)
    ok, reason = fast_mode.fast_mode_available(CPU_TRACE)
    assert not ok
    assert "packaged build" in reason


def test_a_compile_failure_mid_job_falls_back_to_eager(loaded: Loaded) -> None:
    def broken_backend(graph: Any, example_inputs: Any) -> Any:
        raise RuntimeError("Failed to find C compiler")

    before, _ = generate(loaded.pipe)
    updates: list[LoadUpdate] = []
    config = FastModeConfig(require_cuda=False, backend=broken_backend, compile_vae=False)
    state = apply_fast_mode(loaded, 64, 64, 1, updates.append, config)
    after, steps = generate(loaded.pipe)
    assert "failed" in state.reason and "C compiler" in state.reason
    assert updates[-1].stage.startswith("Fast mode: Compiling the UNet failed")
    assert len(steps) == len(generate(loaded.pipe)[1])
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_traced_fast_mode_matches_eager_and_reports_each_step(loaded: Loaded) -> None:
    before, eager_steps = generate(loaded.pipe)
    updates: list[LoadUpdate] = []
    state = apply_fast_mode(loaded, 64, 64, 1, updates.append, CPU_TRACE)
    after, steps = generate(loaded.pipe)
    assert state.active
    assert steps == eager_steps
    np.testing.assert_allclose(after, before, atol=1e-4)
    assert [u.stage for u in updates][:1] == ["Compiling UNet for 64×64 (first time ~1–2 min)"]
    assert (64, 64, 2, 77) in state.compiled
    updates.clear()
    generate(loaded.pipe, seed=8)
    assert updates == []  # same shapes: no second compile


def test_a_new_size_is_compiled_separately_and_announced(loaded: Loaded) -> None:
    updates: list[LoadUpdate] = []
    apply_fast_mode(loaded, 64, 64, 1, updates.append, CPU_TRACE)
    generate(loaded.pipe, size=64)
    state = apply_fast_mode(loaded, 96, 64, 1, updates.append, CPU_TRACE)
    updates.clear()
    generate(loaded.pipe, size=96)
    assert updates[0].stage.startswith("Compiling UNet for 96×96")
    assert {(64, 64, 2, 77), (96, 96, 2, 77)} <= state.compiled


def test_cancel_stops_within_one_step_in_fast_mode(loaded: Loaded) -> None:
    apply_fast_mode(loaded, 64, 64, 1, None, CPU_TRACE)
    calls = {"decode": 0}
    decode = loaded.pipe.vae.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        calls["decode"] += 1
        return decode(*args, **kwargs)

    loaded.pipe.vae.decode = counting_decode
    with pytest.raises(GenerationCancelled):
        generate(loaded.pipe, steps=6, cancel_at=2)
    assert calls["decode"] == 0
    images, steps = generate(loaded.pipe, steps=3)  # the pipeline is still usable
    assert images.shape == (1, 64, 64, 3) and len(steps) >= 3


def test_remove_fast_mode_restores_eager_modules(loaded: Loaded) -> None:
    before, _ = generate(loaded.pipe)
    apply_fast_mode(loaded, 64, 64, 1, None, CPU_TRACE)
    assert "forward" in loaded.pipe.unet.__dict__
    fast_mode.remove_fast_mode(loaded)
    assert "forward" not in loaded.pipe.unet.__dict__
    assert fast_mode.fast_mode_state(loaded) is None
    after, _ = generate(loaded.pipe)
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_a_detached_fast_mode_model_is_freed_by_reference_counting() -> None:
    """A model evicted from the model cache must leave memory although the compile froze it
    (collector.long_lived_work): fast mode's undo steps and compiled wrappers refer back to the
    pipeline, so they live on it (a weakly-keyed registry holding them kept every fast-mode
    pipeline for good) and detaching drops them, leaving no cycle."""
    import gc
    import weakref

    loaded = Loaded(make_tiny_sd15_pipeline_small_unet())
    state = apply_fast_mode(loaded, 64, 64, 1, None, CPU_TRACE)
    generate(loaded.pipe)  # compiles, then the survivors are frozen
    assert state.active and "fused QKV" in state.applied
    unet = loaded.pipe.unet
    assert gc.is_tracked(unet) and not any(o is unet for g in range(3) for o in gc.get_objects(g))
    del unet
    pipe_ref, unet_ref = weakref.ref(loaded.pipe), weakref.ref(loaded.pipe.unet)
    fast_mode.detach_fast_mode(loaded.pipe)
    assert fast_mode.fast_mode_state(loaded) is None
    assert "forward" not in vars(loaded.pipe.unet)
    del loaded, state
    assert pipe_ref() is None and unet_ref() is None  # no collection needed


def test_switching_fast_mode_off_also_collects_what_the_compile_froze(loaded: Loaded) -> None:
    """The compile freezes what exists (collector.long_lived_work); dynamo's reset on switching
    fast mode off drops compiled code whose cycles (on a GPU perhaps holding CUDA-graph memory)
    the frozen generation would otherwise keep. Stand-in: a cycle that existed during the
    compile."""
    import gc
    import weakref

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    cycle = Cycle()
    ref = weakref.ref(cycle)
    apply_fast_mode(loaded, 64, 64, 1, None, CPU_TRACE)
    generate(loaded.pipe)  # compiles: `cycle` is frozen with everything else
    del cycle
    gc.collect()
    assert ref() is not None
    fast_mode.remove_fast_mode(loaded)
    assert ref() is None


def test_another_model_announces_its_recompile_after_fast_mode_is_removed_from_one() -> None:
    """Removing fast mode resets dynamo, which drops every model's compiled code: a second
    cached model then compiles again on its next job and must say so, not hang silently."""
    first, second = (Loaded(make_tiny_sd15_pipeline_small_unet()) for _ in range(2))
    updates: list[LoadUpdate] = []
    apply_fast_mode(first, 64, 64, 1, None, CPU_TRACE)
    state = apply_fast_mode(second, 64, 64, 1, updates.append, CPU_TRACE)
    generate(first.pipe)
    generate(second.pipe)
    assert (64, 64, 2, 77) in state.compiled
    fast_mode.remove_fast_mode(first)
    assert state.compiled == set()
    updates.clear()
    generate(second.pipe)
    assert updates and updates[0].stage.startswith("Compiling UNet for 64×64")
    assert (64, 64, 2, 77) in state.compiled


def test_cudnn_autotuning_is_switched_on_and_restored_with_fast_mode() -> None:
    state = fast_mode.FastModeState()
    before = torch.backends.cudnn.benchmark
    fast_mode._enable_cudnn_benchmark(state)
    try:
        assert torch.backends.cudnn.benchmark is True
        assert state.applied == ["cuDNN autotuning"]
    finally:
        for undo in reversed(state.restore):
            undo()
    assert torch.backends.cudnn.benchmark is before


@pytest.mark.slow
@inductor_import
def test_inductor_compile_matches_eager_and_fills_the_cache(loaded: Loaded) -> None:
    before, _ = generate(loaded.pipe)
    config = FastModeConfig(require_cuda=False, compile_vae=False)
    state = apply_fast_mode(loaded, 64, 64, 1, None, config)
    after, _ = generate(loaded.pipe)
    np.testing.assert_allclose(after, before, atol=1e-4)
    inductor_dir = paths.cache_dir() / "torch_compile" / "inductor"
    assert any(p.is_file() for p in inductor_dir.rglob("*"))
    assert fast_mode_cache.was_compiled(state.cache_dir, state.arch_key, "UNet", (64, 64, 2))


def test_inductor_options_replace_the_mode_with_the_same_cuda_graph_setting() -> None:
    from desktop_app.pipeline.backend.fast_mode_compile import compile_kwargs

    plain = FastModeConfig()
    assert compile_kwargs(plain, True) == {"backend": "inductor", "fullgraph": True,
                                          "dynamic": False, "mode": "reduce-overhead"}
    assert compile_kwargs(plain, False)["mode"] is None
    tuned = FastModeConfig(inductor_options=(("coordinate_descent_tuning", True),))
    kwargs = compile_kwargs(tuned, True)
    assert "mode" not in kwargs
    assert kwargs["options"] == {"triton.cudagraphs": True, "coordinate_descent_tuning": True}
    assert compile_kwargs(tuned, False)["options"]["triton.cudagraphs"] is False
    traced = FastModeConfig(backend="aot_eager", inductor_options=tuned.inductor_options)
    assert compile_kwargs(traced, False) == {"backend": "aot_eager", "fullgraph": True,
                                             "dynamic": False, "mode": None}


@inductor_import
def test_an_unknown_inductor_option_leaves_the_model_eager_and_says_so(loaded: Loaded) -> None:
    before, _ = generate(loaded.pipe)
    config = FastModeConfig(require_cuda=False, inductor_options=(("no_such_option", 1),))
    notices: list[str] = []
    state = apply_fast_mode(loaded, 64, 64, 1, lambda u: notices.append(u.stage), config)
    after, _ = generate(loaded.pipe)
    np.testing.assert_allclose(after, before, atol=1e-5)
    assert not state.active
    assert "no setting no_such_option" in state.reason
    assert notices == [f"Fast mode without compilation: {fast_mode_available(config)[1]}"]


@pytest.mark.gpu
@needs_cuda
@inductor_import
def test_cuda_fast_mode_matches_eager_within_tolerance(loaded: Loaded) -> None:
    pipe = loaded.pipe.to("cuda", torch.float16)
    before, _ = generate(pipe, steps=4)
    state = apply_fast_mode(loaded, 64, 64, 1, None)
    after, steps = generate(pipe, steps=4)
    again, _ = generate(pipe, steps=4)  # CUDA graphs replay
    assert state.active, state.reason
    assert any("CUDA graphs" in a for a in state.applied)
    assert len(steps) >= 4
    assert float(np.abs(after - before).mean()) < 0.01
    np.testing.assert_allclose(again, after, atol=1e-3)


def test_the_backend_option_on_a_cpu_generates_as_before_and_can_be_switched_off(
        tmp_path: Path, tiny_sd15_file: Path, tiny_sd15_config: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """…and saves its PNGs with the fast deflate while it is on (the same pixels)."""
    from desktop_app.gallery import png_encode
    from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend
    from tests.pipeline.engine_helpers import images_of, request, run

    encode, fast_saves = png_encode.encode, []

    def recording(*args: Any, fast: bool = False, **kwargs: Any) -> bytes:
        fast_saves.append(fast)
        return encode(*args, fast=fast, **kwargs)

    monkeypatch.setattr(png_encode, "encode", recording)
    req = request(tiny_sd15_file, tiny_sd15_config)
    eager, _ = run(DiffusersBackend(tmp_path / "eager"), req)
    backend = DiffusersBackend(tmp_path / "fast", fast_mode=True)
    fast, updates = run(backend, req)
    assert np.array_equal(images_of(fast)[0], images_of(eager)[0])
    assert [u.step for u in updates] == [1, 2]
    assert backend.loaded is not None
    state = fast_mode.fast_mode_state(backend.loaded)
    assert state is not None and not state.active and "CUDA" in state.reason
    backend.fast_mode = False  # the setting flipped between jobs
    run(backend, req)
    assert fast_mode.fast_mode_state(backend.loaded) is None
    assert fast_saves == [False, True, False]


def test_fast_mode_drops_the_last_steps_preview_only_where_it_compiles(
        tmp_path: Path, tiny_sd15_file: Path, tiny_sd15_config: Path) -> None:
    """Through the backend: eager jobs (fast mode off, or on where it cannot compile) keep
    the last step's preview; with compiled calls the image is the same and the last step has
    none."""
    from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend
    from tests.pipeline.engine_helpers import images_of, request, run

    req = request(tiny_sd15_file, tiny_sd15_config, steps=3)
    backend = DiffusersBackend(tmp_path / "out", fast_mode=True)
    eager, eager_updates = run(backend, req)  # on a CPU fast mode stays eager
    assert backend.loaded is not None
    assert [u.preview is not None for u in eager_updates] == [True, True, True]
    fast_mode.remove_fast_mode(backend.loaded)  # …and again, with a config that compiles here
    state = apply_fast_mode(backend.loaded, 64, 64, 1, None, CPU_TRACE)
    assert state.active and not state.final_preview
    fast, fast_updates = run(backend, req)
    assert [u.step for u in fast_updates] == [1, 2, 3]
    assert fast_updates[-1].preview is None
    assert np.abs(images_of(fast)[0] - images_of(eager)[0]).max() <= 1


def _fast_backend_after_a_compiled_job(tmp_path: Path, req: Any) -> tuple[Any, Any, Any]:
    """A backend in fast mode (compiling on the CPU) whose first job compiled `req`'s size,
    then left as a new app run finds it: that size in the compile record, nothing compiled
    in this process. Returns (backend, fast-mode state, the first job's result)."""
    from desktop_app.pipeline.backend.diffusers_backend import DiffusersBackend
    from tests.pipeline.engine_helpers import run

    backend = DiffusersBackend(tmp_path / "out", fast_mode=True)
    backend.preload(req)  # on a CPU fast mode stays eager: nothing to compile ahead
    assert backend.loaded is not None and not fast_mode.fast_mode_state(backend.loaded).active
    fast_mode.remove_fast_mode(backend.loaded)  # …and again, with a config that compiles here
    state = apply_fast_mode(backend.loaded, 64, 64, 1, None, CPU_TRACE)
    first, _ = run(backend, req)
    assert (64, 64, 2, 77) in state.compiled
    torch._dynamo.reset()  # what a new process starts from: the record, no compiled code
    fast_mode_compile.forget_compiled_code()
    assert not state.compiled
    return backend, state, first


def test_a_preload_compiles_ahead_a_size_an_earlier_run_compiled(
        tmp_path: Path, tiny_sd15_file: Path, tiny_sd15_config: Path) -> None:
    """At start or after a model switch the preload compiles the size the next job will
    most likely have, saying so; the job then compiles nothing and makes the same image."""
    from torch._dynamo.utils import counters

    from desktop_app.pipeline.api import CancelToken
    from tests.pipeline.engine_helpers import images_of, request

    req = request(tiny_sd15_file, tiny_sd15_config)
    backend, state, first = _fast_backend_after_a_compiled_job(tmp_path, req)
    preloading: list[LoadUpdate] = []
    assert backend.preload(req, preloading.append) == backend.loaded.name
    stages = [u.stage for u in preloading]
    assert "Compiling UNet for 64×64 (cached, about 20 s)" in stages  # not timed here yet
    assert state.compiled == {(64, 64, 2, 77)}
    graphs = counters["stats"]["unique_graphs"]
    loading: list[LoadUpdate] = []
    result = backend.generate(req, CancelToken(), lambda _update: None, loading.append)
    assert counters["stats"]["unique_graphs"] == graphs  # nothing traced or compiled again
    assert not [u.stage for u in loading if u.stage.startswith("Compiling")]
    assert np.array_equal(images_of(result)[0], images_of(first)[0])


def test_a_longer_prompt_compiles_its_own_shape_says_so_and_is_compiled_ahead_later(
        tmp_path: Path, tiny_sd15_file: Path, tiny_sd15_config: Path) -> None:
    """Past 75 tokens the prompt's embeddings are 154 long: another UNet shape, compiled once
    and announced with the prompt length (the token counter's "…/150"); a later run's preload
    compiles exactly that shape ahead."""
    from desktop_app.pipeline.api import CancelToken
    from tests.pipeline.engine_helpers import request

    short = request(tiny_sd15_file, tiny_sd15_config)
    backend, state, _ = _fast_backend_after_a_compiled_job(tmp_path, short)
    long = short.replace(prompt=", ".join(["a red cat on a blue chair"] * 14))  # ~97 tokens
    loading: list[LoadUpdate] = []
    backend.generate(long, CancelToken(), lambda _update: None, loading.append)
    assert loading[0].stage == ("Compiling UNet for 64×64 and prompts of up to 150 tokens "
                                "(first time ~1–2 min)")
    assert loading[-1].stage.startswith("Compiled UNet for 64×64 and prompts of up to 150 ")
    assert state.compiled == {(64, 64, 2, 154)}
    torch._dynamo.reset()  # a new run: its preload for the long prompt compiles that shape
    fast_mode_compile.forget_compiled_code()
    preloading: list[LoadUpdate] = []
    backend.preload(long, preloading.append)
    assert preloading[0].stage.startswith("Compiling UNet for 64×64 and prompts of up to 150 "
                                          "tokens (cached")
    assert state.compiled == {(64, 64, 2, 154)}


def test_a_preload_leaves_a_size_no_run_compiled_to_the_job(
        tmp_path: Path, tiny_sd15_file: Path, tiny_sd15_config: Path) -> None:
    """A size never compiled would cost the long first compile for a size the user may not
    keep; without guidance the UNet's batch halves: another size for the compiler too."""
    from tests.pipeline.engine_helpers import request

    req = request(tiny_sd15_file, tiny_sd15_config)
    backend, state, _ = _fast_backend_after_a_compiled_job(tmp_path, req)
    preloading: list[LoadUpdate] = []
    for other in (request(tiny_sd15_file, tiny_sd15_config, width=96, height=96),
                  request(tiny_sd15_file, tiny_sd15_config, cfg_scale=1.0)):
        backend.preload(other, preloading.append)
    assert not [u.stage for u in preloading if u.stage.startswith("Compiling")]
    assert not state.compiled


def test_a_failed_compile_ahead_still_preloads_and_the_job_runs(
        tmp_path: Path, tiny_sd15_file: Path, tiny_sd15_config: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Running out of memory while compiling ahead leaves the model loaded (the preload
    reports it ready); the job then compiles and finishes as it would have."""
    from desktop_app.pipeline.backend import diffusers_backend
    from tests.pipeline.engine_helpers import images_of, request, run

    req = request(tiny_sd15_file, tiny_sd15_config)
    backend, state, first = _fast_backend_after_a_compiled_job(tmp_path, req)
    with monkeypatch.context() as patched:
        def no_memory(*_args: Any) -> Any:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        patched.setattr(diffusers_backend, "decode_latents", no_memory)
        assert backend.preload(req) == backend.loaded.name
    assert "Compiling ahead of the first job failed" in caplog.text
    result, updates = run(backend, req)
    assert [u.step for u in updates] == [1, 2]
    assert state.active  # a failure ahead of the job does not switch fast mode off
    assert np.array_equal(images_of(result)[0], images_of(first)[0])

FUSE_ONLY = FastModeConfig(require_cuda=False, compile_unet=False, compile_vae=False)


def test_fused_qkv_projections_give_the_same_image(loaded: Loaded) -> None:
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    before, _ = generate(loaded.pipe)
    state = apply_fast_mode(loaded, 64, 64, 1, None, FUSE_ONLY)
    after, _ = generate(loaded.pipe)
    assert state.applied == ["fused QKV"] and not state.active
    processors = loaded.pipe.unet.attn_processors.values()
    assert all(isinstance(p, FusedAttnProcessor2_0) for p in processors)
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_removing_fast_mode_keeps_attention_slicing_switched_on_meanwhile(loaded: Loaded) -> None:
    from diffusers.models.attention_processor import SlicedAttnProcessor

    apply_fast_mode(loaded, 64, 64, 1, None, FUSE_ONLY)
    loaded.pipe.enable_attention_slicing()  # low-VRAM plan applied in place after fast mode
    fast_mode.remove_fast_mode(loaded)
    processors = loaded.pipe.unet.attn_processors.values()
    assert all(isinstance(p, SlicedAttnProcessor) for p in processors)


def test_the_architecture_key_is_stable_across_processes() -> None:
    code = (
        "from diffusers import UNet2DConditionModel as U;"
        "from desktop_app.pipeline.backend.fast_mode_cache import arch_key;"
        "u = U(block_out_channels=(32, 64), down_block_types=('DownBlock2D',) * 2,"
        " up_block_types=('UpBlock2D',) * 2, norm_num_groups=8);"
        "print(arch_key(u.config, 'cpu'))"
    )
    import subprocess

    keys = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip() for _ in range(2)}
    assert len(keys) == 1 and len(keys.pop()) == 16


def test_an_fp8_linear_stays_close_to_the_layer_it_replaces() -> None:
    from desktop_app.pipeline.backend.fp8 import Fp8Linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(2, 10, 64)
    with torch.no_grad():
        exact, fp8 = linear(x), Fp8Linear(linear)(x)
    assert fp8.shape == exact.shape and fp8.dtype == exact.dtype
    error = float((fp8 - exact).norm() / exact.norm())
    assert 0 < error < 0.08  # e4m3: 3 mantissa bits, errors average out over the 64 products


def test_fp8_swaps_the_attention_linears_and_removal_restores_them(loaded: Loaded) -> None:
    from desktop_app.pipeline.backend.fp8 import Fp8Linear

    before, _ = generate(loaded.pipe)
    config = FastModeConfig(require_cuda=False, compile_unet=False, compile_vae=False, fp8=True)
    state = apply_fast_mode(loaded, 64, 64, 1, None, config)
    swapped = [name for name, m in loaded.pipe.unet.named_modules() if isinstance(m, Fp8Linear)]
    assert swapped and all(".attentions." in name for name in swapped)
    assert any(name.endswith("to_qkv") for name in swapped)  # the fused projection too
    assert state.applied == ["fused QKV", f"FP8 linears ×{len(swapped)}"]
    quantised, _ = generate(loaded.pipe)
    assert 0 < np.abs(quantised - before).mean() < 0.02  # 0..1 pixels: close, not equal
    fast_mode.remove_fast_mode(loaded)
    assert not any(isinstance(m, Fp8Linear) for m in loaded.pipe.unet.modules())
    after, _ = generate(loaded.pipe)
    np.testing.assert_allclose(after, before, atol=1e-5)


def test_fp8_linears_trace_into_one_graph(loaded: Loaded) -> None:
    plain = FastModeConfig(require_cuda=False, compile_unet=False, compile_vae=False, fp8=True)
    apply_fast_mode(loaded, 64, 64, 1, None, plain)
    eager_fp8, _ = generate(loaded.pipe)
    fast_mode.remove_fast_mode(loaded)
    traced = FastModeConfig(require_cuda=False, backend="aot_eager", compile_vae=False, fp8=True)
    state = apply_fast_mode(loaded, 64, 64, 1, None, traced)
    compiled_fp8, _ = generate(loaded.pipe)
    assert state.active and (64, 64, 2, 77) in state.compiled  # fullgraph: no graph break
    np.testing.assert_allclose(compiled_fp8, eager_fp8, atol=1e-4)


def test_fp8_is_refused_on_gpus_without_fp8_tensor_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from desktop_app.pipeline.backend.fp8 import fp8_supported

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: (8, 6))
    ok, why = fp8_supported(torch.device("cuda"))
    assert not ok and "8.9" in why and "8.6" in why
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: (9, 0))
    assert fp8_supported(torch.device("cuda")) == (True, "")
