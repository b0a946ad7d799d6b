"""Call control over REST against a real call (SIPp as the carrier and the operator's phone):
who may see and end which call, and what the parties and the CDR get."""

from __future__ import annotations

import threading

import psycopg

from tests.sipp import SippResult, Uas, run, wait_for
from tests.test_agents import ADMIN, _call, _token, desk  # noqa: F401 - the fixture
from tests.test_sip_calls import SipNode


def test_a_supervisor_ends_a_call_an_operator_sees_only_its_own(
    desk: tuple[SipNode, str],  # noqa: F811
) -> None:
    sn, db = desk
    n = sn.node
    boss, mine, other = (
        _token(n, "admin", ADMIN),
        _token(n, "op7001", "agent7001"),
        _token(n, "op7003", "agent7003"),
    )
    phone = Uas("agent_answer.xml", port=sn.register("7001"), cwd=sn.cwd, timeout=60)
    result: list[SippResult] = []

    def carrier_calls() -> None:  # waits for the node's BYE
        result.append(
            run("trunk_call_wait_bye.xml", sn.target, port=sn.trunk_port, cwd=sn.cwd,
                extra=["-s", "7001"], timeout=40)
        )  # fmt: skip

    carrier = threading.Thread(target=carrier_calls)
    carrier.start()
    try:

        def listed(token: str) -> list[dict[str, object]]:
            items: list[dict[str, object]] = _call(n, "GET", "/api/calls", token=token)[1]["items"]
            return items

        assert wait_for(lambda: [c["state"] for c in listed(boss)] == ["answered"], 10)
        (call,) = listed(boss)
        assert call["agent"] == "7001" and call["ani"]
        assert listed(mine) == [call] and listed(other) == []
        assert _call(n, "POST", f"/api/calls/{call['id']}/hangup", token=other)[0] == 403
        assert _call(n, "POST", "/api/calls/424242/hangup", token=boss)[0] == 404
        status, ended = _call(n, "POST", f"/api/calls/{call['id']}/hangup", token=boss)
        assert status == 200 and ended == {"id": call["id"], "ended": True}
        carrier.join(30)
        assert result and result[0].ok, result  # the carrier got BYE
        assert phone.wait(30).ok  # and so did the operator's phone
    finally:
        phone.kill()
    assert _call(n, "POST", f"/api/calls/{call['id']}/hangup", token=boss)[0] == 404
    with psycopg.connect(db) as conn:

        def outcome() -> object:
            row = conn.execute("SELECT outcome, agent FROM cdrs ORDER BY id DESC").fetchone()
            return row

        assert wait_for(lambda: outcome() == ("api-hangup", "7001"), 5), outcome()
