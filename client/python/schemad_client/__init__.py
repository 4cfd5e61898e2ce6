"""schemad_client: Python client of schemad (docs/python.md).

    import schemad_client
    schemad_client.wait_for_head("schemad:50051", "site-a", deadline=300, token=...)

The gRPC stubs (schemad_client.schemad_pb2 and schemad_pb2_grpc) are
generated from proto/schemad/v1 when the package is built.
"""
from schemad_client.client import (Client, SchemadError, Tls, WaitForHeadTimeout, history, status,
                                   upgrade, wait_for_head)
from schemad_client._generated.schemad.v1 import schemad_pb2, schemad_pb2_grpc

__all__ = ["Client", "SchemadError", "Tls", "WaitForHeadTimeout", "history", "status", "upgrade",
           "wait_for_head", "schemad_pb2", "schemad_pb2_grpc"]
