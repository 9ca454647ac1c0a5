/* Links the image's liblzma (Debian trixie's, which needs glibc 2.34). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <lzma.h>

static PyObject *version(PyObject *self, PyObject *args) { return PyUnicode_FromString(lzma_version_string()); }

static PyMethodDef methods[] = {{"version", version, METH_NOARGS, "liblzma's version"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_lzmademo", NULL, -1, methods};

PyMODINIT_FUNC PyInit__lzmademo(void) { return PyModule_Create(&module); }
