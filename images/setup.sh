#!/bin/sh
# Runs inside the image being built (under QEMU for a foreign arch). Meets the contract
# cibuildwheel needs from a manylinux image:
#  - /opt/python/<tag>/bin/python and pip, with `build` (the default frontend);
#  - /opt/python/cp39-cp39/bin/python: cibuildwheel hard-codes it as its utility interpreter;
#  - auditwheel and patchelf on PATH.
set -eu
# the building machine's CA bundle (it may sit behind a TLS-inspecting proxy), for pip only
if [ -s /ciwheels-setup/ca-certificates.crt ]; then
  export PIP_CERT=/ciwheels-setup/ca-certificates.crt SSL_CERT_FILE=/ciwheels-setup/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/ciwheels-setup/ca-certificates.crt
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# a plain Debian/Ubuntu base (e.g. BASE=debian:trixie in CI): install what the image needs
if command -v apt-get >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv \
    python3-dev gcc libc6-dev patchelf ca-certificates debianutils file unzip >/dev/null
  rm -rf /var/lib/apt/lists/*
fi
tag=$(python3 -c 'import sys; v = sys.version_info; print(f"cp{v[0]}{v[1]}-cp{v[0]}{v[1]}")')
python3 -m venv "/opt/python/$tag"
"/opt/python/$tag/bin/pip" install --quiet build
[ -e /opt/python/cp39-cp39 ] || ln -s "/opt/python/$tag" /opt/python/cp39-cp39
python3 -m venv /opt/ciwheels-tools
/opt/ciwheels-tools/bin/pip install --quiet auditwheel
ln -sf /opt/ciwheels-tools/bin/auditwheel /usr/local/bin/auditwheel
command -v patchelf >/dev/null
command -v which >/dev/null
echo "ciwheels image: $tag, $(auditwheel --version)"
