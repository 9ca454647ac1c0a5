// C++ that uses std::string and exceptions (libstdc++'s symbols and its exception runtime), and
// std::stoi, whose inline code calls strtol (__isoc23_strtol against glibc 2.38+ headers).
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <cctype>
#include <stdexcept>
#include <string>

static std::string shout_(const std::string &s) {
    if (s.empty())
        throw std::invalid_argument("nothing to shout");
    std::string out;
    for (char c : s)
        out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out + "!";
}

static PyObject *shout(PyObject *, PyObject *args) {
    const char *s;
    if (!PyArg_ParseTuple(args, "s", &s))
        return nullptr;
    try {
        std::string r = shout_(s);
        return PyUnicode_FromStringAndSize(r.data(), static_cast<Py_ssize_t>(r.size()));
    } catch (const std::exception &e) {
        PyErr_SetString(PyExc_ValueError, e.what());
        return nullptr;
    }
}

static PyObject *to_int(PyObject *, PyObject *args) {
    const char *s;
    if (!PyArg_ParseTuple(args, "s", &s))
        return nullptr;
    try {
        return PyLong_FromLong(std::stoi(std::string(s)));
    } catch (const std::invalid_argument &) {
        PyErr_SetString(PyExc_ValueError, (std::string("not a number: ") + s).c_str());
        return nullptr;
    } catch (const std::out_of_range &) {
        PyErr_SetString(PyExc_OverflowError, "out of range");
        return nullptr;
    }
}

static PyMethodDef methods[] = {
    {"shout", shout, METH_VARARGS, "shout(text) -> TEXT!"},
    {"to_int", to_int, METH_VARARGS, "to_int(text) -> int (std::stoi)"},
    {nullptr, nullptr, 0, nullptr},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cxxdemo", nullptr, -1, methods};

PyMODINIT_FUNC PyInit__cxxdemo(void) { return PyModule_Create(&module); }
