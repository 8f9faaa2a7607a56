#!/usr/bin/env bash
# promtool (Debian package prometheus) lints the alert rules and the compose profile's Prometheus
# config, then runs the rules' unit tests (deploy/prometheus/alerts_test.yml).
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../deploy/prometheus" && pwd)"
promtool check rules "$dir/alerts.yml"
promtool check config "$dir/prometheus.yml"
promtool test rules "$dir/alerts_test.yml"
