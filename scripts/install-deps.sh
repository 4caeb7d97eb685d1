#!/usr/bin/env bash
# Installs everything closedloop needs to build, test and run on Debian 12, from Debian
# packages and PyPI only. Idempotent: does nothing when all is present.
set -euo pipefail

debs=(build-essential cmake pkg-config git
      librdkafka-dev libavro-dev liblmdb-dev lmdb-utils libcurl4-openssl-dev
      libjansson-dev libssl-dev libmicrohttpd-dev libcmocka-dev zlib1g-dev
      clang libclang-rt-14-dev llvm
      openjdk-17-jre-headless maven python3 python3-pip python3-venv
      clang-format curl chromium)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python reference oracles for tests (fastavro decodes our Avro independently,
# scikit-learn checks the refit solver).
py_missing=()
python3 -c 'import fastavro' 2>/dev/null || py_missing+=(fastavro)
python3 -c 'import sklearn' 2>/dev/null || py_missing+=(scikit-learn)
python3 -c 'import numpy' 2>/dev/null || py_missing+=(numpy)
python3 -c 'import yaml' 2>/dev/null || py_missing+=(pyyaml)
python3 -c 'import confluent_kafka' 2>/dev/null || py_missing+=(confluent-kafka)
if [ ${#py_missing[@]} -gt 0 ]; then
  echo "install-deps: installing Python packages: ${py_missing[*]}"
  python3 -m pip install -q --disable-pip-version-check "${py_missing[@]}" 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages "${py_missing[@]}"
fi
echo "install-deps: ok"
