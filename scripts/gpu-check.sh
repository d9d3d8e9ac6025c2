#!/usr/bin/env bash
# The one prepared check for a lent GPU machine: kiln's CUDA target against the
# CPU target (correctness) and against PyTorch on the same GPU (speed).
#
#   bash scripts/gpu-check.sh prepare   # here: build kiln, strip and pack it
#                                       # with the generated models into
#                                       # target/gpu-check/ (well under 64 MiB)
#   bash scripts/gpu-check.sh run       # on the GPU machine, from the
#                                       # repository root, carrying target/gpu-check
#
# The GPU machine has the CUDA 13.0 libraries under /usr/local/cuda, Python
# with PyTorch, and no Rust or LLVM: everything kiln needs travels in
# target/gpu-check/bundle.tar.xz; the fixtures are tracked files of the tree.
#
# `run` goes in stages, each appending one JSON object per case to
# $OUT/results.jsonl as soon as it is known (so a timeout still returns what
# was measured), then writes $OUT/summary.json and prints one table:
#   1. smoke: the GPU, the driver, the demo BERT on cuda compared with cpu;
#   2. correctness: the 16 exported ONNX fixtures (both input sets) on cuda
#      compared with cpu (`kiln run --compare cpu`), and greedy generation on
#      every Hugging Face decoder fixture, cuda against cpu;
#   3. kernels: the elementwise chain over 64M f32 (kiln's kernel time from
#      `kiln bench --profile`, the device synchronized after the step) against
#      the device copy bandwidth and PyTorch eager / torch.compile, all measured
#      in this run (scripts/gpu_check_torch.py);
#   4. models: the demo BERT's median run on cuda and cpu; a TinyLlama-1.1B-shaped
#      bf16 decoder with random weights (scripts/make_llama_random.py, numpy
#      only): prefill of 512 tokens, then the median decode step, whose weight
#      bytes per second are set against the copy bandwidth of stage 3.
#
# Environment: OUT (results folder; default target/gpu-check/out),
# KILN_GPU_CHECK_TARGET (default cuda; cuda-sim runs every stage on the
# simulated GPU here, to check this script without a GPU),
# KILN_GPU_CHECK_N (elements of the chain; default 67108864),
# KILN_GPU_CHECK_SECONDS (budget; stages past it are skipped; default 450),
# KILN_GPU_CHECK_PROMPT (TinyLlama prefill tokens; default 512),
# KILN_GPU_CHECK_ITERS (timed runs of the demo BERT; default 20),
# KILN_GPU_CHECK_SAMPLE (run every Nth correctness case; default 1, all of
# them: CI checks the script's machinery with a sample, the cases themselves
# run on cuda-sim in cargo test and the conformance suite),
# KILN_GPU_CHECK_PYTHON (a Python with numpy for the model writer; default python3).
set -uo pipefail
repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
check_dir=target/gpu-check
bundle=$check_dir/bundle.tar.xz
# The device tool carries at most 64 MiB of build outputs per call.
max_bundle_bytes=$((60 * 1024 * 1024))

prepare() {
    set -e
    export LLVM_SYS_191_PREFIX="${LLVM_SYS_191_PREFIX:-/usr/lib/llvm-19}"
    cargo build --release --bin kiln
    local stage
    stage="$(mktemp -d)"
    strip -o "$stage/kiln" target/release/kiln
    .venv/bin/python scripts/make_gpu_check_models.py "$stage/models"
    mkdir -p "$check_dir"
    # xz on every core: the bundle is packed once per check, in CI too.
    XZ_OPT="${XZ_OPT:--T0}" tar -cJf "$bundle.tmp" -C "$stage" .
    mv "$bundle.tmp" "$bundle"
    rm -rf "$stage"
    local size
    size=$(stat -c %s "$bundle")
    if [ "$size" -gt "$max_bundle_bytes" ]; then
        echo "error: $bundle is $size bytes, over the $max_bundle_bytes the device tool carries" >&2
        exit 1
    fi
    echo "gpu-check: $bundle ($((size / 1048576)) MiB) is ready; on the GPU machine run"
    echo "  bash scripts/gpu-check.sh run    (carrying $check_dir)"
}

# record STAGE CASE OK SECONDS DETAIL: one JSON line in results.jsonl.
record() {
    python3 - "$@" >>"$OUT/results.jsonl" <<'EOF'
import json, sys
stage, case, ok, seconds, detail = sys.argv[1:6]
try:
    detail = json.loads(detail)
except ValueError:
    pass
print(json.dumps({"stage": stage, "case": case, "ok": ok == "1",
                  "seconds": round(float(seconds), 3), "detail": detail}))
EOF
}

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$(now)"; }
over_budget() {
    python3 -c "import sys; sys.exit(0 if float(sys.argv[2]) - float(sys.argv[1]) > float(sys.argv[3]) else 1)" \
        "$started" "$(now)" "$budget"
}

# run_case STAGE NAME COMMAND...: runs the command (at most 180 s), records it.
run_case() {
    local stage=$1 name=$2
    shift 2
    if over_budget; then
        record "$stage" "$name" 0 0 '"skipped: over the time budget"'
        return
    fi
    local t0 out rc
    t0=$(now)
    if declare -F "$1" >/dev/null; then
        out=$("$@" 2>&1) # a function of this script, with its own timeouts
    else
        out=$(timeout 180 "$@" 2>&1)
    fi
    rc=$?
    local tail_text
    tail_text=$(printf '%s' "$out" | tail -n 4 | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')
    record "$stage" "$name" "$([ $rc -eq 0 ] && echo 1 || echo 0)" "$(elapsed "$t0")" "$tail_text"
    printf '%-12s %-52s %s\n' "$stage" "$name" "$([ $rc -eq 0 ] && echo ok || echo "FAILED (rc $rc)")"
}

# Inputs of a fixture's input folder as --input arguments.
fixture_inputs() {
    local f
    for f in "$1"/*.npy; do
        printf -- '--input\n%s=%s\n' "$(basename "$f" .npy)" "$f"
    done
}

# generate_same DIR: greedy generation on the target equals the CPU's.
generate_same() {
    local dir=$1 a b
    a=$(timeout 90 "$kiln" generate "$dir" -p "hello world" --max-tokens 8 --raw --target "$target" | head -n 1) || return 1
    b=$(timeout 90 "$kiln" generate "$dir" -p "hello world" --max-tokens 8 --raw --target cpu | head -n 1) || return 1
    echo "$target: $a"
    echo "cpu: $b"
    [ "$a" = "$b" ]
}

run() {
    OUT="${OUT:-$repo_root/$check_dir/out}"
    mkdir -p "$OUT"
    : >"$OUT/results.jsonl"
    target="${KILN_GPU_CHECK_TARGET:-cuda}"
    budget="${KILN_GPU_CHECK_SECONDS:-450}"
    started=$(now)
    local n="${KILN_GPU_CHECK_N:-67108864}"
    if [ ! -f "$bundle" ]; then
        echo "error: $bundle is missing: run 'bash scripts/gpu-check.sh prepare' first and carry $check_dir" >&2
        exit 1
    fi
    local work
    work="$(mktemp -d)"
    tar -xJf "$bundle" -C "$work"
    kiln="$work/kiln"
    export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export KILN_CACHE_DIR="$work/cache"

    echo "== 1. smoke ($target)"
    if command -v nvidia-smi >/dev/null; then
        run_case smoke nvidia-smi nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    fi
    local demo=models/demo
    run_case smoke demo-bert "$kiln" run "$demo/tiny-bert.onnx" --target "$target" --compare cpu \
        --input "input_ids=$demo/input_ids.npy" --input "attention_mask=$demo/attention_mask.npy" \
        --input "token_type_ids=$demo/token_type_ids.npy"

    echo "== 2. correctness ($target against cpu)"
    local dir set sample="${KILN_GPU_CHECK_SAMPLE:-1}" index=0
    for dir in tests/fixtures/onnx/*/; do
        for set in inputs inputs_alt; do
            [ -d "$dir$set" ] || continue
            index=$((index + 1))
            ((index % sample == 0)) || continue
            mapfile -t args < <(fixture_inputs "$dir$set")
            run_case correctness "onnx/$(basename "$dir")/$set" \
                "$kiln" run "${dir}model.onnx" --target "$target" --compare cpu --tolerance 2e-3 "${args[@]}"
        done
    done
    for dir in llama llama-bf16 llama-f16 llama3 mistral qwen2 gpt2 mixtral qwen2_moe; do
        [ -d "tests/fixtures/hf/$dir" ] || continue
        index=$((index + 1))
        ((index % sample == 0)) || continue
        run_case correctness "hf/$dir/generate" generate_same "tests/fixtures/hf/$dir"
    done

    echo "== 3. kernels (elementwise chain over $n f32)"
    if ! over_budget; then
        local t0 kiln_json torch_json
        t0=$(now)
        kiln_json=$(timeout 240 "$kiln" bench "$work/models/chain.onnx" --target "$target" --dim "n=$n" \
            --iters 10 --warmup 2 --profile --json 2>/dev/null | tail -n 1)
        record kernels kiln-chain "$([ -n "$kiln_json" ] && echo 1 || echo 0)" "$(elapsed "$t0")" "${kiln_json:-null}"
        if [ "$target" = cuda ] || python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
            t0=$(now)
            torch_json=$(timeout 240 python3 scripts/gpu_check_torch.py --n "$n" 2>/dev/null | tail -n 1)
            record kernels torch-chain "$([ -n "$torch_json" ] && echo 1 || echo 0)" "$(elapsed "$t0")" "${torch_json:-null}"
        else
            record kernels torch-chain 0 0 '"skipped: no CUDA PyTorch here"'
        fi
    fi

    echo "== 4. models"
    local t
    for t in "$target" cpu; do
        if over_budget; then break; fi
        local t0 json
        t0=$(now)
        json=$(timeout 120 "$kiln" bench "$demo/tiny-bert.onnx" --target "$t" --dim batch=2 --dim sequence=16 \
            --iters "${KILN_GPU_CHECK_ITERS:-20}" --json 2>/dev/null | tail -n 1)
        record models "demo-bert-$t" "$([ -n "$json" ] && echo 1 || echo 0)" "$(elapsed "$t0")" "${json:-null}"
    done
    if ! over_budget; then
        local llama="$work/tinyllama" t0 json
        local shape=()
        if [ "$target" = cuda-sim ]; then
            # The simulated GPU runs a tiny decoder of the same architecture.
            shape=(--layers 2 --hidden 64 --intermediate 128 --heads 4 --kv-heads 2 --vocab 512)
        fi
        t0=$(now)
        if "${KILN_GPU_CHECK_PYTHON:-python3}" scripts/make_llama_random.py "$llama" "${shape[@]}" >/dev/null; then
            json=$(timeout 240 "$kiln" bench "$llama" --target "$target" --prompt-len "${KILN_GPU_CHECK_PROMPT:-512}" \
                --context 640 --iters 16 --warmup 2 --json 2>/dev/null | tail -n 1)
            record models tinyllama-decode "$([ -n "$json" ] && echo 1 || echo 0)" "$(elapsed "$t0")" "${json:-null}"
        else
            record models tinyllama-decode 0 "$(elapsed "$t0")" '"could not write the model (numpy?)"'
        fi
        rm -rf "$llama"
    fi

    summarize
    rm -rf "$work"
}

# The table and summary.json from results.jsonl.
summarize() {
    python3 - "$OUT" "$target" "${KILN_GPU_CHECK_N:-67108864}" <<'EOF'
import json, sys
from pathlib import Path
out, target, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines() if l.strip()]
by = {r["case"]: r for r in rows}
summary = {"target": target, "cases": len(rows),
           "passed": sum(r["ok"] for r in rows if r["stage"] in ("smoke", "correctness")),
           "failed": [r["case"] for r in rows if r["stage"] in ("smoke", "correctness") and not r["ok"]]}
kc, tc = by.get("kiln-chain", {}).get("detail"), by.get("torch-chain", {}).get("detail")
if isinstance(kc, dict) and kc.get("steps_ms"):
    summary["kiln_chain_kernel_ms"] = kc["steps_ms"]
    summary["kiln_chain_gb_per_s"] = 2 * n * 4 / (kc["steps_ms"] * 1e-3) / 1e9
if isinstance(tc, dict):
    summary["torch"] = tc
    if "kiln_chain_gb_per_s" in summary and tc.get("copy_gb_per_s"):
        summary["kiln_chain_fraction_of_copy"] = summary["kiln_chain_gb_per_s"] / tc["copy_gb_per_s"]
ll = by.get("tinyllama-decode", {}).get("detail")
if isinstance(ll, dict):
    summary["tinyllama"] = {k: ll.get(k) for k in ("decode_median_ms", "prefill_ms", "prompt_tokens", "weight_bytes", "weight_gb_per_s", "compile_s")}
    if isinstance(tc, dict) and tc.get("copy_gb_per_s") and ll.get("weight_gb_per_s"):
        summary["tinyllama"]["fraction_of_copy"] = ll["weight_gb_per_s"] / tc["copy_gb_per_s"]
for t in (target, "cpu"):
    d = by.get(f"demo-bert-{t}", {}).get("detail")
    if isinstance(d, dict):
        summary[f"demo_bert_{t}_median_ms"] = d.get("median_ms")
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print()
print(f"| check | result |")
print(f"|---|---|")
print(f"| correctness on {target} (smoke + fixtures) | {summary['passed']} passed, {len(summary['failed'])} failed |")
for case in summary["failed"]:
    print(f"| failed | {case} |")
if "kiln_chain_gb_per_s" in summary:
    line = f"{summary['kiln_chain_kernel_ms']:.3f} ms, {summary['kiln_chain_gb_per_s']:.0f} GB/s"
    if "kiln_chain_fraction_of_copy" in summary:
        line += f" = {100 * summary['kiln_chain_fraction_of_copy']:.0f}% of copy"
    print(f"| kiln elementwise chain, {n} f32 | {line} |")
if isinstance(tc, dict):
    print(f"| device copy (PyTorch) | {tc.get('copy_gb_per_s', 0):.0f} GB/s |")
    for k in ("eager", "compiled"):
        if f"chain_{k}_ms" in tc:
            print(f"| PyTorch {k} chain | {tc[f'chain_{k}_ms']:.3f} ms, {tc[f'chain_{k}_gb_per_s']:.0f} GB/s |")
for t in (target, "cpu"):
    if summary.get(f"demo_bert_{t}_median_ms") is not None:
        print(f"| demo BERT 2x16 on {t} (median run, copies included) | {summary[f'demo_bert_{t}_median_ms']:.3f} ms |")
if "tinyllama" in summary:
    t = summary["tinyllama"]
    line = f"decode {t['decode_median_ms']:.3f} ms/token, {t['weight_gb_per_s']:.0f} GB/s of weights"
    if "fraction_of_copy" in t:
        line += f" = {100 * t['fraction_of_copy']:.0f}% of copy"
    line += f"; prefill of {t['prompt_tokens']} tokens {t['prefill_ms']:.1f} ms; compile {t['compile_s']:.1f} s"
    print(f"| TinyLlama-shaped bf16 (random weights) | {line} |")
print(f"\nwrote {out / 'summary.json'} and {out / 'results.jsonl'}")
EOF
}

case "${1:-}" in
prepare) prepare ;;
run) run ;;
*)
    echo "usage: bash scripts/gpu-check.sh prepare|run" >&2
    exit 2
    ;;
esac
