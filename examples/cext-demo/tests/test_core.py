"""Runs inside cibuildwheel's test step (plain python, no pytest needed) and under pytest."""

import cext_demo


def test_add():
    assert cext_demo.add(2, 3) == 5


def test_dot():
    assert cext_demo.dot([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == 32.0


if __name__ == "__main__":
    test_add()
    test_dot()
    print("cext_demo: ok")
