"""Which Running flow runs belong to a dead stage process (jerp.crashes)."""

from jerp.crashes import (
    Owner,
    orphaned_runs,
    owner_tag,
    parse_owner_tag,
    process_alive,
    this_process,
)


def test_owner_tag_round_trip():
    o = Owner("node-1.lan", 4242, 1764336000.25)
    assert owner_tag(o) == "jerp.owner:node-1.lan:4242:1764336000.25"
    assert parse_owner_tag(owner_tag(o)) == o
    assert parse_owner_tag("jerp.owner:h:notapid:1.0") is None
    assert parse_owner_tag("smoke") is None


def test_only_dead_owners_of_this_host_are_orphans():
    dead = Owner("here", 11, 100.0)
    live = Owner("here", 12, 100.0)
    remote = Owner("there", 13, 100.0)
    runs = [("a", ["x", owner_tag(dead)]), ("b", [owner_tag(live)]),
            ("c", [owner_tag(remote)]), ("d", [])]
    alive = {live}.__contains__
    assert orphaned_runs(runs, "here", alive) == ["a"]


def test_process_alive_tells_a_reused_pid_from_its_first_owner():
    me = this_process()
    assert process_alive(me)
    assert not process_alive(Owner(me.host, me.pid, me.started - 3600))
    assert not process_alive(Owner(me.host, 2**22 + 7, me.started))
