#!/usr/bin/env python3
"""Generates schemad_client's gRPC stubs from proto/schemad/v1/*.proto.

    generate_stubs.py PROTO_DIR OUT_DIR [--protoc PROTOC] [--plugin PLUGIN]

Writes OUT_DIR/schemad_client/_generated/schemad/v1/{schemad,config}_pb2.py
and their *_pb2_grpc.py, with Debian's protoc and grpc_python_plugin (the
package protobuf-compiler-grpc), then rewrites protoc's absolute imports
(`from schemad.v1 import ...`) to `from schemad_client._generated.schemad.v1
import ...`, so that the stubs live inside the package and never clash with
another `schemad` module. Used by CMake (client/python/CMakeLists.txt) and by
setup.py when pip builds the package. Exits non-zero naming what failed.
"""
import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

PROTOS = ("schemad/v1/schemad.proto", "schemad/v1/config.proto")
PACKAGE = "schemad_client._generated"


def generate(proto_dir, out_dir, protoc="protoc", plugin="/usr/bin/grpc_python_plugin"):
    proto_dir = pathlib.Path(proto_dir)
    for proto in PROTOS:
        if not (proto_dir / proto).is_file():
            raise RuntimeError(f"no {proto} under {proto_dir}")
    if shutil.which(protoc) is None:
        raise RuntimeError(f"protoc ('{protoc}') not found: install protobuf-compiler")
    if not os.access(plugin, os.X_OK):
        raise RuntimeError(f"{plugin} not found: install protobuf-compiler-grpc")
    target = pathlib.Path(out_dir) / "schemad_client" / "_generated"
    with tempfile.TemporaryDirectory() as tmp:
        command = [protoc, f"-I{proto_dir}", f"--python_out={tmp}", f"--grpc_python_out={tmp}",
                   f"--plugin=protoc-gen-grpc_python={plugin}", *PROTOS]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
        for generated in sorted(pathlib.Path(tmp).rglob("*.py")):
            text = generated.read_text()
            text = re.sub(r"^from schemad\.v1 import ", f"from {PACKAGE}.schemad.v1 import ", text,
                          flags=re.MULTILINE)
            destination = target / generated.relative_to(tmp)
            destination.parent.mkdir(parents=True, exist_ok=True)
            if not destination.exists() or destination.read_text() != text:
                destination.write_text(text)
    for package in (target, target / "schemad", target / "schemad" / "v1"):
        init = package / "__init__.py"
        if not init.exists():
            init.write_text("")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("proto_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--protoc", default="protoc")
    parser.add_argument("--plugin", default="/usr/bin/grpc_python_plugin")
    args = parser.parse_args()
    try:
        generate(args.proto_dir, args.out_dir, args.protoc, args.plugin)
    except (RuntimeError, OSError) as error:
        print(f"generate_stubs.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
