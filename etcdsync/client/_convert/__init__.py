"""The one boundary between protobuf and the rest of the client; nothing else imports ``_pb``.

``_methods`` holds the typed gRPC method table built from the generated service descriptors.
"""
