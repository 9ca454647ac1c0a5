#!/bin/sh
# Stage "cross" (natively), after the interpreters: auditwheel, and cibuildwheel's utility
# interpreter.
set -eu
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
# auditwheel (and its dependencies) for the newest interpreter built, outside every /opt/python
# environment, as in pypa's images
last=$(ls -d /out/opt/python/*/ | grep -v 't/$' | sort -V | tail -n 1)
[ -n "$last" ] || last=$(ls -d /out/opt/python/*/ | sort -V | tail -n 1)
last=${last%/}
exe=$(readlink "$last/bin/python")
minor=$(echo "$exe" | sed 's/^python//; s/t$//')
/opt/pipenv/bin/pip install --quiet --no-compile \
  --target /out/opt/ciwheels-tools/site --python-version "$minor" --only-binary :all: auditwheel
mkdir -p /out/opt/ciwheels-tools/bin /out/usr/local/bin
printf '#!%s/bin/%s\nimport sys\nsys.path.insert(0, "/opt/ciwheels-tools/site")\nfrom auditwheel.main import main\nsys.exit(main())\n' \
  "${last#/out}" "$exe" > /out/opt/ciwheels-tools/bin/auditwheel
chmod +x /out/opt/ciwheels-tools/bin/auditwheel
ln -sf /opt/ciwheels-tools/bin/auditwheel /out/usr/local/bin/auditwheel
# cibuildwheel runs /opt/python/cp39-cp39/bin/python as its utility interpreter
[ -e /out/opt/python/cp39-cp39 ] || ln -s "$(basename "$last")" /out/opt/python/cp39-cp39
# debug information is not needed to build wheels: stripping it (the interpreters, their
# extension modules and the static libpython) takes /opt/python from about 2 GB to a quarter
. /ciwheels-setup/facts
strip_tool=$(command -v "$TRIPLET-strip" || command -v strip)
find /out/opt/python -type f \( -name '*.so' -o -name '*.a' -o -perm -u+x \) | while read -r f; do
  case "$(file -b "$f")" in ELF*|current\ ar\ archive*) "$strip_tool" --strip-debug "$f" ;; esac
done
du -sh /out/opt/python | sed 's/^/ciwheels image: interpreters: /'
