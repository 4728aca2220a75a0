"""Python stubs of the project's protobuf files for the interoperability
scripts beside this one: Debian's protoc and grpc_python_plugin generate
them into a directory the caller owns (a temporary one: they are never
committed), which the caller then puts on sys.path.

Exits 77 (CTest: skipped) if protoc or the plugin is missing, as the
scripts do for a missing python3-grpcio.
"""
import glob
import os
import shutil
import subprocess
import sys

SKIP = 77
PLUGIN = "/usr/bin/grpc_python_plugin"


def tools():
    """protoc and the gRPC plugin, or exit 77 saying they are missing."""
    protoc = shutil.which("protoc")
    if protoc is None or not os.path.exists(PLUGIN):
        print("SKIPPED: protoc or grpc_python_plugin missing", flush=True)
        sys.exit(SKIP)
    return protoc, PLUGIN


def _generate(include, out, files):
    protoc, plugin = tools()
    subprocess.run([protoc, "-I", include, f"--python_out={out}", f"--grpc_out={out}",
                    f"--plugin=protoc-gen-grpc={plugin}", *files], check=True)


def ehr_v1(proto_root, out):
    """Stubs of every file under PROTO_ROOT/ehr/v1, importable as
    ehr.v1.<name>_pb2 and ehr.v1.<name>_pb2_grpc; returns the files."""
    files = sorted(glob.glob(os.path.join(proto_root, "ehr", "v1", "*.proto")))
    _generate(proto_root, out, files)
    return files


def standalone(proto_root, relpath, out, package):
    """Stubs of the standard file PROTO_ROOT/RELPATH (grpc/health/v1/...),
    importable as PACKAGE.<name>_pb2 and PACKAGE.<name>_pb2_grpc.

    The file as is, under a module path of its own: at grpc/... its Python
    modules would sit inside grpcio's own package `grpc` and could not be
    imported. The service's full name comes from the file's package line,
    which is unchanged, so two versions of one file load side by side under
    two names."""
    src = os.path.join(out, "src", package)
    os.makedirs(src)
    shutil.copy(os.path.join(proto_root, relpath), src)
    _generate(os.path.join(out, "src"), out, [os.path.join(src, os.path.basename(relpath))])
