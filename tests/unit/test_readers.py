"""Reading other tools' metadata: fixtures written from each format's spec (peers.md §5)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from desktop_app.gallery.metadata import read_image_metadata
from desktop_app.gallery.readers import decode_user_comment, parse_texts

A1111_TEXT = (
    "a photo of an astronaut riding a horse on mars, (highly detailed:1.2)\n"
    "Negative prompt: lowres, blurry, (worst quality:1.4)\n"
    "Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, "
    "Size: 832x1216, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, VAE hash: 235745af8d, "
    "VAE: sdxl_vae.safetensors, Denoising strength: 0.45, Clip skip: 2, "
    'Lora hashes: "add_detail: 7c6bad76eb54", Version: v1.10.1'
)


def _png(tmp_path: Path, texts: dict[str, str], name: str = "img.png") -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    path = tmp_path / name
    Image.new("RGB", (64, 48)).save(path, pnginfo=info)
    return path


def _exif_image(tmp_path: Path, fmt: str, comment: bytes) -> Path:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    path = tmp_path / f"img.{fmt.lower()}"
    Image.new("RGB", (32, 32)).save(path, fmt, exif=exif)
    return path


def _check_astronaut(meta: object) -> None:
    assert meta is not None
    assert meta.prompt.startswith("a photo of an astronaut")  # type: ignore[attr-defined]
    assert meta.negative_prompt == "lowres, blurry, (worst quality:1.4)"  # type: ignore[attr-defined]
    assert (meta.steps, meta.sampler, meta.cfg_scale) == (30, "DPM++ 2M Karras", 7.0)  # type: ignore[attr-defined]
    assert (meta.seed, meta.width, meta.height) == (1234567890, 832, 1216)  # type: ignore[attr-defined]
    assert (meta.model_name, meta.model_hash) == ("sd_xl_base_1.0", "31e35c80fc")  # type: ignore[attr-defined]
    assert meta.clip_skip == 2  # type: ignore[attr-defined]
    assert meta.extra["Lora hashes"] == "add_detail: 7c6bad76eb54"  # type: ignore[attr-defined]
    assert meta.source == "a1111"  # type: ignore[attr-defined]


def test_a1111_png(tmp_path: Path) -> None:
    _check_astronaut(read_image_metadata(_png(tmp_path, {"parameters": A1111_TEXT})))


def test_a1111_jpeg_exif_unicode_user_comment(tmp_path: Path) -> None:
    comment = b"UNICODE\0" + A1111_TEXT.encode("utf-16-be")
    _check_astronaut(read_image_metadata(_exif_image(tmp_path, "JPEG", comment)))


def test_a1111_webp_exif_unicode_user_comment(tmp_path: Path) -> None:
    comment = b"UNICODE\0" + A1111_TEXT.encode("utf-16-be")
    _check_astronaut(read_image_metadata(_exif_image(tmp_path, "WEBP", comment)))


def test_user_comment_encodings() -> None:
    text = "猫, Steps: 1"
    assert decode_user_comment(b"UNICODE\0" + text.encode("utf-16-le")) == text
    assert decode_user_comment(b"UNICODE\0" + text.encode("utf-16-be")) == text
    assert decode_user_comment(b"ASCII\0\0\0abc") == "abc"
    assert decode_user_comment(b"\0" * 8) is None
    assert decode_user_comment(b"") is None


COMFY_GRAPH = {
    "3": {"class_type": "KSampler", "inputs": {
        "seed": 156680208700286, "steps": 20, "cfg": 8, "sampler_name": "dpmpp_2m",
        "scheduler": "karras", "denoise": 1, "model": ["10", 0], "positive": ["6", 0],
        "negative": ["7", 0], "latent_image": ["5", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple",
          "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
    "10": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1],
                                                  "lora_name": "x.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768,
                                                       "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "beautiful scenery",
                                                     "clip": ["10", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark",
                                                     "clip": ["10", 1]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}},
}


def test_comfyui_ksampler_graph(tmp_path: Path) -> None:
    texts = {"prompt": json.dumps(COMFY_GRAPH), "workflow": "{}"}
    meta = read_image_metadata(_png(tmp_path, texts))
    assert meta is not None and meta.source == "comfyui"
    assert (meta.prompt, meta.negative_prompt) == ("beautiful scenery", "text, watermark")
    assert (meta.seed, meta.steps, meta.cfg_scale) == (156680208700286, 20, 8.0)
    assert meta.sampler == "DPM++ 2M Karras"
    assert (meta.width, meta.height) == (512, 768)
    assert meta.model_name == "v1-5-pruned-emaonly.safetensors"


def test_comfyui_custom_advanced_sampler_with_linked_seed() -> None:
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "xl.safetensors"}},
        "2": {"class_type": "CLIPTextEncodeSDXL", "inputs": {"text_g": "a fox", "text_l": "a fox",
                                                             "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": ["20", 0], "clip": ["1", 1]}},
        "20": {"class_type": "String Literal", "inputs": {"string": "ugly"}},
        "4": {"class_type": "CFGGuider", "inputs": {"model": ["1", 0], "positive": ["11", 0],
                                                    "negative": ["3", 0], "cfg": 4.5}},
        "11": {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["2", 0],
                                                               "conditioning_2": ["2", 0]}},
        "5": {"class_type": "RandomNoise", "inputs": {"noise_seed": ["6", 0]}},
        "6": {"class_type": "Seed (rgthree)", "inputs": {"seed": 99}},
        "7": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}},
        "8": {"class_type": "BasicScheduler", "inputs": {"scheduler": "normal", "steps": 12,
                                                         "model": ["1", 0], "denoise": 1}},
        "9": {"class_type": "EmptyLatentImage", "inputs": {"width": 1024, "height": 1024}},
        "10": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["5", 0], "guider": ["4", 0], "sampler": ["7", 0], "sigmas": ["8", 0],
            "latent_image": ["9", 0]}},
    }
    meta = parse_texts({"prompt": json.dumps(graph)})
    assert meta is not None
    assert (meta.prompt, meta.negative_prompt) == ("a fox", "ugly")
    assert (meta.seed, meta.steps, meta.cfg_scale, meta.sampler) == (99, 12, 4.5, "Euler a")
    assert (meta.width, meta.model_name) == (1024, "xl.safetensors")


def test_comfyui_cyclic_or_broken_graphs_do_not_hang() -> None:
    graph = {"1": {"class_type": "KSampler", "inputs": {"positive": ["2", 0], "seed": ["1", 0],
                                                        "negative": ["9", 0], "model": "x"}},
             "2": {"class_type": "ConditioningCombine", "inputs": {"a": ["2", 0], "b": ["1", 0]}},
             "3": "not a node", "4": {"class_type": 5, "inputs": []}}
    meta = parse_texts({"prompt": json.dumps(graph)})
    assert meta is not None and meta.prompt == "" and meta.seed is None


INVOKE = {
    "generation_mode": "sdxl_txt2img", "positive_prompt": "a robot reading a book",
    "negative_prompt": "blurry", "width": 1024, "height": 768, "seed": 591741300,
    "cfg_scale": 7.5, "steps": 30, "scheduler": "dpmpp_2m_sde_k",
    "model": {"key": "db73016a", "hash": "blake3:8967e7e6", "name": "lustifySDXL",
              "base": "sdxl", "type": "main"},
    "positive_style_prompt": "a robot reading a book", "loras": [], "app_version": "5.4.2",
}


def test_invokeai_metadata(tmp_path: Path) -> None:
    texts = {"invokeai_metadata": json.dumps(INVOKE), "invokeai_graph": "{}"}
    meta = read_image_metadata(_png(tmp_path, texts))
    assert meta is not None and meta.source == "invokeai"
    assert (meta.prompt, meta.negative_prompt) == ("a robot reading a book", "blurry")
    assert (meta.seed, meta.steps, meta.cfg_scale) == (591741300, 30, 7.5)
    assert meta.sampler == "DPM++ 2M SDE Karras"
    assert (meta.width, meta.height) == (1024, 768)
    assert (meta.model_name, meta.model_hash) == ("lustifySDXL", "blake3:8967e7e6")
    assert meta.app_version == "5.4.2"


def test_invokeai_legacy_sd_metadata(tmp_path: Path) -> None:
    legacy = {"model": "stable diffusion", "model_weights": "stable-diffusion-1.5",
              "model_hash": "cc6cb27103417325ff94f52b7a5d2dde45a7515b25c255d8e396c90014281516",
              "app_id": "invoke-ai/InvokeAI", "app_version": "2.2.5",
              "image": {"prompt": [{"prompt": "a cabin in the woods [fog, people]", "weight": 1}],
                        "steps": 50, "cfg_scale": 7.5, "height": 512, "width": 768,
                        "seed": 3357757885, "type": "txt2img", "sampler": "k_lms"}}
    meta = read_image_metadata(_png(tmp_path, {"sd-metadata": json.dumps(legacy),
                                               "Dream": '"a cabin" -s 50'}))
    assert meta is not None and meta.source == "invokeai"
    assert (meta.prompt, meta.negative_prompt) == ("a cabin in the woods", "fog, people")
    assert (meta.seed, meta.steps, meta.sampler, meta.width) == (3357757885, 50, "LMS", 768)
    assert meta.model_name == "stable-diffusion-1.5"


def test_fooocus_json_scheme(tmp_path: Path) -> None:
    params = {"prompt": "a lighthouse", "negative_prompt": "dark", "styles": "['Fooocus V2']",
              "performance": "Speed", "steps": 30, "resolution": "(1152, 896)",
              "guidance_scale": 4, "sharpness": 2, "base_model": "juggernautXL.safetensors",
              "sampler": "dpmpp_2m_sde_gpu", "scheduler": "karras", "seed": "12345",
              "version": "Fooocus v2.5.5", "metadata_scheme": "fooocus"}
    texts = {"parameters": json.dumps(params), "fooocus_scheme": "fooocus"}
    meta = read_image_metadata(_png(tmp_path, texts))
    assert meta is not None and meta.source == "fooocus"
    assert (meta.prompt, meta.negative_prompt, meta.seed) == ("a lighthouse", "dark", 12345)
    assert (meta.width, meta.height, meta.cfg_scale) == (1152, 896, 4.0)
    assert meta.sampler == "DPM++ 2M SDE Karras"
    assert meta.model_name == "juggernautXL.safetensors"
    assert meta.extra["styles"] == "['Fooocus V2']"


def test_fooocus_a1111_scheme(tmp_path: Path) -> None:
    texts = {"parameters": A1111_TEXT, "fooocus_scheme": "a1111"}
    meta = read_image_metadata(_png(tmp_path, texts))
    assert meta is not None and meta.source == "fooocus" and meta.seed == 1234567890


def test_image_without_metadata_is_none(tmp_path: Path) -> None:
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    assert read_image_metadata(path) is None
    jpeg = tmp_path / "plain.jpg"
    Image.new("RGB", (8, 8)).save(jpeg)
    assert read_image_metadata(jpeg) is None


def test_unreadable_files_are_none(tmp_path: Path) -> None:
    assert read_image_metadata(tmp_path / "missing.png") is None
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\xff" * 100)
    assert read_image_metadata(garbage) is None
    empty = tmp_path / "empty.webp"
    empty.write_bytes(b"")
    assert read_image_metadata(empty) is None


def test_zip_bomb_itxt_is_cut_not_expanded(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("parameters", "a" * 50_000_000, zip=True)
    path = tmp_path / "bomb.png"
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    meta = read_image_metadata(path)
    assert meta is not None and len(meta.prompt) <= 4 * 1024 * 1024


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=40,
)
KEYS = ["parameters", "prompt", "invokeai_metadata", "sd-metadata", "desktop_app", "Comment",
        "fooocus_scheme", "workflow"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS),
                       st.one_of(st.text(max_size=300), json_values.map(json.dumps)),
                       max_size=4))
def test_fuzzed_metadata_never_crashes(texts: dict[str, str]) -> None:
    meta = parse_texts(texts)
    assert meta is None or isinstance(meta.prompt, str)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(min_size=1, max_size=5), json_values, max_size=8))
def test_fuzzed_comfy_graphs_never_crash(graph: dict[str, object]) -> None:
    nodes = {k: {"class_type": "KSampler", "inputs": v} if isinstance(v, dict) else v
             for k, v in graph.items()}
    parse_texts({"prompt": json.dumps(nodes)})


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_fuzzed_file_bytes_never_crash(tmp_path_factory: object, data: bytes) -> None:
    folder = tmp_path_factory.mktemp("fuzz")  # type: ignore[attr-defined]
    for name, prefix in (("a.png", b"\x89PNG\r\n\x1a\n"), ("a.jpg", b"\xff\xd8\xff"),
                         ("a.webp", b"RIFF")):
        path = folder / name
        path.write_bytes(prefix + data)
        meta = read_image_metadata(path)
        assert meta is None or isinstance(meta.prompt, str)


def test_truncated_real_png_is_none_or_partial(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_TEXT)
    Image.new("RGB", (64, 64)).save(buffer, "PNG", pnginfo=info)
    data = buffer.getvalue()
    for cut in range(0, len(data), max(1, len(data) // 40)):
        path = tmp_path / f"cut{cut}.png"
        path.write_bytes(data[:cut])
        meta = read_image_metadata(path)
        assert meta is None or meta.seed in (None, 1234567890)


def test_deeply_nested_json_is_rejected_quickly() -> None:
    start = time.perf_counter()
    assert parse_texts({"invokeai_metadata": "[" * 100_000}) is None
    assert time.perf_counter() - start < 2.0


def test_novelai_comment_json(tmp_path: Path) -> None:
    comment = {"prompt": "1girl, library", "steps": 28, "height": 832, "width": 1216,
               "scale": 5.0, "seed": 4242, "sampler": "k_euler_ancestral",
               "noise_schedule": "native", "uc": "lowres, bad hands", "n_samples": 1}
    texts = {"Title": "AI generated image", "Description": "1girl, library",
             "Software": "NovelAI", "Source": "NovelAI Diffusion V3 4BDE2A90",
             "Comment": json.dumps(comment)}
    meta = read_image_metadata(_png(tmp_path, texts))
    assert meta is not None and meta.source == "novelai"
    assert (meta.prompt, meta.negative_prompt) == ("1girl, library", "lowres, bad hands")
    assert (meta.seed, meta.steps, meta.cfg_scale, meta.sampler) == (4242, 28, 5.0, "Euler a")
    assert (meta.width, meta.height) == (1216, 832)
    assert meta.model_name == "NovelAI Diffusion V3 4BDE2A90"
