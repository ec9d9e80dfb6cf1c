#!/bin/sh
# Solves every exercise of "RBAC: ServiceAccounts, Roles and bindings".
set -eu
kubectl create serviceaccount ci -n shop
kubectl create role pod-reader --verb=get,list,watch --resource=pods,pods/log -n shop
kubectl create rolebinding ci-reads-pods --role=pod-reader --serviceaccount=shop:ci -n shop
kubectl create clusterrole node-viewer --verb=get,list,watch --resource=nodes
kubectl create clusterrolebinding ci-views-nodes --clusterrole=node-viewer --serviceaccount=shop:ci
kubectl create rolebinding jane-edit --clusterrole=edit --user=jane -n shop
