/* C that calls strtol, sscanf and memcpy: against glibc 2.38+ headers (with _GNU_SOURCE, which
   Python.h defines) strtol and sscanf become __isoc23_strtol and __isoc23_sscanf@GLIBC_2.38. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* parse("0x10 7") -> (16, 7): a number in any base, then a decimal one */
static PyObject *parse(PyObject *self, PyObject *args) {
    const char *text;
    Py_ssize_t n;
    char buf[128], *end;
    int second = -1;
    if (!PyArg_ParseTuple(args, "s#", &text, &n))
        return NULL;
    if (n >= (Py_ssize_t)sizeof buf) {
        PyErr_SetString(PyExc_ValueError, "too long");
        return NULL;
    }
    memcpy(buf, text, (size_t)n);
    buf[n] = '\0';
    long first = strtol(buf, &end, 0);
    if (end == buf) {
        PyErr_SetString(PyExc_ValueError, "no number");
        return NULL;
    }
    if (sscanf(end, " %d", &second) != 1)
        second = -1;
    return Py_BuildValue("(li)", first, second);
}

static PyMethodDef methods[] = {
    {"parse", parse, METH_VARARGS, "parse(text) -> (int, int)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cdemo", NULL, -1, methods};

PyMODINIT_FUNC PyInit__cdemo(void) { return PyModule_Create(&module); }
