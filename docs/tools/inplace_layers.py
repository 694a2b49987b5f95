"""The in-place table of ``docs/conventions.md``: which layers of the 15 torchvision
classifiers have their output modified in place downstream in the torch model.

For each model (``weights=None``, eval mode) imported with :func:`npcam.from_torch`, every
node whose output an ``inplace`` node overwrites (:func:`npcam.conventions.inplace_modifier`):
their number, the pairs "producer → in-place op" by layer type, three examples, and whether
npcam's default layer (``layer=None``) or pytorch-grad-cam's documented target is one of
them. At such a layer torchcam's activations and gradients, and pytorch-grad-cam's CPU
activations, are not the layer's output (``InplaceOpWarning``).

Usage: ``python docs/tools/inplace_layers.py`` (needs torch and torchvision; prints a
Markdown table).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "crosscheck"))

import torchvision  # noqa: E402
from _torchvision import DEFAULT_LAYERS, MODELS, PGC_LAYERS  # noqa: E402

import npcam  # noqa: E402
from npcam.verify.conventions import inplace_modifier  # noqa: E402


def build(name: str):
    kwargs = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    return getattr(torchvision.models, name)(weights=None, **kwargs).double().eval()


def main() -> None:
    print("| model | layers modified in place | producer → in-place op | e.g. | "
          "`layer=None` | pytorch-grad-cam's target |")
    print("| --- | ---: | --- | --- | --- | --- |")
    for name in MODELS:
        graph = npcam.from_torch(build(name))
        by_name = {n.name: n for n in graph.nodes}
        hit = []
        pairs: Counter[str] = Counter()
        for node in graph.nodes:
            mod = inplace_modifier(graph, node.name)
            if mod is None:
                continue
            hit.append(node.name)
            pairs[f"{type(node.layer).__name__} → {type(by_name[mod].layer).__name__}"] += 1
        kinds = ", ".join(f"{k} ({v})" for k, v in pairs.most_common())
        # the module path (the alias of the node) where there is one: what a user hooks
        paths: dict[str, str] = {}
        for alias, node_name in graph.aliases().items():
            if node_name not in paths or len(alias) > len(paths[node_name]):
                paths[node_name] = alias
        eg = ", ".join(f"`{paths.get(h, h)}`" for h in hit[:3])

        def affected(layer: str, graph: npcam.Graph = graph) -> str:
            mod = inplace_modifier(graph, layer)
            return f"**yes** (`{layer}` → `{mod}`)" if mod else f"no (`{layer}`)"

        print(f"| {name} | {len(hit)} | {kinds} | {eg} | {affected(DEFAULT_LAYERS[name])} | "
              f"{affected(PGC_LAYERS[name])} |")


if __name__ == "__main__":
    main()
