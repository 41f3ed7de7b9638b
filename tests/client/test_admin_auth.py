"""Auth administration against a real etcd: users, roles and permissions made with our API take effect for
a client logged in as that user; results are typed; every server refusal maps to its own error class."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio

import etcdsync
from etcdsync import (
    AuthenticationError,
    AuthNotEnabledError,
    AuthSetupError,
    PermissionDeniedError,
    PermissionNotGrantedError,
    RoleExistsError,
    RoleNotFoundError,
    RoleNotGrantedError,
    UserExistsError,
    UserNotFoundError,
)
from etcdsync.client import AuthRole, AuthUser, Client, Permission, PermissionType
from etcdsync.testing import EtcdServer, etcd_server


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
async def server() -> AsyncIterator[EtcdServer]:
    async with etcd_server() as s:
        yield s


async def _set_up_users(admin: Client) -> None:
    """root (with the root role) and alice (role app: read-write under /app/, read-only on /ro)."""
    await admin.user_add("root", "rootpw")
    await admin.role_add("root")
    await admin.user_grant_role("root", "root")
    await admin.user_add("alice", "alicepw")
    await admin.role_add("app")
    await admin.role_grant_permission("app", "/app/", prefix=True)  # READWRITE by default
    await admin.role_grant_permission("app", b"/ro", perm_type=PermissionType.READ)
    await admin.user_grant_role("alice", "app")


async def test_permissions_take_effect_for_the_user(server: EtcdServer, tmp_path: Path) -> None:
    async with etcdsync.open_client(server.endpoint) as admin:
        await _set_up_users(admin)
        await admin.put(b"/ro", b"read me")
        await admin.auth_enable()
        with pytest.raises(AuthenticationError):  # no user given, and auth is on now
            await admin.get(b"/app/x")

    async with etcdsync.open_client(server.endpoint, username="alice", password="alicepw") as alice:
        await alice.put(b"/app/x", b"1")  # inside the prefix permission
        kv = await alice.get(b"/app/x")
        assert kv is not None and kv.value == b"1"
        ro = await alice.get(b"/ro")
        assert ro is not None and ro.value == b"read me"
        with pytest.raises(PermissionDeniedError):
            await alice.put(b"/other", b"1")  # outside every permission
        with pytest.raises(PermissionDeniedError):
            await alice.get(b"/other")
        with pytest.raises(PermissionDeniedError):
            await alice.put(b"/ro", b"read-only")
        with pytest.raises(PermissionDeniedError):
            await alice.put(b"/app", b"the prefix is /app/, not /app")
        # Administration needs the root role.
        with pytest.raises(PermissionDeniedError):
            await alice.user_list()
        with pytest.raises(PermissionDeniedError):
            await alice.defragment(server.endpoint)
        with pytest.raises(PermissionDeniedError):  # arrives as UNKNOWN "auth: permission denied"
            await alice.save_snapshot(tmp_path / "alice.db")
        assert _names(tmp_path) == []  # not even a temporary file is left

        async with etcdsync.open_client(server.endpoint, username="root", password="rootpw") as root:
            # Revoking takes effect at once (alice's token is re-issued for the new auth revision).
            await root.role_revoke_permission("app", "/app/", prefix=True)
            with pytest.raises(PermissionDeniedError):
                await alice.get(b"/app/x")
            await root.role_grant_permission("app", "/app/", prefix=True, perm_type=PermissionType.WRITE)
            await alice.put(b"/app/y", b"write-only now")
            with pytest.raises(PermissionDeniedError):
                await alice.get(b"/app/y")
            await root.user_revoke_role("alice", "app")
            with pytest.raises(PermissionDeniedError):
                await alice.put(b"/app/y", b"no role left")
            await root.user_change_password("alice", "newpw")
            info = await root.save_snapshot(tmp_path / "root.db")
            assert info.db_size > 0 and (tmp_path / "root.db").stat().st_size == info.db_size + 32
            await root.auth_disable()

    async with etcdsync.open_client(server.endpoint, username="alice", password="alicepw") as old:
        with pytest.raises(AuthNotEnabledError):  # auth is off: logging in at all is refused
            await old.get(b"/app/x")
    async with etcdsync.open_client(server.endpoint) as anyone:
        assert (await anyone.get(b"/app/x")) is not None


async def test_typed_results(server: EtcdServer) -> None:
    async with etcdsync.open_client(server.endpoint) as admin:
        await _set_up_users(admin)
        assert await admin.user_get("alice") == AuthUser(name="alice", roles=("app",))
        assert await admin.user_get("root") == AuthUser(name="root", roles=("root",))
        assert await admin.role_get("app") == AuthRole(
            name="app",
            permissions=(
                Permission(perm_type=PermissionType.READWRITE, key=b"/app/", range_end=b"/app0"),
                Permission(perm_type=PermissionType.READ, key=b"/ro", range_end=b""),
            ),
        )
        assert await admin.user_list() == ("alice", "root")
        assert await admin.role_list() == ("app", "root")
        # A range, and every key from a key on.
        await admin.role_grant_permission("app", b"/a", b"/b", perm_type=PermissionType.WRITE)
        await admin.role_grant_permission("app", b"/z", from_key=True)
        perms = {p.key: p for p in (await admin.role_get("app")).permissions}
        assert perms[b"/a"] == Permission(perm_type=PermissionType.WRITE, key=b"/a", range_end=b"/b")
        assert perms[b"/z"].range_end == b"\x00"
        await admin.role_revoke_permission("app", b"/a", b"/b")
        assert b"/a" not in {p.key for p in (await admin.role_get("app")).permissions}
        # Granting a role twice is a no-op; deleting users and roles.
        await admin.user_grant_role("alice", "app")
        assert (await admin.user_get("alice")).roles == ("app",)
        await admin.role_delete("app")
        assert (await admin.user_get("alice")).roles == ()
        await admin.user_delete("alice")
        assert await admin.user_list() == ("root",)
        header = await admin.user_add("carol", "pw")
        assert header.member_id == (await admin.status()).header.member_id


async def test_no_password_user_cannot_log_in_with_a_password(server: EtcdServer) -> None:
    async with etcdsync.open_client(server.endpoint) as admin:
        await _set_up_users(admin)
        await admin.user_add("cert-only", no_password=True)
        await admin.user_grant_role("cert-only", "app")
        assert await admin.user_get("cert-only") == AuthUser(name="cert-only", roles=("app",))
        await admin.auth_enable()
    async with etcdsync.open_client(server.endpoint, username="cert-only", password="guess") as c:
        with pytest.raises(AuthenticationError):
            await c.get(b"/app/x")


async def test_errors_are_typed(server: EtcdServer) -> None:
    async with etcdsync.open_client(server.endpoint) as admin:
        await admin.user_add("root", "rootpw")
        await admin.role_add("root")
        with pytest.raises(AuthSetupError, match="root user does not have root role"):
            await admin.auth_enable()
        await _set_up_users_rest(admin)
        failing: list[tuple[type[Exception], Callable[[], Awaitable[object]]]] = [
            (UserExistsError, lambda: admin.user_add("alice", "again")),
            (UserNotFoundError, lambda: admin.user_get("bob")),
            (UserNotFoundError, lambda: admin.user_delete("bob")),
            (UserNotFoundError, lambda: admin.user_change_password("bob", "pw")),
            (UserNotFoundError, lambda: admin.user_grant_role("bob", "app")),
            (RoleNotFoundError, lambda: admin.user_grant_role("alice", "nope")),
            (RoleNotFoundError, lambda: admin.role_get("nope")),
            (RoleNotFoundError, lambda: admin.role_delete("nope")),
            (RoleNotFoundError, lambda: admin.role_grant_permission("nope", "/k")),
            (RoleExistsError, lambda: admin.role_add("app")),
            (RoleNotGrantedError, lambda: admin.user_revoke_role("alice", "root")),
            (PermissionNotGrantedError, lambda: admin.role_revoke_permission("app", "/never-granted")),
        ]
        for expected, call in failing:
            with pytest.raises(expected):
                await call()
        assert all(issubclass(e, etcdsync.FailedPreconditionError) for e, _ in failing)


async def _set_up_users_rest(admin: Client) -> None:
    await admin.user_add("alice", "alicepw")
    await admin.role_add("app")
    await admin.role_grant_permission("app", "/app/", prefix=True)
    await admin.user_grant_role("alice", "app")


async def test_caller_mistakes_fail_before_sending(client: Client) -> None:
    with pytest.raises(ValueError, match=r"^user name must not be empty$"):
        await client.user_add("", "pw")
    with pytest.raises(TypeError, match=r"^user name must be a str, not bytes$"):
        await client.user_get(b"alice")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^give a password, or no_password=True"):
        await client.user_add("bob")
    with pytest.raises(ValueError, match=r"^give a password or no_password=True, not both$"):
        await client.user_add("bob", "pw", no_password=True)
    with pytest.raises(ValueError, match=r"^role name must not be empty$"):
        await client.role_grant_permission("", "/k")
    with pytest.raises(ValueError, match=r"^give at most one of range_end, prefix=True and from_key=True$"):
        await client.role_grant_permission("r", "/k", "/l", prefix=True)
    with pytest.raises(ValueError, match=r"^7 is not a valid PermissionType$"):
        await client.role_grant_permission("r", "/k", perm_type=7)  # type: ignore[arg-type]
    await trio.lowlevel.checkpoint()
