/* Plain C that GCC 14 compiles, with rva23u64's expanded -march at -O2, into instructions of
 * the extensions QEMU's `rv64` CPU leaves off (checked with objdump in tests/test_rva23_qemu.py):
 *   half_plus_two: fli.d (Zfa) loads 0.5 and 2.0 without a memory access
 *   keep_if:       czero.eqz (Zicond), a branchless select
 *   low_byte, sign_byte, times: c.zext.b, c.sext.b, c.mul (Zcb), compressed forms
 * Each is noinline: the wrappers pass them values known only at run time. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

__attribute__((noinline)) static double half_plus_two_c(double x) { return x * 0.5 + 2.0; }
__attribute__((noinline)) static long keep_if_c(long value, long cond) { return cond ? value : 0; }
__attribute__((noinline)) static unsigned long low_byte_c(unsigned long x) { return x & 0xff; }
__attribute__((noinline)) static long sign_byte_c(long x) { return (signed char)x; }
__attribute__((noinline)) static long times_c(long a, long b) { return a * b; }

static PyObject *half_plus_two(PyObject *self, PyObject *arg) {
    double x = PyFloat_AsDouble(arg);
    if (x == -1.0 && PyErr_Occurred()) return NULL;
    return PyFloat_FromDouble(half_plus_two_c(x));
}

static PyObject *keep_if(PyObject *self, PyObject *args) {
    long value, cond;
    if (!PyArg_ParseTuple(args, "ll", &value, &cond)) return NULL;
    return PyLong_FromLong(keep_if_c(value, cond));
}

static PyObject *low_byte(PyObject *self, PyObject *arg) {
    unsigned long x = PyLong_AsUnsignedLongMask(arg);
    if (x == (unsigned long)-1 && PyErr_Occurred()) return NULL;
    return PyLong_FromUnsignedLong(low_byte_c(x));
}

static PyObject *sign_byte(PyObject *self, PyObject *arg) {
    long x = PyLong_AsLong(arg);
    if (x == -1 && PyErr_Occurred()) return NULL;
    return PyLong_FromLong(sign_byte_c(x));
}

static PyObject *times(PyObject *self, PyObject *args) {
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b)) return NULL;
    return PyLong_FromLong(times_c(a, b));
}

static PyMethodDef methods[] = {
    {"half_plus_two", half_plus_two, METH_O, "x * 0.5 + 2.0"},
    {"keep_if", keep_if, METH_VARARGS, "value if cond else 0"},
    {"low_byte", low_byte, METH_O, "x & 0xff"},
    {"sign_byte", sign_byte, METH_O, "the low byte of x as a signed char"},
    {"times", times, METH_VARARGS, "a * b"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rva23", NULL, -1, methods};

PyMODINIT_FUNC PyInit__rva23(void) { return PyModule_Create(&module); }
