#!/usr/bin/env bash
# promtool (Debian package prometheus) lints the alert rules and the compose profile's Prometheus
# config, runs the rules' unit tests (deploy/prometheus/alerts_test.yml) and parses every query
# of the Grafana dashboard (as recording rules: Grafana itself is not at hand).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="$(cd "$here/../../deploy/prometheus" && pwd)"
promtool check rules "$dir/alerts.yml"
promtool check config "$dir/prometheus.yml"
promtool test rules "$dir/alerts_test.yml"
rules="$(mktemp --suffix=.yml)"
trap 'rm -f "$rules"' EXIT
python3 "$here/check_deploy_files.py" --dashboard-as-rules > "$rules"
promtool check rules "$rules"
