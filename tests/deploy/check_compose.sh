#!/usr/bin/env bash
# docker-compose parses docker-compose.yml without and with the monitoring profile (`config`
# needs no Docker daemon), and the unauthenticated metrics listener (port 9464) stays inside the
# compose network: no service publishes it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
docker-compose config -q
docker-compose --profile monitoring config -q
if docker-compose --profile monitoring config | grep -v 'METRICS_BIND_ADDRESS:' | grep -n 9464; then
    echo "docker-compose.yml publishes the metrics port 9464" >&2
    exit 1
fi
