#!/bin/sh
# Stage "cross" (runs natively on the building machine): installs the cross toolchain for the
# target's triplet, of the same GCC version as the target's own gcc, and, when native compilers
# are wanted, collects it with the x86_64 libraries it needs and their loader into /xtree: a
# self-contained tree the image gets as /opt/ciwheels-cross (binfmt_misc only intercepts
# foreign ELF files, so these run at native speed inside the emulated container).
set -eu
. /ciwheels-setup/facts
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ "$TRIPLET" = "$(uname -m)-linux-gnu" ]; then
  compilers="gcc-$GCC_MAJOR g++-$GCC_MAJOR"   # the target is this machine's arch
else
  compilers="gcc-$GCC_MAJOR-$TRIPLET g++-$GCC_MAJOR-$TRIPLET binutils-$TRIPLET"
fi
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $compilers gcc make libc6-dev pkgconf python3 python3-venv \
  xz-utils ca-certificates file >/dev/null
rm -rf /var/lib/apt/lists/*
# a current pip (the distribution's may be old: Ubuntu 22.04 has 22.0) that installs pip, build and
# auditwheel into the target's interpreters
python3 -m venv /opt/pipenv
PIP_ROOT_USER_ACTION=ignore /opt/pipenv/bin/pip install --quiet --upgrade pip
# the CPython builds compile against the target's own root (/sysroot), under the names the
# target's compilers have there (they are what the built interpreters record for extensions)
for tool in gcc g++ cpp; do
  printf '#!/bin/sh\nexec /usr/bin/%s-%s-%s --sysroot=/sysroot "$@"\n' "$TRIPLET" "$tool" "$GCC_MAJOR" \
    > "/usr/local/bin/$TRIPLET-$tool"
  chmod +x "/usr/local/bin/$TRIPLET-$tool"
done
[ -e /sysroot/lib ] || ln -s usr/lib /sysroot/lib
# the loader, which libc.so names as /lib/<loader>, lives in /usr/lib/<triplet> (copied) with a link
for loader in /sysroot/usr/lib/"$TRIPLET"/ld-linux*; do
  [ -e "/sysroot/usr/lib/$(basename "$loader")" ] || ln -s "$TRIPLET/$(basename "$loader")" /sysroot/usr/lib/
done
mkdir -p /xtree
[ "${NATIVE_COMPILERS:-1}" = 1 ] || exit 0
[ "$TRIPLET" != "$(gcc -dumpmachine)" ] || exit 0   # the target is this machine: nothing to add
dest=/xtree/opt/ciwheels-cross
mkdir -p "$dest/usr/bin" "$dest/bin"
# the toolchain, relocated (gcc finds its own parts relative to its binary)
for pkg in "cpp-$GCC_MAJOR-$TRIPLET" "gcc-$GCC_MAJOR-$TRIPLET" "g++-$GCC_MAJOR-$TRIPLET" "binutils-$TRIPLET" \
           "libgcc-$GCC_MAJOR-dev-$DEBIAN_ARCH-cross" "libstdc++-$GCC_MAJOR-dev-$DEBIAN_ARCH-cross"; do
  dpkg -L "$pkg"
done | sort -u | while read -r path; do
  case "$path" in /usr/share/*|/usr/lib/x86_64-linux-gnu/*|/usr/x86_64-linux-gnu/*) continue ;; esac
  if [ -f "$path" ] || [ -L "$path" ]; then
    mkdir -p "$dest$(dirname "$path")"
    cp -a "$path" "$dest$path"
  fi
done
# binutils' private libraries (/usr/x86_64-linux-gnu/<triplet>/lib) come with the closure below;
# link names for runtime libraries point at the target's own copies, which is what the container
# (and auditwheel) will see
gccdir="$dest/usr/lib/gcc-cross/$TRIPLET/$GCC_MAJOR"
for link in "$gccdir"/*.so; do
  [ -L "$link" ] || continue
  name=$(basename "$(readlink "$link")")
  ln -sf "/usr/lib/$TRIPLET/$name" "$link"
done
rm -rf "$dest/usr/$TRIPLET/lib"
# the x86_64 libraries every ELF file of the tree needs, and their loader
find "$dest" -type f -exec sh -c 'file -b "$1" | grep -q "ELF 64-bit.*x86-64" && echo "$1"' _ {} \; > /tmp/elves
xargs -r ldd < /tmp/elves 2>/dev/null | awk '/=> \//{print $3} /^\t\/.*ld-linux/{print $1}' | sort -u > /tmp/libs
while read -r lib; do
  real=$(readlink -f "$lib")
  mkdir -p "/xtree/usr/lib/x86_64-linux-gnu"
  cp -L "$real" "/xtree/usr/lib/x86_64-linux-gnu/$(basename "$lib")"
done < /tmp/libs
# commands under their usual names, first on PATH in the image; CIWHEELS_NATIVE_COMPILERS=0
# hands every call to the target's own (emulated) tool instead
version=$("/usr/bin/$TRIPLET-gcc-$GCC_MAJOR" -dumpfullversion)
for pair in gcc:gcc-$GCC_MAJOR cc:gcc-$GCC_MAJOR g++:g++-$GCC_MAJOR c++:g++-$GCC_MAJOR cpp:cpp-$GCC_MAJOR \
            gcc-$GCC_MAJOR:gcc-$GCC_MAJOR g++-$GCC_MAJOR:g++-$GCC_MAJOR \
            as:as ld:ld ld.bfd:ld.bfd ar:ar nm:nm ranlib:ranlib strip:strip objcopy:objcopy objdump:objdump \
            readelf:readelf gcc-ar:gcc-ar-$GCC_MAJOR gcc-nm:gcc-nm-$GCC_MAJOR gcc-ranlib:gcc-ranlib-$GCC_MAJOR; do
  name=${pair%%:*} tool=${pair#*:}
  [ -e "$dest/usr/bin/$TRIPLET-$tool" ] || continue
  for as_name in "$name" "$TRIPLET-$name"; do
    printf '#!/bin/sh\n[ "${CIWHEELS_NATIVE_COMPILERS:-1}" = 0 ] && exec /usr/bin/%s "$@"\nexec %s "$@"\n' \
      "$as_name" "/opt/ciwheels-cross/usr/bin/$TRIPLET-$tool" > "$dest/bin/$as_name"
    chmod +x "$dest/bin/$as_name"
  done
done
echo "native cross compilers: $TRIPLET gcc $version, $(wc -l < /tmp/libs) x86_64 libraries"
