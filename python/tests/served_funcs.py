"""Functions for the served-pool tests: the workers of `shmexec serve`
import this module, for raw-bytes handlers (--handlers) and for Python
calls by reference."""

import time


def upper(data):
    """A raw-bytes handler: C clients call it by name."""
    return data.upper()


def square(x):
    return x * x


def slow_square(x):
    time.sleep(0.002)
    return x * x


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def fails(data):
    """A raw-bytes handler that raises."""
    raise ValueError(f"bad bytes: {bytes(data)!r}")


def grow(data):
    """A raw-bytes handler whose output is 2 MiB."""
    return bytes(2 << 20)
