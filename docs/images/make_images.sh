#!/usr/bin/env bash
# Reproduces the two pictures of the documentation from a tiny training run:
#   docs/images/tensorboard.png  the TensorBoard dashboard, screenshot in headless Chromium
#   docs/images/evaluation.png   the plot of `recurrent-rl evaluate --plot`
# Needs chromium (apt-get install chromium) and the viz extra (matplotlib). Run from anywhere:
#   bash docs/images/make_images.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=.venv/bin
OUT=docs/images
WORK=$(mktemp -d)
trap 'kill "${TB_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

# 1. a tiny run: GRU on CartPole without velocities, 8k steps, an evaluation every 1k steps
"$BIN"/recurrent-rl train --preset cartpole-novel-gru --timesteps 8192 --seed 0 \
    --set eval.freq=1024 --set eval.episodes=5 --set checkpoint.freq=4096 \
    --runs-dir "$WORK" --name cartpole-novel-gru --no-progress
RUN="$WORK/cartpole-novel-gru"

# 2. the evaluation plot: return distribution and the memory's activations over the first episode
"$BIN"/recurrent-rl evaluate "$RUN" --episodes 20 --plot "$OUT/evaluation.png" --no-progress

# 3. TensorBoard on the runs folder, screenshot of the time-series dashboard (four curves picked
#    by the tag filter; forceSVG draws the charts without WebGL, which headless Chromium lacks)
PORT=6123
"$BIN"/tensorboard --logdir "$WORK" --port "$PORT" --bind_all >"$WORK/tensorboard.log" 2>&1 &
TB_PID=$!
# wait until TensorBoard has read the whole event file (the final evaluation is written last)
for _ in $(seq 120); do
    curl -sf "http://127.0.0.1:$PORT/data/plugin/scalars/tags" 2>/dev/null | grep -q final_mean_reward && break
    sleep 1
done
TAGS='rollout%2Fep_rew_mean%7Ceval%2Fmean_reward%7Ctrain%2Fvalue_loss%7Cmemory%2Factor'
CHROME=$(command -v chromium || command -v chromium-headless-shell || command -v google-chrome)
"$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size=1400,900 --virtual-time-budget=20000 \
    --screenshot="$PWD/$OUT/tensorboard.png" \
    "http://127.0.0.1:$PORT/?forceSVG=true&tagFilter=$TAGS#timeseries" 2>/dev/null
kill "$TB_PID"
echo "wrote $OUT/tensorboard.png and $OUT/evaluation.png"
