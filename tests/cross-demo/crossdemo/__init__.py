from crossdemo._ext import answer

__all__ = ["answer"]
