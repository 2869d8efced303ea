#!/usr/bin/env bash
# Docker HEALTHCHECK for the candela image: GET /health on port $1 (default 8000) over bash's
# /dev/tcp, so the slim image needs no curl. Kubernetes deployments use the chart's httpGet
# probes instead.
set -euo pipefail
port="${1:-8000}"
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
read -r -t 5 status_line <&3
[[ "${status_line}" == *" 200"* ]]
