"""PyTorch's side of `scripts/gpu-check.sh`, on the same GPU in the same run:
the device's copy bandwidth and the elementwise chain of chain.onnx
(y = relu(x * 1.5 + 0.25) - 0.125), eager and under torch.compile. Prints one
JSON object. Times are medians of CUDA-event-timed repetitions.

    python3 scripts/gpu_check_torch.py --n 67108864
"""

import argparse
import json
import statistics


def median_ms(fn, reps: int) -> float:
    import torch

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def chain(x):
    import torch

    return torch.relu(x * 1.5 + 0.25) - 0.125


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=1 << 26)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args()
    import torch

    out = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0)}
    # Copy bandwidth: 1 GiB device-to-device, read + write bytes per second.
    src = torch.empty(1 << 28, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), args.reps)
    out["copy_gb_per_s"] = 2 * src.numel() * 4 / (ms * 1e-3) / 1e9
    del src, dst
    x = torch.empty(args.n, dtype=torch.float32, device="cuda").uniform_(-1, 1)
    traffic = 2 * args.n * 4
    ms = median_ms(lambda: chain(x), args.reps)
    out["chain_eager_ms"] = ms
    out["chain_eager_gb_per_s"] = traffic / (ms * 1e-3) / 1e9
    if not args.no_compile:
        try:
            compiled = torch.compile(chain)
            ms = median_ms(lambda: compiled(x), args.reps)
            out["chain_compiled_ms"] = ms
            out["chain_compiled_gb_per_s"] = traffic / (ms * 1e-3) / 1e9
        except Exception as e:  # no Triton, no compiler: say so, keep the rest
            out["chain_compiled_error"] = str(e).splitlines()[0][:200]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
