#!/usr/bin/env bash
# Dockerfile.triton's entrypoint: build the GPU profile's TensorRT plans on this GPU (those not
# built yet for it: lipsync_server/avatars/tensorrt_plans.py), then serve.
set -euo pipefail
# Triton's model-repository API loads uploaded models (code): no image ever serves it open.
key="${LIPSYNC_ADMIN_KEY:-}"
if [[ -z "${key//[[:space:]]/}" ]]; then
  echo "triton_entrypoint: set LIPSYNC_ADMIN_KEY (for example: openssl rand -base64 32): it guards loading and unloading models" >&2
  exit 2
fi
repo=/models
lipsync-server plans "$repo"
# The pipeline's models and the pinned avatars load now; other avatars on their first request.
mapfile -t startup < <(lipsync-server startup-models "$repo")
(( ${#startup[@]} )) || { echo "triton_entrypoint: no models to load in $repo" >&2; exit 2; }
args=(--model-repository="$repo" --model-control-mode=explicit "${startup[@]}" --exit-timeout-secs=30 --strict-readiness=false)
args+=(--grpc-restricted-protocol="model-repository:lipsync-admin-key=${LIPSYNC_ADMIN_KEY}")
args+=(--http-restricted-api="model-repository:lipsync-admin-key=${LIPSYNC_ADMIN_KEY}")
tritonserver "${args[@]}" "$@" &
server=$!
# On SIGTERM (docker stop, Kubernetes), drain first so that requests in flight finish
# (lipsync_server/launcher/drain.py says why Triton's own SIGTERM handling is not enough), then stop.
stop() { lipsync-server drain 127.0.0.1:8000 --timeout 30 || true; kill -TERM "$server"; }
trap stop TERM INT
set +e
wait "$server"; status=$?
if (( status > 128 )) && kill -0 "$server" 2>/dev/null; then  # the trap ran: wait for the exit
  wait "$server"; status=$?
fi
exit "$status"
