#!/usr/bin/env bash
# scripts/validate-deploy.sh: check the deployment files without running
# them (no container engine or cluster is needed or used):
#   - deploy/docker-compose.yml through `docker-compose config -q` (Debian's
#     docker-compose, installed here when missing): unknown options, bad
#     types and broken interpolation fail;
#   - deploy/k8s/*.yaml through the deploy/validate module's tests: strict
#     decoding into the k8s.io/api types and cross-reference checks;
#   - scripts/cluster.sh through bash -n (and shellcheck when present).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "validate-deploy: docker-compose config" >&2
if ! command -v docker-compose > /dev/null; then
  echo "validate-deploy: installing Debian's docker-compose" >&2
  sudo=""
  if [[ "$(id -u)" != 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker-compose > /dev/null
fi
# Interpolation uses the defaults in the file, not whatever the caller's
# environment or an .env file happens to hold.
env -u STRATA_S3_ACCESS_KEY -u STRATA_S3_SECRET_KEY \
  docker-compose -f deploy/docker-compose.yml config -q

echo "validate-deploy: deploy/k8s (go test in deploy/validate)" >&2
(cd deploy/validate && go vet ./... && go test -count=1 ./...)

echo "validate-deploy: scripts/cluster.sh" >&2
bash -n scripts/cluster.sh
if command -v shellcheck > /dev/null; then
  shellcheck scripts/cluster.sh scripts/validate-deploy.sh
fi
echo "validate-deploy: ok" >&2
