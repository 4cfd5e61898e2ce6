"""Generates the gRPC stubs while pip builds the package (see pyproject.toml).

build_py runs generate_stubs.py on ../../proto (or $SCHEMAD_PROTO_DIR) into
the build directory, so the wheel holds schemad_client._generated. Needs
protoc and /usr/bin/grpc_python_plugin (Debian: protobuf-compiler,
protobuf-compiler-grpc); $SCHEMAD_PROTOC and $SCHEMAD_GRPC_PYTHON_PLUGIN
override them.
"""
import os
import pathlib
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate_stubs  # noqa: E402


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        proto_dir = os.environ.get("SCHEMAD_PROTO_DIR", str(HERE.parent.parent / "proto"))
        try:
            generate_stubs.generate(
                proto_dir, self.build_lib,
                protoc=os.environ.get("SCHEMAD_PROTOC", "protoc"),
                plugin=os.environ.get("SCHEMAD_GRPC_PYTHON_PLUGIN", "/usr/bin/grpc_python_plugin"))
        except RuntimeError as error:
            raise SystemExit(f"schemad-client: generating the gRPC stubs: {error}") from None


setup(cmdclass={"build_py": BuildWithStubs})
