#!/bin/sh
# Stage "cross" (natively), after the interpreters: what cross mode needs (images/README.md,
# "Cross mode"), collected under /xpy, which the image gets at /. x86_64 ELF files run natively
# in the emulated container (binfmt_misc only intercepts the target's), like the native compilers.
#   xpython.sh tools                  uv and the `build` frontend (pins: CROSS_TOOLS)
#   xpython.sh PYTHON VERSION TARBALL a native x86_64 CPython of the same X.Y as the target
#                                     interpreter PYTHON, in /opt/ciwheels-xpython/<tag>: the
#                                     distribution's own when it has that X.Y (relocated), else
#                                     built here from the target's own tarball
# Free-threaded interpreters get none: their builds stay emulated (the driver says so).
set -eu
. /ciwheels-setup/facts
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
top=/xpy/opt/ciwheels-xpython
mkdir -p "$top" /xpy/usr/lib/x86_64-linux-gnu
log() { echo "ciwheels image: $*"; }
[ "$TRIPLET" != "$(gcc -dumpmachine)" ] || { log "cross mode: the target is this machine's arch, nothing to add"; exit 0; }
closure() {  # the x86_64 libraries the given ELF files need (their loader is the native compilers')
  for f in "$@"; do ldd "$f" 2>/dev/null || true; done | awk '/=> \//{print $3}' | sort -u | while read -r lib; do
    cp -L "$lib" "/xpy/usr/lib/x86_64-linux-gnu/$(basename "$lib")"
  done
}
if [ "$1" = tools ]; then
  # pure-Python `build` (version independent: the driver puts it on the native interpreter's
  # path) and uv (one static-enough x86_64 binary)
  # shellcheck disable=SC2086
  /opt/pipenv/bin/pip install --quiet --no-compile --target "$top/tools" --python-version 3.11 --only-binary :all: \
    $CROSS_TOOLS tomli
  mkdir -p /xpy/opt/ciwheels-cross/bin
  mv "$top/tools/bin/uv" /xpy/opt/ciwheels-cross/bin/uv
  rm -rf "$top/tools/bin" "$top/tools/uv" "$top"/tools/uv-*.dist-info
  closure /xpy/opt/ciwheels-cross/bin/uv
  log "cross mode tools: $CROSS_TOOLS"
  exit 0
fi
python=$1 version=$2 tarball=$3
case "$python" in *t) log "$python is free-threaded: no native interpreter (its builds stay emulated)"; exit 0 ;; esac
minor=${version%.*}
tag=$python-$python
dest=$top/$tag
start=$(date +%s)
if command -v "python$minor" >/dev/null 2>&1 && [ "$("python$minor" -c 'import sys; print(sys.version.split()[0])')" = "$version" ]; then
  # the distribution's, the same release: its files under a prefix of their own (CPython finds
  # its standard library relative to its executable)
  mkdir -p "$dest/bin" "$dest/lib"
  cp -L "$(command -v "python$minor")" "$dest/bin/python$minor"
  cp -a "/usr/lib/python$minor" "$dest/lib/"
  rm -rf "$dest/lib/python$minor/sitecustomize.py" "$dest/lib/python$minor/test"
  # links (Debian's sysconfigdata points into its multiarch folder) become the files they name
  find "$dest/lib/python$minor" -type l | while read -r link; do
    orig=/usr/lib/python$minor/${link#"$dest/lib/python$minor/"}
    rm -f "$link"
    [ ! -e "$orig" ] || cp -L "$orig" "$link"
  done
  how="the distribution's python$minor"
else
  if [ ! -e /build/xpython-deps ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends libssl-dev libffi-dev zlib1g-dev libbz2-dev liblzma-dev \
      libsqlite3-dev uuid-dev >/dev/null
    rm -rf /var/lib/apt/lists/*
    touch /build/xpython-deps
  fi
  src=/build/xpython-$tag
  rm -rf "$src" && mkdir -p "$src" && tar -C "$src" --strip-components=1 -xf "/ciwheels-setup/sources/$tarball"
  log "building a native CPython $version for cross builds of $tag"
  if ! (cd "$src" && ./configure --prefix="/opt/ciwheels-xpython/$tag" --without-ensurepip --disable-test-modules \
          > /build/xpython.log 2>&1 && make -j"$(nproc)" >> /build/xpython.log 2>&1 \
          && make install DESTDIR=/xpy >> /build/xpython.log 2>&1); then
    tail -n 60 /build/xpython.log >&2
    exit 1
  fi
  rm -rf "$src" /build/xpython.log "$dest/lib/python$minor/test"
  how="built from $tarball"
fi
ln -sf "python$minor" "$dest/bin/python3"
ln -sf "python$minor" "$dest/bin/python"
closure "$dest/bin/python$minor" "$dest"/lib/python"$minor"/lib-dynload/*.so
log "native CPython $version for $tag ($how) in $(( $(date +%s) - start )) s"
