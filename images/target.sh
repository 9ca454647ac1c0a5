#!/bin/sh
# Stage "target" (runs under QEMU for a foreign arch): the base image gets what building wheels
# and CPython needs (compilers, make, patchelf, the headers of the libraries CPython links), and
# records the facts the other stages read: the C library version, the compiler version and the
# GNU triplet.
set -eu
if command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends gcc g++ make libc6-dev patchelf ca-certificates \
    debianutils file unzip xz-utils libssl-dev libffi-dev zlib1g-dev libbz2-dev liblzma-dev \
    libsqlite3-dev libncurses-dev libreadline-dev uuid-dev >/dev/null
  rm -rf /var/lib/apt/lists/*
else
  echo "ciwheels image: the base needs apt-get (a Debian or Ubuntu image)" >&2
  exit 1
fi
triplet=$(gcc -dumpmachine)
gcc_major=$(gcc -dumpversion | cut -d. -f1)
glibc=$(getconf GNU_LIBC_VERSION | cut -d' ' -f2)
mkdir -p /ciwheels-setup
cat > /ciwheels-setup/facts <<FACTS
TRIPLET=$triplet
GCC_MAJOR=$gcc_major
GLIBC=$glibc
FACTS
cat /ciwheels-setup/facts
