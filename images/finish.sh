#!/bin/sh
# The image (under QEMU for a foreign arch): wires the native compilers in, writes what the
# image carries to /opt/python/ciwheels.json, and checks every interpreter and compiler works.
set -eu
. /ciwheels-setup/facts
if [ "$GLIBC" != "$EXPECT_GLIBC" ]; then
  echo "ciwheels image: the base's glibc is $GLIBC, but $EXPECT_GLIBC was detected before the build" >&2
  exit 1
fi
native=false
if [ -d /opt/ciwheels-cross/bin ]; then
  native=true
  # the x86_64 loader at the path its programs name (/lib64 does not exist in a riscv64 root)
  if [ ! -e /lib64/ld-linux-x86-64.so.2 ]; then
    mkdir -p /usr/lib64
    [ -e /lib64 ] || ln -s usr/lib64 /lib64
    ln -s /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 /lib64/ld-linux-x86-64.so.2
  fi
  # header search parity with the target's gcc, which also searches /usr/local/include
  [ -e "/usr/local/include/$TRIPLET" ] || ln -s . "/usr/local/include/$TRIPLET"
  # the target's own gcc, if called by its path, finds the target's binutils in its tooldir
  # before PATH (x86_64 ld cannot load its LTO plugin)
  mkdir -p "/usr/$TRIPLET/bin"
  for tool in as ld ld.bfd; do
    [ -e "/usr/$TRIPLET/bin/$tool" ] || ln -s "/usr/bin/$TRIPLET-$tool" "/usr/$TRIPLET/bin/$tool"
  done
fi
# the interpreters were cross-compiled against the target root at /sysroot: what they recorded
# of it (flags of their own stdlib modules) names the same paths here without the prefix
for f in /opt/python/*/lib/python3*/_sysconfigdata_*.py /opt/python/*/lib/python3*/config-*/Makefile \
         /opt/python/*/bin/python3*-config; do
  [ -f "$f" ] && [ ! -L "$f" ] && sed -i 's|/sysroot/|/|g' "$f"
done
rm -f /opt/python/*/lib/python3*/__pycache__/_sysconfigdata_*.pyc
# CPython 3.11's setup.py finds libffi's header but not its library in a cross build, so its
# _ctypes lacks the dependency: name it (the symbols are libffi's, unversioned)
ffi=$(patchelf --print-soname "/usr/lib/$TRIPLET/libffi.so")
for so in /opt/python/*/lib/python3*/lib-dynload/_ctypes.*.so; do
  [ -f "$so" ] || continue
  patchelf --print-needed "$so" | grep -q '^libffi' || patchelf --add-needed "$ffi" "$so"
done
# an older glibc's sysroot (sysroot.sh), if the recipe has one: its compilers come first on PATH
sysroot=null
if [ -f /opt/ciwheels-sysroot/info ]; then
  . /opt/ciwheels-sysroot/info
  sysroot="{\"name\": \"$SYSROOT\", \"glibc\": \"$SYSROOT_GLIBC\", \"libstdc++\": \"$SYSROOT_GCC\"}"
fi
# cross mode (xpython.sh): the native interpreters start here (x86_64, outside QEMU) with what pip,
# uv and build backends need, and uv runs
cross=""
for p in $PYTHONS; do
  case "$p" in *t) continue ;; esac
  x="/opt/ciwheels-xpython/$p-$p/bin/python"
  [ -x "$x" ] || continue
  "$x" -c "import ssl, ctypes, zlib, bz2, lzma, sqlite3, hashlib, platform, sys; assert platform.machine() == 'x86_64'; print('ciwheels image: native', '$p', sys.version.split()[0])"
  cross="$cross $p"
done
[ -z "$cross" ] || /opt/ciwheels-cross/bin/uv --version
cross_json=$(for p in $cross; do printf '"%s", ' "$p"; done | sed 's/, $//')
pythons_json=$(for p in $PYTHONS; do printf '"%s", ' "$p"; done | sed 's/, $//')
cat > /opt/python/ciwheels.json <<JSON
{"format": 1, "arch": "$ARCH", "pythons": [$pythons_json], "policy": "$AUDITWHEEL_PLAT", "glibc": "$GLIBC",
 "gcc": "$GCC_MAJOR", "native-compilers": $native, "sysroot": $sysroot, "cross": [$cross_json],
 "recipe": "$RECIPE"}
JSON
# every interpreter starts and has the modules pip and builds need
for p in $PYTHONS; do
  case "$p" in *t) tag="${p%t}-$p" ;; *) tag="$p-$p" ;; esac
  "/opt/python/$tag/bin/python" -c "import ssl, ctypes, zlib, bz2, lzma, sqlite3, hashlib, sys, build, pip; print('ciwheels image:', '$tag', sys.version.split()[0])"
  "/opt/python/$tag/bin/pip" --version >/dev/null
done
auditwheel --version
# the compilers on PATH build C and C++ programs that run here; with a sysroot, programs that
# call what glibc 2.38 redirected (strtol, sscanf) and throw C++ exceptions need no newer glibc
# and libstdc++ than the sysroot's (the emulated compiler is checked with C only: it is slow)
mkdir -p /tmp/ciwheels-check && cd /tmp/ciwheels-check
printf '#include <stdio.h>\n#include <stdlib.h>\nint main(int c, char **v){int n = 0; sscanf("7", "%%d", &n);\n'\
'printf("c ok %%ld\\n", strtol(c > 5 ? v[1] : "35", NULL, 10) + n); return 0;}\n' > c.c
printf '#include <iostream>\n#include <stdexcept>\n#include <string>\nint main(){try {throw std::runtime_error("c++");}\n'\
'catch (const std::exception &e) {std::cout << std::string(e.what()) + " ok" << std::endl;} return 0;}\n' > cc.cc
newest() {  # the newest GLIBC_/GLIBCXX_ version a program needs
  readelf -V -W "$2" | grep -o "Name: $1_[0-9.]*" | sed "s/Name: $1_//" | sort -V | tail -n 1
}
check() {
  "$@"
  prog=$(basename "$2" | cut -d. -f1)
  [ "$prog" != cc ] || ./cc
  [ "$prog" != c ] || ./c
  if [ -n "${SYSROOT_GLIBC:-}" ]; then
    need=$(newest GLIBC "$prog")
    if [ "$(printf '%s\n%s\n' "$need" "$SYSROOT_GLIBC" | sort -V | tail -n 1)" != "$SYSROOT_GLIBC" ]; then
      echo "ciwheels image: '$*' against the sysroot needs GLIBC_$need, newer than its glibc $SYSROOT_GLIBC" >&2
      exit 1
    fi
  fi
}
export PATH=/opt/ciwheels-sysroot/bin:/opt/ciwheels-cross/bin:$PATH
check gcc -O2 -o c c.c
check g++ -O2 -o cc cc.cc
if [ -n "${SYSROOT_GLIBC:-}" ] && [ "$native" = true ]; then
  rm -f c && (export CIWHEELS_NATIVE_COMPILERS=0; check gcc -O2 -o c c.c)
fi
[ -z "${SYSROOT_GLIBC:-}" ] || echo "ciwheels image: compilers build against the glibc $SYSROOT_GLIBC sysroot ($SYSROOT)"
cd / && rm -rf /tmp/ciwheels-check /ciwheels-setup/sources
