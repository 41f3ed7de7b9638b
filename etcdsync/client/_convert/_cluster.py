"""Conversion for the Cluster and Auth services' messages used by the client core itself."""

from __future__ import annotations

from etcdsync.client._pb import rpc_pb2

from .._types import Member, MemberListResponse
from ._kv import header

__all__ = ["authenticate_request", "authenticate_token", "member_list", "member_list_request"]


def member_list_request(linearizable: bool = True) -> bytes:
    """A serialized ``MemberListRequest`` (``linearizable`` is honoured by etcd >= 3.5 only)."""
    return rpc_pb2.MemberListRequest(linearizable=linearizable).SerializeToString()


def _member(msg: rpc_pb2.Member) -> Member:
    return Member(
        id=msg.ID,
        name=msg.name,
        peer_urls=tuple(msg.peerURLs),
        client_urls=tuple(msg.clientURLs),
        is_learner=msg.isLearner,
    )


def member_list(data: bytes) -> MemberListResponse:
    """Parse a serialized ``MemberListResponse``."""
    msg = rpc_pb2.MemberListResponse.FromString(data)
    return MemberListResponse(header=header(msg.header), members=tuple(_member(m) for m in msg.members))


def authenticate_request(name: str, password: str) -> bytes:
    """A serialized ``AuthenticateRequest``."""
    return rpc_pb2.AuthenticateRequest(name=name, password=password).SerializeToString()


def authenticate_token(data: bytes) -> str:
    """The token of a serialized ``AuthenticateResponse``."""
    return rpc_pb2.AuthenticateResponse.FromString(data).token
