"""The optional C speedup of the collector's hot path (pipeline/_native.c).

Metadata lives in pyproject.toml; this file only declares the extension. It is optional:
where no C compiler or OpenSSL headers are found the build goes on without it, and
pipeline.schema.native falls back to the pure-Python code (same bytes, ~10x slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pipeline._native",
            sources=["pipeline/_native.c"],
            libraries=["crypto"],
            extra_compile_args=["-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
