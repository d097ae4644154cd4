"""The two-principal isolation scenario, shared by every way a principal is authenticated over HTTP (``--tokens``,
``--oauth``): the same checks, so a new way cannot quietly test less.

Alice owns ``proj-a`` (write) and ``shared`` (write); Bob owns ``proj-b`` (write) and may only read ``shared``.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client, MCPError

from .harness import PROV, call, call_error


def note(session: str, page: str, text: str, scope: str = "session") -> dict[str, Any]:
    return {
        "session_id": session,
        "page_id": page,
        "op": "create",
        "type": "evidence",
        "content": text,
        "provenance": PROV,
        "scope": scope,
    }


async def check_isolation(alice: Client, bob: Client) -> None:
    """Bob can reach none of Alice's sessions nor her ungranted project, by tool, resource or recall."""
    await call(alice, "session_start", session_id="a1", project_id="proj-a")
    assert (await call(alice, "page_write", **note("a1", "ev/secret", "zanzibar private")))["status"] == "committed"
    project = note("a1", "ev/plan", "quetzal project-wide", scope="project")
    assert (await call(alice, "page_write", **project))["status"] == "committed"

    # tools: bob can neither resume, read, write nor recall in alice's session
    assert "not available" in await call_error(bob, "session_start", session_id="a1", project_id="proj-a")
    assert "No session 'a1'" in await call_error(bob, "page_read", session_id="a1", page_id="ev/secret")
    assert "No session 'a1'" in await call_error(bob, "page_write", **note("a1", "ev/x", "intrusion"))
    assert "No session 'a1'" in await call_error(bob, "recall", session_id="a1", query="zanzibar")

    # resources: neither listed nor readable
    listed = {str(r.uri) for r in (await bob.list_resources()).resources}
    assert "clawvm://sessions/a1/context" not in listed
    for uri in ("clawvm://sessions/a1/context", "clawvm://sessions/a1/pages/ev%2Fsecret"):
        assert "zanzibar" in str((await alice.read_resource(uri)).contents[0])
        with pytest.raises(MCPError, match="No session 'a1'"):
            await bob.read_resource(uri)
    assert "clawvm://sessions/a1/context" in {str(r.uri) for r in (await alice.list_resources()).resources}

    # an ungranted project: bob's session there cannot read (recall says denied) nor write project pages
    await call(bob, "session_start", session_id="b-in-a", project_id="proj-a")
    found = await call(bob, "recall", session_id="b-in-a", query="quetzal")
    assert found["outcome"] == "denied" and not found.get("hits")
    assert (await call(bob, "page_read", session_id="b-in-a", page_id="ev/plan"))["outcome"] == "denied"
    wrote = await call(bob, "page_write", **note("b-in-a", "ev/bob", "graffiti", scope="project"))
    assert wrote["status"] == "rejected"

    # bob's own project: a recall finds nothing of alice's
    await call(bob, "session_start", session_id="b1", project_id="proj-b")
    assert (await call(bob, "recall", session_id="b1", query="zanzibar quetzal"))["outcome"] == "no_match"

    # a read grant: bob reads the shared project's pages and cannot write there
    await call(alice, "session_start", session_id="a-shared", project_id="shared")
    await call(alice, "page_write", **note("a-shared", "ev/common", "xylophone shared", scope="project"))
    await call(bob, "session_start", session_id="b-shared", project_id="shared")
    assert (await call(bob, "recall", session_id="b-shared", query="xylophone"))["outcome"] == "hit"
    wrote = await call(bob, "page_write", **note("b-shared", "ev/overwrite", "mine", scope="project"))
    assert wrote["status"] == "rejected"

    # and alice still sees only her sessions
    assert "No session 'b1'" in await call_error(alice, "page_list", session_id="b1")
