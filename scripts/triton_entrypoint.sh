#!/usr/bin/env bash
# Dockerfile.triton's entrypoint: make the GPU profile's artifacts on this GPU, then serve.
set -euo pipefail
repo=/models
python3 /opt/lipsync/scripts/serialize_dali.py --output "$repo/audio_features/1/model.dali"
/opt/lipsync/scripts/build_tensorrt_plans.sh "$repo"
args=(--model-repository="$repo" --model-control-mode=explicit --load-model='*' --exit-timeout-secs=30 --strict-readiness=false)
# Loading and unloading avatars is an administrator's call: require a key once exposed.
if [[ -n "${LIPSYNC_ADMIN_KEY:-}" ]]; then
  args+=(--grpc-restricted-protocol="model-repository:lipsync-admin-key=${LIPSYNC_ADMIN_KEY}")
  args+=(--http-restricted-api="model-repository:lipsync-admin-key=${LIPSYNC_ADMIN_KEY}")
fi
tritonserver "${args[@]}" "$@" &
server=$!
# On SIGTERM (docker stop, Kubernetes), drain first so that requests in flight finish
# (lipsync/drain.py says why Triton's own SIGTERM handling is not enough), then stop.
stop() { python3 -m lipsync.drain 127.0.0.1:8000 --timeout 30 || true; kill -TERM "$server"; }
trap stop TERM INT
set +e
wait "$server"; status=$?
if (( status > 128 )) && kill -0 "$server" 2>/dev/null; then  # the trap ran: wait for the exit
  wait "$server"; status=$?
fi
exit "$status"
