#!/bin/sh
# Solves every exercise of "Helm releases" (needs the helm CLI in the lab image).
set -eu
helm install demo /root/charts/hello
printf 'replicaCount: 3\nservice:\n  type: NodePort\n' > /root/prod-values.yaml
helm upgrade demo /root/charts/hello -f /root/prod-values.yaml
helm rollback demo 1
helm history demo > /root/history.txt
