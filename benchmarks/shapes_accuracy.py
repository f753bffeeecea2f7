"""Do the trained toy models follow their captions? Colour and shape accuracy of samples.

Samples the text-conditional models (``results/models/{dataset}/{model}`` for each ``--models``
name: the ε model ``toy`` and the rectified-flow ``toy_flow`` by default) on test-split captions
with classifier-free guidance and reads each sample's colour and shape with the shapes
generator's detector (:func:`reschrom.data.shapes.classify_shapes`); the same detector on the real
test images at the model's resolution gives the ceiling, chance is 1/6 (colour) and 1/4
(shape). The unconditional low-resolution model is sampled too: the share of samples with a
detectable shape and the spread of detected colours and shapes. Writes a PNG grid of each.

    .venv/bin/python benchmarks/shapes_accuracy.py [--models toy toy_flow] [--n 96] [--steps 50] [--guidance 4]
        [--clip-sample saved|on|off]   (x̂0 clipping of DDIM for IFPipeline folders; default: as saved)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from reschrom.data.dataset import load_captions, load_level  # noqa: E402
from reschrom.data.shapes import classify_shapes  # noqa: E402
from reschrom.measure.metrics import caption_accuracy  # noqa: E402
from reschrom.training.samples import sample_images  # noqa: E402


def grid(x: torch.Tensor, path: Path, cols: int = 12) -> None:
    from PIL import Image

    n, _, h, w = x.shape
    rows = (n + cols - 1) // cols
    canvas = torch.zeros(3, rows * h, cols * w)
    for i in range(n):
        canvas[:, (i // cols) * h : (i // cols + 1) * h, (i % cols) * w : (i % cols + 1) * w] = x[i]
    arr = ((canvas.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(arr).resize((cols * w * 4, rows * h * 4), Image.NEAREST).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--models", nargs="+", default=["toy", "toy_flow"], help="trained t2i registry names")
    ap.add_argument("--results", default=str(ROOT / "results"))
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--level", type=int, default=1, help="data level the t2i model was trained on")
    ap.add_argument("--out", default="/tmp")
    ap.add_argument("--clip-sample", default="saved", choices=["saved", "on", "off"],
                    help="DDIM's x̂0 clipping for IFPipeline folders (the ablation of the README)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = Path(args.results)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    caps = load_captions(res / f"data/{args.dataset}/test/captions.parquet").sort_values("index")
    prompts = list(caps.caption[: args.n])
    real = load_level(res / f"data/{args.dataset}/test/level_{args.level}.safetensors")[: args.n]
    ceil = caption_accuracy(real, prompts)
    print(f"detector on real test images: colour {ceil.colour_ok.mean():.3f}  shape {ceil.shape_ok.mean():.3f}; chance 0.167 / 0.250")
    for name in args.models:
        folder = res / f"models/{args.dataset}/{name}"
        if not folder.is_dir():
            print(f"{name}: no model at {folder} (train it: snakemake {folder} --cores 2)")
            continue
        t0 = time.time()
        clip = {"saved": None, "on": True, "off": False}[args.clip_sample]
        x = sample_images(folder, prompts, steps=args.steps, guidance_scale=args.guidance, seed=0, clip_sample=clip)
        acc = caption_accuracy(x, prompts)
        print(f"{name}: {len(prompts)} samples in {time.time() - t0:.0f} s, DDIM {args.steps} steps, guidance {args.guidance}, "
              f"x̂0 clipping {args.clip_sample}")
        print(f"  colour accuracy {acc.colour_ok.mean():.3f}   shape accuracy {acc.shape_ok.mean():.3f}   both {(acc.colour_ok & acc.shape_ok).mean():.3f}")
        grid(x[:48], Path(args.out) / f"{name}_samples.png")
    print("  first prompts:", prompts[:3])
    lr = res / f"models/{args.dataset}/lowres"
    if lr.is_dir():
        y = sample_images(lr, None, n=args.n, steps=args.steps, seed=0)
        colours, shapes = classify_shapes(y)
        found = np.mean([c != "none" and s != "none" for c, s in zip(colours, shapes)])
        print(f"lowres: {args.n} samples; shape detected in {found:.3f}")
        print("  colours:", {c: colours.count(c) for c in sorted(set(colours))})
        print("  shapes: ", {s: shapes.count(s) for s in sorted(set(shapes))})
        grid(y[:48], Path(args.out) / "lowres_samples.png")


if __name__ == "__main__":
    main()
