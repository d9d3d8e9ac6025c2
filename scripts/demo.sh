#!/usr/bin/env bash
# Sets up kiln and runs it on the model the repository ships: a small BERT
# (random weights, exported to ONNX by scripts/make_onnx_fixtures.py).
set -euo pipefail
repo_root="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
bash scripts/setup.sh
echo "demo: building kiln (release)"
cargo build --release --quiet
demo=models/demo
echo
echo "== kiln inspect $demo/tiny-bert.onnx"
./target/release/kiln inspect "$demo/tiny-bert.onnx"
echo
echo "== kiln explain $demo/tiny-bert.onnx (what the optimizer does, modelled for the H200)"
./target/release/kiln explain "$demo/tiny-bert.onnx"
echo
echo "== kiln run $demo/tiny-bert.onnx --target ref"
./target/release/kiln run "$demo/tiny-bert.onnx" \
    --input input_ids="$demo/input_ids.npy" \
    --input attention_mask="$demo/attention_mask.npy" \
    --input token_type_ids="$demo/token_type_ids.npy" \
    --output target/demo-outputs.safetensors
echo
echo "== kiln run $demo/tiny-bert.onnx --target cpu (native code for this CPU)"
./target/release/kiln run "$demo/tiny-bert.onnx" --target cpu \
    --input input_ids="$demo/input_ids.npy" \
    --input attention_mask="$demo/attention_mask.npy" \
    --input token_type_ids="$demo/token_type_ids.npy" \
    --output target/demo-outputs-cpu.safetensors
echo
echo "== kiln compile $demo/tiny-bert.onnx --target cpu -o target/tiny-bert.kiln, then run the artifact"
./target/release/kiln compile "$demo/tiny-bert.onnx" --target cpu --dim batch=2 --dim sequence=16 -o target/tiny-bert.kiln
./target/release/kiln run target/tiny-bert.kiln \
    --input input_ids="$demo/input_ids.npy" \
    --input attention_mask="$demo/attention_mask.npy" \
    --input token_type_ids="$demo/token_type_ids.npy"
echo
echo "== kiln bench $demo/tiny-bert.onnx --target cpu"
./target/release/kiln bench "$demo/tiny-bert.onnx" --target cpu --dim batch=2 --dim sequence=16
