#!/usr/bin/env python3
"""PyTorch reference of catgan's DCGAN, for side-by-side throughput.

The same layers as dcgan-core (`crates/dcgan-core/src/{generator,discriminator,preset}.rs`),
the same losses (`loss.rs`), optimizers and step order (`trainer.rs`), timed the way
`src/bench.rs` times ours:

- G: dense z -> 8*8*C0 (+bias), reshape, leaky ReLU 0.2 (no BN); log2(S/8) transposed convs
  5x5 stride 2, padding 2, output_padding 1 (+bias), each BN(eps 1e-5, momentum 0.1) + leaky
  ReLU 0.2; transposed conv 5x5 stride 1 padding 2 to 3 channels (+bias); tanh.
  C0 = base * 2^log2(S/8).
- D: convs 5x5 padding 2 (+bias), strides per preset (default: 2 down to 4x4), widths base,
  2*base, ...; BN after each except the first (seed128/seed256: the first too); leaky ReLU
  0.2; flatten; dense -> 1 logit (+bias).
- Init: weights N(0, 0.02) truncated at 2 sigma, biases 0, BN gamma 1 beta 0.
- Step (Trainer::step): z ~ U(-1, 1); fake = G(z);
  (1) d_loss = BCE(D(real), 0.9) + BCE(D(fake.detach()), 0), Adam(lr 5e-5, betas (0.5, 0.999),
      eps 1e-8) on D;
  (2) g_loss = BCE(D(fake), 1) through the updated D, Adam(lr 2e-4, same betas) on G;
  then d_loss, g_loss, mean sigmoid(D(real)), mean sigmoid(D(fake)) are read back in one
  transfer (which also synchronises a GPU), as ours does.
- Timing: the first step alone (cold), `--warmup` untimed steps, then `--steps` steps timed
  one by one; the median is reported. Generator inference: eval mode (running statistics),
  no grad, median of `--steps` calls. The real batch is synthetic U(-1, 1), like ours.

Prints progress to stderr and one JSON line to stdout, e.g.
  python3 benches/reference/torch_dcgan.py --preset dcgan64 --base 32 --batch-size 32 --threads 2
Flags: --device cpu|cuda, --tf32 (TF32 matmul/conv on CUDA; otherwise strict fp32),
--amp (bf16 autocast), --channels-last, --threads N (torch.set_num_threads).
"""
import argparse
import json
import math
import platform
import resource
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - the message is the point
    sys.exit(f"PyTorch is absent ({e}): install it with `pip install torch`")

# name: (image size, default base, D strides (None: 2 down to 4x4), BN on D's first layer)
PRESETS = {
    "tiny32": (32, 8, None, False),
    "dcgan64": (64, 64, None, False),
    "seed128": (128, 64, [2, 2, 2, 1, 2], True),
    "seed256": (256, 64, [2, 2, 2, 2, 2], True),
}
LATENT = 100
K = 5
SLOPE = 0.2
BN = dict(eps=1e-5, momentum=0.1)


def generator(size, base):
    ups = int(math.log2(size // 8))
    c = base << ups
    layers = [nn.Linear(LATENT, 8 * 8 * c), nn.Unflatten(1, (c, 8, 8)), nn.LeakyReLU(SLOPE)]
    for _ in range(ups):
        layers += [
            nn.ConvTranspose2d(c, c // 2, K, 2, (K - 1) // 2, output_padding=1),
            nn.BatchNorm2d(c // 2, **BN),
            nn.LeakyReLU(SLOPE),
        ]
        c //= 2
    layers += [nn.ConvTranspose2d(c, 3, K, 1, (K - 1) // 2), nn.Tanh()]
    return nn.Sequential(*layers)


def discriminator(size, base, strides, first_bn):
    strides = strides or [2] * int(math.log2(size // 4))
    layers, c_in, c_out, side = [], 3, base, size
    for i, s in enumerate(strides):
        layers.append(nn.Conv2d(c_in, c_out, K, s, (K - 1) // 2))
        if i > 0 or first_bn:
            layers.append(nn.BatchNorm2d(c_out, **BN))
        layers.append(nn.LeakyReLU(SLOPE))
        c_in, c_out, side = c_out, c_out * 2, side // s
    layers += [nn.Flatten(), nn.Linear(c_in * side * side, 1)]
    return nn.Sequential(*layers)


def init_weights(m):
    if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
        nn.init.zeros_(m.bias)


def peak_rss_mib_now():
    """Peak resident memory of this process in MiB (Linux VmHWM; else ru_maxrss)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_name(dev):
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="dcgan64", choices=sorted(PRESETS))
    p.add_argument("--base", type=int, help="width (default: the preset's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--tf32", action="store_true", help="allow TF32 matmul/conv on CUDA")
    p.add_argument("--amp", action="store_true", help="bf16 autocast")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--no-inference", action="store_true")
    p.add_argument(
        "--lockstep",
        action="store_true",
        help="after the warm-up print 'ready', then run one timed step per 'step' line on "
        "stdin and print its seconds; stop at 'end' or end of input (side_by_side --lockstep)",
    )
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    torch.backends.cudnn.benchmark = True
    dev = torch.device(a.device)
    size, default_base, strides, first_bn = PRESETS[a.preset]
    base = a.base or default_base
    n = a.batch_size
    mf = torch.channels_last if a.channels_last else torch.contiguous_format

    g = generator(size, base)
    d = discriminator(size, base, strides, first_bn)
    g.apply(init_weights)
    d.apply(init_weights)
    g, d = g.to(dev, memory_format=mf), d.to(dev, memory_format=mf)
    params = sum(p.numel() for p in g.parameters()) + sum(p.numel() for p in d.parameters())
    opt_d = torch.optim.Adam(d.parameters(), lr=5e-5, betas=(0.5, 0.999), eps=1e-8)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
    real = (torch.rand(n, 3, size, size, device=dev) * 2 - 1).contiguous(memory_format=mf)
    bce = F.binary_cross_entropy_with_logits
    amp = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=a.amp)

    def step():
        z = torch.rand(n, LATENT, device=dev) * 2 - 1
        with torch.autocast(**amp):
            fake = g(z)
            # (1) Update D on real (label 0.9) and detached fakes (label 0).
            real_logits = d(real)
            fake_logits = d(fake.detach())
            d_loss = bce(real_logits, torch.full_like(real_logits, 0.9)) + bce(
                fake_logits, torch.zeros_like(fake_logits)
            )
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # (2) Update G through the updated D (label 1 on fakes).
        with torch.autocast(**amp):
            g_logits = d(fake)
            g_loss = bce(g_logits, torch.ones_like(g_logits))
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        # One read-back of four numbers, as Trainer::step does.
        return torch.stack(
            [
                d_loss.float(),
                g_loss.float(),
                torch.sigmoid(real_logits.float()).mean(),
                torch.sigmoid(fake_logits.float()).mean(),
            ]
        ).tolist()

    def timed(f):
        t = time.perf_counter()
        out = f()
        return time.perf_counter() - t, out

    tag = f"[torch {a.preset}:{base}:{n} {dev.type}]"
    first, _ = timed(step)
    print(f"{tag} first step {first:.2f} s", file=sys.stderr, flush=True)
    for i in range(a.warmup):
        s, _ = timed(step)
        print(f"{tag} warm-up {i + 1}/{a.warmup} {s:.3f} s", file=sys.stderr, flush=True)
    times = []
    metrics = None
    if a.lockstep:
        # Stepped by the caller, one step at a time between its own steps.
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() != "step":
                break
            s, metrics = timed(step)
            times.append(s)
            print(f"{s:.9f}", flush=True)
            print(f"{tag} step {len(times)} {s:.3f} s ({n / s:.1f} img/s)", file=sys.stderr, flush=True)
        if not times:
            sys.exit(f"{tag} --lockstep: no step was asked for")
    else:
        for i in range(max(a.steps, 1)):
            s, metrics = timed(step)
            times.append(s)
            print(f"{tag} step {i + 1}/{a.steps} {s:.3f} s ({n / s:.1f} img/s)", file=sys.stderr, flush=True)
    med = statistics.median(times)
    # The process's peak resident memory so far, as ours: the training steps'. Linux's
    # VmHWM is this process image's own; ru_maxrss would include the parent's resident
    # memory at the fork that started us.
    peak_rss_mib = peak_rss_mib_now()

    gen_img_per_s = None
    if not a.no_inference:
        g.eval()
        z = torch.rand(n, LATENT, device=dev) * 2 - 1

        def infer():
            with torch.no_grad(), torch.autocast(**amp):
                return g(z)[0, 0, 0, 0].item()

        for _ in range(max(a.warmup, 1)):
            infer()
        gen = [timed(infer)[0] for _ in range(max(a.steps, 1))]
        gen_img_per_s = n / statistics.median(gen)

    precision = "bf16-autocast" if a.amp else ("tf32" if a.tf32 and dev.type == "cuda" else "fp32")
    print(
        json.dumps(
            {
                "framework": "torch",
                "torch_version": torch.__version__,
                "device": dev.type,
                "device_name": device_name(dev),
                "preset": a.preset,
                "image_size": size,
                "base": base,
                "batch_size": n,
                "threads": torch.get_num_threads(),
                "precision": precision,
                "channels_last": a.channels_last,
                "params": params,
                "first_step_s": first,
                "train_step_s": med,
                "train_img_per_s": n / med,
                "train_spread": (max(times) - min(times)) / med,
                "best_step_s": min(times),
                "gen_img_per_s": gen_img_per_s,
                "peak_rss_mib": peak_rss_mib,
                "repeats": len(times),
                "warmup": a.warmup,
                "d_loss": metrics[0],
                "g_loss": metrics[1],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
