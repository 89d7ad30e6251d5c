#!/usr/bin/env bash
# Dockerfile.triton's entrypoint: build the GPU profile's TensorRT plans on this GPU (those not
# built yet for it: lipsync_server/avatars/tensorrt_plans.py), then serve.
set -euo pipefail
# The flags every server of this project runs with, the launcher's too (launcher/keys.py): among
# them every API but health and gRPC inference asks for a key (lipsync/keys.py says which), so
# it refuses to print them without LIPSYNC_ADMIN_KEY and LIPSYNC_INFERENCE_KEY.
mapfile -t common < <(lipsync-server triton-flags) && (( ${#common[@]} )) || exit 2
# Only requests through request_validator carry this server's tickets (lipsync_server/backend/ticket.py).
LIPSYNC_PIPELINE_SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
export LIPSYNC_PIPELINE_SECRET
# LIPSYNC_MODEL_REPOSITORY: a folder (default /models), or object storage that tritonserver reads
# itself (s3://, gs://, as://). LIPSYNC_PROFILE: gpu (config.pbtxt: TensorRT, DALI) or cpu
# (configs/cpu.pbtxt; an image with the server's cpu extra). The Helm chart sets both.
repo="${LIPSYNC_MODEL_REPOSITORY:-/models}"
profile="${LIPSYNC_PROFILE:-gpu}"
case "$profile" in
  gpu|cpu) ;;
  *) echo "triton_entrypoint: LIPSYNC_PROFILE must be gpu or cpu, not '${profile:0:32}'" >&2; exit 2 ;;
esac
config=config; [[ "$profile" == cpu ]] && config=cpu
if [[ "$repo" =~ ^[a-z0-9]+:// ]]; then
  # Object storage: plans are built beforehand (lipsync-server plans on a copy, on this GPU
  # model), and the repository cannot be listed here, so every model loads at start.
  startup=(--load-model='*')
else
  if [[ "$profile" == gpu && -w "$repo" ]]; then
    lipsync-server plans "$repo"
  elif [[ "$profile" == gpu ]]; then  # a read-only mount (KServe's pvc://): plans built before
    echo "triton_entrypoint: $repo is read-only: serving the TensorRT plans already in it" >&2
  fi
  # The pipeline's models and the pinned avatars load now; other avatars on their first request.
  mapfile -t startup < <(lipsync-server startup-models "$repo" --profile "$config")
  (( ${#startup[@]} )) || { echo "triton_entrypoint: no models to load in $repo" >&2; exit 2; }
fi
args=(--model-repository="$repo" --model-config-name="$config" "${startup[@]}" "${common[@]}")
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
