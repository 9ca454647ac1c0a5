#!/bin/sh
# Stage "cross" (natively): `python.sh PYTHON VERSION TARBALL` builds one CPython (a catalog
# name such as cp314t) for the target into /out/opt/python/<tag>. One build step per
# interpreter, so an image build that fails in one of them redoes only that one.
# A foreign target is cross-compiled against the target's root (/sysroot) with a build Python
# of the same X.Y (the distro's, or one built here first); configure, make and the byte
# compilation all run at native speed. Each interpreter gets pip and build, installed from
# PyPI for its own version.
set -eu
. /ciwheels-setup/facts
jobs=$(nproc)
native=$(gcc -dumpmachine)
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
mkdir -p /out/opt/python /build
log() { echo "ciwheels image: $*"; }
quiet() {  # run "$@" with its output in a log, shown (the end of it) only if it fails
  if ! "$@" > /build/step.log 2>&1; then tail -n 60 /build/step.log >&2; exit 1; fi
}
build_python_for() {  # a native interpreter of X.Y for a cross build: the distro's, or built here
  minor=$1 tarball=$2
  if command -v "python$minor" >/dev/null 2>&1; then command -v "python$minor"; return; fi
  dir=/build/native-$minor
  if [ ! -x "$dir/python" ]; then
    mkdir -p "$dir" && tar -C "$dir" --strip-components=1 -xf "$tarball"
    log "building a native Python $minor to cross-build with" >&2
    (cd "$dir" && quiet ./configure --disable-test-modules --without-ensurepip && quiet make -j"$jobs") >&2
    rm -f /build/step.log
  fi
  echo "$dir/python"
}
build_one() {
  python=$1 version=$2 tarball=$3
  minor=${version%.*}
  case "$python" in *t) tag="${python%t}-$python" gil="--disable-gil" abi="t" ;;
                    *) tag="$python-$python" gil="" abi="" ;; esac
  prefix=/opt/python/$tag
  src=/build/$tag
  mkdir -p "$src" && tar -C "$src" --strip-components=1 -xf "/ciwheels-setup/sources/$tarball"
  if [ "$TRIPLET" = "$native" ]; then
    cross=""
  else
    build_python=$(build_python_for "$minor" "/ciwheels-setup/sources/$tarball")
    # 3.9 and 3.10 know no --with-build-python: they look for python3.X on PATH
    mkdir -p /build/bin && ln -sf "$build_python" "/build/bin/python$minor" && PATH=/build/bin:$PATH
    cross="--build=$native --host=$TRIPLET --with-build-python=$build_python
           ac_cv_file__dev_ptmx=yes ac_cv_file__dev_ptc=no"
  fi
  log "building CPython $version ($tag) for $TRIPLET"
  start=$(date +%s)
  # shellcheck disable=SC2086
  (cd "$src" && export PKG_CONFIG_LIBDIR="/sysroot/usr/lib/$TRIPLET/pkgconfig:/sysroot/usr/share/pkgconfig" \
      PKG_CONFIG_SYSROOT_DIR=/sysroot && quiet ./configure --prefix="$prefix" $cross $gil --enable-ipv6 --disable-test-modules \
      --without-ensurepip CC="$TRIPLET-gcc" CXX="$TRIPLET-g++" \
    && quiet make -j"$jobs" && quiet make install DESTDIR=/out)
  root=/out$prefix
  # the names cibuildwheel and users call
  exe=$(cd "$root/bin" && ls "python$minor$abi")
  ln -sf "$exe" "$root/bin/python3"
  ln -sf "$exe" "$root/bin/python"
  site=$(echo "$root"/lib/python"$minor$abi"/site-packages)
  # pip evaluates dependency markers for the Python it runs on, not for --python-version: name
  # what build needs before 3.11 (tomli) and 3.10.2 (importlib-metadata) itself
  case "$minor" in 3.9) extra="tomli importlib-metadata" ;; 3.10) extra="tomli" ;; *) extra="" ;; esac
  # shellcheck disable=SC2086
  /opt/pipenv/bin/pip install --quiet --no-compile --target "$site" --python-version "$minor" \
    --only-binary :all: pip build $extra
  for script in pip pip3 "pip$minor" pyproject-build; do
    case "$script" in pyproject-build) entry="build.__main__ import entrypoint" ;;
                      *) entry="pip._internal.cli.main import main as entrypoint" ;; esac
    printf '#!%s/bin/%s\nimport sys\nfrom %s\nsys.exit(entrypoint())\n' "$prefix" "$exe" "$entry" \
      > "$root/bin/$script"
    chmod +x "$root/bin/$script"
  done
  rm -rf "$site/bin"
  rm -rf "$src"
  log "CPython $version ($tag) built in $(( $(date +%s) - start )) s"
}

build_one "$@"
