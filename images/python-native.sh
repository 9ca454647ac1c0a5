#!/bin/sh
# Stage "cross" when the target is the building machine's own arch (x86_64): this stage is the
# same distribution for the same arch, so the interpreters are built as plain native builds
# against this root, with the target's development packages installed here too (the names as in
# target.sh), instead of the cross sysroot. Then python.sh does the rest.
set -eu
. /ciwheels-setup/facts
if [ ! -e /build/native-ready ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends libssl-dev libffi-dev zlib1g-dev libbz2-dev liblzma-dev \
    libsqlite3-dev libncurses-dev libreadline-dev uuid-dev >/dev/null
  rm -rf /var/lib/apt/lists/*
  # the sysroot wrappers are for cross builds; the distribution's own compilers carry these names
  rm -f "/usr/local/bin/$TRIPLET-gcc" "/usr/local/bin/$TRIPLET-g++" "/usr/local/bin/$TRIPLET-cpp"
  rm -rf /sysroot/usr/lib/*/pkgconfig /sysroot/usr/share/pkgconfig
  mkdir -p /build && touch /build/native-ready
fi
exec sh /ciwheels-setup/python.sh "$@"
