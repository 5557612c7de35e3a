#!/usr/bin/env bash
# The alert rules' checks, alone (`make test-alerts`): promtool validates the chart's rule file and
# runs every unit test in test/alerts/*.promtool.yaml. promtool is in Debian's prometheus package.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v promtool >/dev/null || { echo "promtool not found: apt-get install prometheus" >&2; exit 1; }
promtool check rules charts/secai-fleet/files/prometheus/alerts.yaml
promtool test rules test/alerts/*.promtool.yaml
