"""Generated protobuf modules for etcd's v3 API. Do not edit; run ``make proto``.

Sources are ``proto/etcdsync/client/_pb/*.proto``, written for etcdsync from etcd's published API
(no gogoproto or HTTP-gateway annotations). Field numbers, types, enums, oneofs and names follow
etcd v3.5.x, a superset of v3.4.23 (the server the test-suite runs against). Newer than 3.4:

* ``Maintenance.Downgrade`` with ``DowngradeRequest``/``DowngradeResponse`` and ``Auth.AuthStatus``
  with ``AuthStatusRequest``/``AuthStatusResponse``: a 3.4 server answers ``UNIMPLEMENTED``.
* ``MemberListRequest.linearizable``: a 3.4 server ignores it.

Left out on purpose: 3.5's ``hashedPassword`` in ``AuthUserAddRequest`` (4) and
``AuthUserChangePasswordRequest`` (3), which a 3.4 server would ignore, leaving an empty password.
Their numbers are reserved.

The proto packages are private (``etcdsync_pb.etcdserverpb``, ``etcdsync_pb.mvccpb``,
``etcdsync_pb.authpb``, ``etcdsync_pb.v3lockpb``, ``etcdsync_pb.v3electionpb``) so that they never
collide with another etcd client's descriptors in protobuf's default pool. The wire format carries
no package names; gRPC method paths do, and ``etcdsync.client._convert._methods`` builds them without
the ``etcdsync_pb.`` prefix (``/etcdserverpb.KV/Range``).

Only ``etcdsync.client._convert`` imports these modules (STYLE.md rule 8).
"""
