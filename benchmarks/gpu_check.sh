#!/usr/bin/env bash
# One-go check of onnxgraph on a CUDA machine: prints one summary line per step.
#
#   bench  the bundled transformer on the CUDA provider with IO binding
#   fp16   converts it to float16, then float32 against float16 on CUDA with IO binding; the parity check
#          (rtol = atol = 1e-2, on the same inputs) is the verification
#   grad   a gradient model of the MLP (cross-entropy loss), run on CUDA
#   train  a few training steps on CUDA with `onnxgraph train`, when the command exists
#
# Usage: benchmarks/gpu_check.sh   (from any folder; ONNXGRAPH="python -m onnxgraph" picks another launcher,
#        PROVIDER=cpu dry-runs the script itself on a machine without a GPU)
# Needs: pip install 'onnxgraph[cuda]' (onnxruntime-gpu with the CUDA and cuDNN libraries).
# Exit code: 0 when every step that ran passed, 1 otherwise. A step that fails prints its first error line.

set -u
cd "$(dirname "$0")/.."
OG=${ONNXGRAPH:-onnxgraph}
if [ -z "${ONNXGRAPH:-}" ] && ! command -v onnxgraph >/dev/null 2>&1; then
    OG="python -m onnxgraph"
fi
PY=${PYTHON:-python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/onnxgraph-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
FAILED=0

# run NAME CMD...: run a step quietly; on failure print "NAME: FAILED (exit N): first error line".
run() {
    local name=$1
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
    local code=$?
    [ "$code" -eq 0 ] && return 0
    local first
    first=$(grep -v '^\s*$' "$WORK/$name.err" | head -n 1)
    echo "$name: FAILED (exit $code): ${first:-no message}"
    FAILED=1
    return 1
}

# summary NAME PYTHON-EXPRESSION JSON-FILE: print "NAME: ok: <expression over d, the loaded JSON>".
summary() {
    "$PY" -c 'import json, sys; d = json.load(open(sys.argv[2])); print(sys.argv[3] + ": ok: " + eval(sys.argv[1]))' \
        "$2" "$3" "$1"
}

PROVIDER=${PROVIDER:-cuda}
BENCH="--provider $PROVIDER --io-binding --warmup 20 --runs 200"
SHAPES="--input-shape input_ids=8,64 --input-shape attention_mask=8,64"  # 64: the model's position table
RANGES="--input-range input_ids=0,100 --input-range attention_mask=1,2"  # 100: its vocabulary

# shellcheck disable=SC2086  # BENCH, SHAPES and RANGES are word lists on purpose
if run bench $OG bench models/transformer.onnx $BENCH $SHAPES $RANGES --json "$WORK/bench.json"; then
    summary bench '"transformer p50 %.3f ms, %.0f runs/s on %s (IO binding)" % (d["models"][0]["latency_ms"]["p50"],
        d["models"][0]["throughput_per_s"], d["models"][0]["provider"])' "$WORK/bench.json"
fi

if run fp16 $OG convert models/transformer.onnx -o "$WORK/fp16.onnx" --fp16 --keep-io-types --no-verify \
        --json "$WORK/convert.json" &&
    run fp16 $OG bench models/transformer.onnx "$WORK/fp16.onnx" $BENCH $SHAPES $RANGES --tolerance 1e-2,1e-2 \
        --json "$WORK/fp16.json"; then
    summary fp16 '"p50 float16/float32 %.3f (95%% CI %.3f-%.3f), parity %s" % (d["comparison"]["ratio_p50"],
        *d["comparison"]["ci95"], "passed" if d["comparison"]["parity"]["passed"] else "FAILED")' "$WORK/fp16.json"
fi

if run grad $OG grad models/mlp.onnx -o "$WORK/grad.onnx" --loss-fn cross_entropy --model-output logits &&
    run grad $OG bench "$WORK/grad.onnx" $BENCH --input-shape x=64,784 --input-shape target=64 \
        --input-range target=0,10 --json "$WORK/grad.json"; then
    summary grad '"MLP loss+gradients, batch 64: p50 %.3f ms on %s" % (d["models"][0]["latency_ms"]["p50"],
        d["models"][0]["provider"])' "$WORK/grad.json"
fi

if $OG train --help >"$WORK/train-help.txt" 2>&1; then
    output_option=--model-output
    grep -q -- "--model-output" "$WORK/train-help.txt" || output_option=--output
    "$PY" -c 'import numpy as np, sys; rng = np.random.default_rng(0)
np.savez(sys.argv[1], x=rng.standard_normal((256, 784)).astype(np.float32), target=rng.integers(0, 10, 256))' \
        "$WORK/data.npz"
    if run train $OG train models/mlp.onnx --data "$WORK/data.npz" --loss-fn cross_entropy "$output_option" logits \
            --optimizer adamw --lr 1e-3 --steps 20 --batch-size 32 --provider "$PROVIDER" \
            --checkpoint-dir "$WORK/checkpoints" -o "$WORK/trained.onnx"; then
        echo "train: ok: 20 AdamW steps on $PROVIDER; $(grep -v '^\s*$' "$WORK/train.out" | tail -n 1)"
    fi
else
    echo "train: skipped: no train command"
fi

exit $FAILED
