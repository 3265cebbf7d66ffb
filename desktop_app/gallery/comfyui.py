"""ComfyUI's `prompt` chunk: the API-format executed graph, walked back from the sampler.

`{node_id: {"class_type": ..., "inputs": {name: value | [source_node_id, output_index]}}}`.
The sampler node (KSampler, KSamplerAdvanced, SamplerCustom, SamplerCustomAdvanced, …) links
to its positive/negative conditioning, model, latent and — for the custom samplers — to
noise, guider, sampler and sigmas nodes. We follow links (bounded depth, no cycles) to the
text encoders, the checkpoint loader and the empty-latent size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from desktop_app.gallery.metadata import ImageMetadata, to_float, to_int
from desktop_app.pipeline.api import join_sampler_name

MAX_DEPTH = 24
MAX_NODES = 5000
SAMPLER_CLASSES = ("KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced")
TEXT_INPUTS = ("text", "text_g", "text_l", "prompt", "string", "value")
VALUE_INPUTS = ("value", "int", "float", "seed", "number")
CHECKPOINT_INPUTS = ("ckpt_name", "unet_name", "model_name")

_SAMPLERS = {
    "euler": "Euler", "euler_ancestral": "Euler a", "heun": "Heun", "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a", "lms": "LMS", "dpmpp_2m": "DPM++ 2M",
    "dpmpp_sde": "DPM++ SDE", "dpmpp_sde_gpu": "DPM++ SDE", "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE", "ddim": "DDIM", "uni_pc": "UniPC",
    "uni_pc_bh2": "UniPC", "lcm": "LCM", "plms": "PLMS",
}


def sampler_name(name: str, scheduler: str) -> str:
    """ComfyUI/Fooocus sampler + scheduler → our combined name; unknown ones stay verbatim."""
    mapped = _SAMPLERS.get(name)
    if mapped is None:
        return " ".join(p for p in (name, scheduler) if p and p != "normal")
    return join_sampler_name(mapped, scheduler)


class _Graph:
    def __init__(self, nodes: Mapping[str, Any]) -> None:
        self.nodes = {str(k): v for k, v in list(nodes.items())[:MAX_NODES]
                      if isinstance(v, Mapping)}

    def inputs(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        value = node.get("inputs")
        return value if isinstance(value, Mapping) else {}

    def linked(self, value: object) -> Mapping[str, Any] | None:
        """The node a link `[id, index]` points to, if it is one."""
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int):
            return self.nodes.get(str(value[0]))
        return None

    def scalar(self, node: Mapping[str, Any], names: tuple[str, ...]) -> Any:
        """First of `names` among a node's inputs, following links to value nodes."""
        seen: set[int] = set()
        current: Mapping[str, Any] | None = node
        for _ in range(MAX_DEPTH):
            if current is None or id(current) in seen:
                return None
            seen.add(id(current))
            inputs = self.inputs(current)
            current = None
            for name in names:
                value = inputs.get(name)
                target = self.linked(value)
                if target is not None:
                    current = target  # a primitive/seed node: look for its value next
                    break
                if value is not None and not isinstance(value, list | dict):
                    return value
            names = (*names, *(n for n in VALUE_INPUTS if n not in names))
        return None

    def find_upstream(self, start: object, wanted: tuple[str, ...]) -> Any:
        """Breadth-first from a link to the first node having one of `wanted` as a value."""
        queue = [(start, 0)]
        seen: set[int] = set()
        while queue:
            link, depth = queue.pop(0)
            node = self.linked(link)
            if node is None or id(node) in seen or depth > MAX_DEPTH:
                continue
            seen.add(id(node))
            inputs = self.inputs(node)
            for name in wanted:
                value = inputs.get(name)
                if isinstance(value, str | int | float) and not isinstance(value, bool):
                    return value
                if self.linked(value) is not None:
                    resolved = self.scalar(node, (name,))
                    if resolved is not None:
                        return resolved
            queue.extend((v, depth + 1) for v in inputs.values() if self.linked(v) is not None)
        return None

    def texts(self, start: object) -> str:
        """Prompt text behind a conditioning link (combined encoders joined by newlines)."""
        found: list[str] = []
        stack = [(start, 0)]
        seen: set[int] = set()
        while stack and len(found) < 16:
            link, depth = stack.pop()
            node = self.linked(link)
            if node is None or id(node) in seen or depth > MAX_DEPTH:
                continue
            seen.add(id(node))
            inputs = self.inputs(node)
            text = self.scalar(node, TEXT_INPUTS) if _is_encoder(node) else None
            if isinstance(text, str):
                if text not in found:
                    found.append(text)
                continue
            links = [v for v in inputs.values() if self.linked(v) is not None]
            stack.extend((v, depth + 1) for v in reversed(links))
        return "\n".join(found)


def _is_encoder(node: Mapping[str, Any]) -> bool:
    kind = node.get("class_type")
    return isinstance(kind, str) and ("TextEncode" in kind or "Prompt" in kind
                                      or "String" in kind or "Text" in kind)


def _sampler_node(graph: _Graph) -> Mapping[str, Any] | None:
    candidates = [(key, node) for key, node in graph.nodes.items()
                  if node.get("class_type") in SAMPLER_CLASSES]
    if not candidates:
        return None

    def rank(item: tuple[str, Mapping[str, Any]]) -> tuple[int, int, str]:
        # Prefer the first pass (denoise 1, built from an empty latent) over refiners/hires.
        denoise = to_float(graph.inputs(item[1]).get("denoise"))
        number = to_int(item[0])
        return (0 if denoise in (None, 1.0) else 1, number if number is not None else 0, item[0])

    return sorted(candidates, key=rank)[0][1]


def parse_graph(nodes: Mapping[str, Any]) -> ImageMetadata | None:
    """Parameters of a ComfyUI API-format graph, or None when it has no sampler node."""
    graph = _Graph(nodes)
    sampler = _sampler_node(graph)
    if sampler is None:
        return None
    inputs = graph.inputs(sampler)
    guider = graph.linked(inputs.get("guider"))
    conditioning = graph.inputs(guider) if guider is not None else inputs
    seed = graph.scalar(sampler, ("seed", "noise_seed"))
    if seed is None:
        seed = graph.find_upstream(inputs.get("noise"), ("noise_seed", "seed"))
    name = graph.scalar(sampler, ("sampler_name",))
    if name is None:
        name = graph.find_upstream(inputs.get("sampler"), ("sampler_name",))
    scheduler = graph.scalar(sampler, ("scheduler",))
    if scheduler is None:
        scheduler = graph.find_upstream(inputs.get("sigmas"), ("scheduler",))
    steps = graph.scalar(sampler, ("steps",))
    if steps is None:
        steps = graph.find_upstream(inputs.get("sigmas"), ("steps",))
    cfg = graph.scalar(guider or sampler, ("cfg",))
    model_link = inputs.get("model") or (graph.inputs(guider).get("model") if guider else None)
    latent = inputs.get("latent_image")
    return ImageMetadata(
        prompt=graph.texts(conditioning.get("positive")),
        negative_prompt=graph.texts(conditioning.get("negative")),
        steps=to_int(steps),
        sampler=sampler_name(str(name or ""), str(scheduler or "")) if name else "",
        cfg_scale=to_float(cfg),
        seed=to_int(seed),
        width=to_int(graph.find_upstream(latent, ("width",))),
        height=to_int(graph.find_upstream(latent, ("height",))),
        model_name=str(graph.find_upstream(model_link, CHECKPOINT_INPUTS) or ""),
        source="comfyui",
        extra={"scheduler": str(scheduler)} if scheduler else {},
    )
