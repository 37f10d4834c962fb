#!/usr/bin/env python3
"""Runs pytorch/examples `dcgan/main.py` unmodified for a fixed wall-clock budget, then
writes what its generator draws, so its FID can be compared with a `cats train` run of
the same minutes (docs/quality.md, "12 minutes side by side").

main.py only saves its generator at the end of an epoch. To score the generator it
actually reached when the time is up, this wrapper runs main.py in-process (`runpy`) and,
when the alarm fires, takes `netG` from main.py's own frame, draws the samples, saves the
weights and exits. main.py's training code is not touched.

Usage (main.py from https://github.com/pytorch/examples/blob/main/dcgan/main.py):
    python3 pytorch_side_by_side.py --main main.py --minutes 12 --samples 1000 \
        --out torch-run -- --dataset folder --dataroot CROPS_PARENT --outf torch-run
Everything after `--` is passed to main.py as its own arguments.
"""

import argparse
import os
import runpy
import signal
import sys
import time


def find_main_globals(frame):
    """The globals of main.py's module frame (the one that holds `netG`)."""
    while frame is not None:
        if "netG" in frame.f_globals and "optimizerG" in frame.f_globals:
            return frame.f_globals
        frame = frame.f_back
    return None


def write_samples(net_g, nz, count, out_dir, batch):
    """Draws `count` images (as main.py draws its previews: train mode, batches of 64)."""
    import torch
    import torchvision.utils as vutils

    samples = os.path.join(out_dir, "samples")
    os.makedirs(samples, exist_ok=True)
    written = 0
    grid = None
    with torch.no_grad():
        while written < count:
            n = min(batch, count - written)
            images = net_g(torch.randn(max(n, 2), nz, 1, 1))[:n]
            images = ((images + 1) / 2).clamp(0, 1)
            if grid is None:
                grid = images[:64]
            for image in images:
                vutils.save_image(image, os.path.join(samples, f"{written:06}.png"))
                written += 1
    vutils.save_image(grid, os.path.join(out_dir, "grid.png"), nrow=8, padding=2)


def main():
    own, _, rest = " ".join(sys.argv[1:]).partition(" -- ")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--main", required=True, help="path to pytorch/examples dcgan/main.py")
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock budget")
    parser.add_argument("--samples", type=int, default=1000, help="images to draw at the end")
    parser.add_argument("--out", required=True, help="folder for samples/, grid.png, netG.pth")
    args = parser.parse_args(own.split())
    os.makedirs(args.out, exist_ok=True)
    started = time.monotonic()

    def on_time_up(_signum, frame):
        import torch

        main_globals = find_main_globals(frame)
        if main_globals is None:
            sys.exit("time is up before main.py built its generator")
        epoch = main_globals.get("epoch", 0)
        step = main_globals.get("i", 0)
        batches = len(main_globals["dataloader"])
        iterations = epoch * batches + step + 1
        elapsed = time.monotonic() - started
        print(f"time up after {elapsed:.0f} s: epoch {epoch}, batch {step} "
              f"({iterations} iterations, {batches} per epoch)", flush=True)
        net_g = main_globals["netG"]
        torch.save(net_g.state_dict(), os.path.join(args.out, "netG.pth"))
        write_samples(net_g, main_globals["nz"], args.samples, args.out, 64)
        with open(os.path.join(args.out, "iterations.txt"), "w") as f:
            f.write(f"{iterations}\n")
        print(f"wrote {args.samples} samples to {args.out}/samples", flush=True)
        os._exit(0)  # main.py's data-loader workers would otherwise keep it alive

    signal.signal(signal.SIGALRM, on_time_up)
    signal.alarm(int(args.minutes * 60))
    sys.argv = [args.main] + rest.split()
    runpy.run_path(args.main, run_name="__main__")


if __name__ == "__main__":
    main()
