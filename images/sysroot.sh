#!/bin/sh
# Stage "sysroot" (natively; a late, cheap layer: the interpreters' layers do not depend on it):
# unpacks an older Debian release's cross packages of the target (glibc, kernel headers, GCC's
# runtime libraries and libstdc++ with its headers) into /out/opt/ciwheels-sysroot/root, and
# writes the compiler commands that build against it into /out/opt/ciwheels-sysroot/bin, first
# on the image's PATH. SYSROOT=none (or no .deb files) leaves /out empty.
#   SYSROOT        the sysroot's name (bullseye, bookworm), SYSROOT_GLIBC its glibc (checked here)
set -eu
. /ciwheels-setup/facts
mkdir -p /out
if [ "${SYSROOT:-none}" = none ]; then
  echo "ciwheels image: no sysroot: extensions compile against the base's glibc $GLIBC"
  exit 0
fi
top=/out/opt/ciwheels-sysroot
root=$top/root
mkdir -p "$root"
for deb in /ciwheels-setup/sysroot/*.deb; do
  dpkg-deb -x "$deb" "$root"
done
# Debian's cross packages keep the target's files under /usr/<triplet>; give them the layout a
# target root has, which is where gcc --sysroot looks (the libc.so linker scripts name
# /usr/<triplet>/lib/..., which the linker finds inside the sysroot, so that path stays too)
lib=usr/$TRIPLET/lib
[ -d "$root/$lib" ] || { echo "ciwheels image: the $SYSROOT sysroot has no $lib" >&2; exit 1; }
ln -s "$TRIPLET/include" "$root/usr/include"
ln -s "../$TRIPLET/lib" "$root/usr/lib/$TRIPLET"
ln -s usr/lib "$root/lib"
# what a project's before-all builds into /usr/local (with these compilers) is found as usual
ln -s /usr/local "$root/usr/local"
# GCC's runtime: the sysroot's libstdc++, libgcc_s, libatomic and libgomp under their link
# names beside libc, so that links bind to them (and their symbol versions) rather than to the
# base's newer ones in the compiler's own directory, which the linker searches later
gcc_old=$(ls "$root/usr/lib/gcc-cross/$TRIPLET")
old=$root/usr/lib/gcc-cross/$TRIPLET/$gcc_old
for name in libstdc++ libatomic libgomp; do
  target=$(ls "$root/$lib/$name.so."[0-9] 2>/dev/null | head -n 1)
  [ -n "$target" ] && ln -sf "$(basename "$target")" "$root/$lib/$name.so"
done
cp "$old/libgcc_s.so" "$root/$lib/libgcc_s.so"   # GROUP ( libgcc_s.so.1 -lgcc )
for archive in libstdc++.a libsupc++.a libstdc++fs.a; do  # -static-libstdc++ takes these
  [ -f "$old/$archive" ] && cp "$old/$archive" "$root/$lib/"
done
# the sysroot really is the glibc it is said to be (libc.so.6 says its release)
release=$(grep -ao 'release version 2\.[0-9]*' "$root/$lib/libc.so.6" | head -n 1 | sed 's/release version //')
if [ "$release" != "$SYSROOT_GLIBC" ]; then
  echo "ciwheels image: the $SYSROOT sysroot's libc is glibc $release, not $SYSROOT_GLIBC" >&2
  exit 1
fi
cxx=$root/usr/include/c++/$gcc_old
[ -d "$cxx" ] || { echo "ciwheels image: the $SYSROOT sysroot has no C++ headers ($cxx)" >&2; exit 1; }
# C++ compiles (g++, and gcc given a C++ file) use the sysroot's libstdc++ headers, not the
# compiler's own: a cc1plus spec, so C compiles are untouched
cxx=${cxx#/out}
printf '*cc1plus:\n+ -nostdinc++ -isystem %s -isystem %s/%s -isystem %s/backward\n\n' "$cxx" "$cxx" "$TRIPLET" "$cxx" \
  > "$top/cxx.specs"
# the commands: each hands its call to the next command of its name (the native cross
# compiler's, which itself defers to the image's own when CIWHEELS_NATIVE_COMPILERS=0, or the
# image's own), adding the sysroot; after it, as fallbacks the sysroot lacks, /usr/local and
# then the base's headers and libraries (what apt-get installed in before-all: auditwheel then
# says whether the wheel still fits the policy). CIWHEELS_SYSROOT=0 hands the call on unchanged.
mkdir -p "$top/bin"
v=$GCC_MAJOR
for name in gcc cc g++ c++ cpp "gcc-$v" "g++-$v" "cpp-$v" \
            "$TRIPLET-gcc" "$TRIPLET-g++" "$TRIPLET-cpp" "$TRIPLET-gcc-$v" "$TRIPLET-g++-$v" "$TRIPLET-cpp-$v"; do
  cat > "$top/bin/$name" <<EOF
#!/bin/sh
# $name against the glibc $SYSROOT_GLIBC sysroot of Debian $SYSROOT (ciwheels image, images/README.md)
next=/opt/ciwheels-cross/bin/$name
[ -x "\$next" ] || next=/usr/bin/$name
[ "\${CIWHEELS_SYSROOT:-1}" = 0 ] && exec "\$next" "\$@"
# the base's own system directories named explicitly (-I/usr/include, say from a build's flags)
# would come before the sysroot's: they stay searched, after it
for arg do
  shift
  case "\$arg" in -I/usr/include|-I/usr/include/$TRIPLET|-L/usr/lib/$TRIPLET|-L/lib/$TRIPLET|-L/usr/lib|-L/lib) continue ;; esac
  set -- "\$@" "\$arg"
done
exec "\$next" --sysroot=${root#/out} -specs=${top#/out}/cxx.specs "\$@" \\
  -idirafter /usr/include/$TRIPLET -idirafter /usr/include \\
  -L/usr/local/lib -L${root#/out}/usr/lib/$TRIPLET -L/usr/lib/$TRIPLET
EOF
  chmod +x "$top/bin/$name"
done
# auditwheel's refusal of a wheel for "too-recent versioned symbols" names no library: when it
# says so, also show what the wheel links (the libraries before-all installed from the base)
cat > "$top/bin/auditwheel" <<EOF
#!/bin/sh
# auditwheel, explaining a refusal for too-recent symbols (ciwheels image, images/README.md)
real=/opt/ciwheels-tools/bin/auditwheel
[ "\$1" = repair ] || exec "\$real" "\$@"
err=\$(mktemp)
"\$real" "\$@" 2> "\$err"
rc=\$?
cat "\$err" >&2
if [ \$rc != 0 ] && grep -q "too-recent versioned symbols" "\$err"; then
  for arg in "\$@"; do
    case "\$arg" in *.whl) echo "ciwheels image: what the refused wheel links (auditwheel show \$arg):" >&2
                           "\$real" show "\$arg" >&2 ;; esac
  done
  echo "ciwheels image: this image compiles extensions against the glibc $SYSROOT_GLIBC of the $SYSROOT" \\
    "sysroot, so a library the wheel links was built for a newer glibc: one from the image's own" \\
    "distribution (apt-get install in before-all) needs its glibc $GLIBC. Build it from source in" \\
    "before-all with the image's compilers (they use the sysroot) into /usr/local: see" \\
    "\"Libraries from before-all\" in ciwheels' images/README.md." >&2
fi
rm -f "\$err"
exit \$rc
EOF
chmod +x "$top/bin/auditwheel"
cat > "$top/info" <<EOF
SYSROOT=$SYSROOT
SYSROOT_GLIBC=$SYSROOT_GLIBC
SYSROOT_GCC=$gcc_old
EOF
echo "ciwheels image: sysroot $SYSROOT: glibc $SYSROOT_GLIBC, libstdc++ of GCC $gcc_old, $(du -sh "$root" | cut -f1)"
