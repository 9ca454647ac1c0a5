/* A small extension with a loop the compiler vectorises at higher ISA levels. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *add(PyObject *self, PyObject *args) {
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b))
        return NULL;
    return PyLong_FromLong(a + b);
}

static double dot_impl(const double *x, const double *y, Py_ssize_t n) {
    double s = 0.0;
    for (Py_ssize_t i = 0; i < n; i++)
        s += x[i] * y[i];
    return s;
}

static PyObject *dot(PyObject *self, PyObject *args) {
    PyObject *xs, *ys;
    if (!PyArg_ParseTuple(args, "OO", &xs, &ys))
        return NULL;
    Py_ssize_t n = PySequence_Size(xs);
    if (n < 0 || n != PySequence_Size(ys)) {
        PyErr_SetString(PyExc_ValueError, "dot() needs two sequences of equal length");
        return NULL;
    }
    double *buf = PyMem_Malloc(sizeof(double) * (size_t)(2 * n + 1));
    if (!buf)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *a = PySequence_GetItem(xs, i), *b = PySequence_GetItem(ys, i);
        buf[i] = a ? PyFloat_AsDouble(a) : -1.0;
        buf[n + i] = b ? PyFloat_AsDouble(b) : -1.0;
        Py_XDECREF(a);
        Py_XDECREF(b);
        if (PyErr_Occurred()) {
            PyMem_Free(buf);
            return NULL;
        }
    }
    double s = dot_impl(buf, buf + n, n);
    PyMem_Free(buf);
    return PyFloat_FromDouble(s);
}

static PyMethodDef methods[] = {
    {"add", add, METH_VARARGS, "Add two integers."},
    {"dot", dot, METH_VARARGS, "Dot product of two sequences of floats."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_core", NULL, -1, methods};

PyMODINIT_FUNC PyInit__core(void) { return PyModule_Create(&module); }
