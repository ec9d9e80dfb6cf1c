#!/bin/sh
set -eu
kubectl create namespace shop
