"""The parent process of an event (``actor.parent_process``, ``actor.parent_cmdline``):
tracked by the auditd source from the execs it saw, taken from Falco's fields when it
gives them; bounded, and never guessed."""

from __future__ import annotations

from dataclasses import replace

import orjson

from pipeline.collect.sources.auditd import AuditdParser
from pipeline.collect.sources.falco import FalcoParser
from pipeline.collect.sources.parents import ProcessTable
from tests.collect.sources.test_rules_by_source import as_auditd, as_falco, exec_, parsed


def test_auditd_names_the_parent_from_an_exec_it_saw() -> None:
    parent = replace(exec_("java", "-jar", "app.jar", exe="/usr/bin/java"), pid=100)
    child = exec_("sh", "-c", "id", exe="/bin/sh")  # ppid 100 in as_auditd
    parser = AuditdParser(tenant="acme", sandbox_id="sb-1")
    events = parsed(parser, as_auditd(parent, 7001) + as_auditd(child, 7002))
    assert events[0]["actor"]["parent_process"] == ""  # pid 100's parent was never seen
    assert events[1]["actor"]["parent_process"] == "/usr/bin/java"
    assert events[1]["actor"]["parent_cmdline"] == "java -jar app.jar"
    assert not any(k.startswith("parent.") for k in events[1]["attributes"])


def test_falco_takes_the_parent_fields_it_reports() -> None:
    line = orjson.loads(as_falco(exec_("sh", "-c", "id", exe="/bin/sh"))[0])
    line["output_fields"]["proc.pexepath"] = "/usr/bin/rsync"
    line["output_fields"]["proc.pcmdline"] = "rsync -e sh x:y ."
    (event,) = parsed(FalcoParser(tenant="acme", sandbox_id=None), [orjson.dumps(line)])
    assert event["actor"]["parent_process"] == "/usr/bin/rsync"
    assert event["actor"]["parent_cmdline"] == "rsync -e sh x:y ."


def test_the_table_is_bounded_and_keeps_what_the_source_said() -> None:
    table = ProcessTable(size=2)
    where = {"tenant": "acme", "sandbox_id": "sb-1"}
    for pid in (1, 2, 3):
        table.executed(where, pid, f"/bin/p{pid}", f"p{pid}")
    forgotten = {**where, "actor": {"ppid": 1}}
    table.add_parent(forgotten)
    assert forgotten["actor"] == {"ppid": 1}
    given = {**where, "actor": {"ppid": 3, "parent_process": "/usr/bin/given"}}
    table.add_parent(given)
    assert given["actor"] == {"ppid": 3, "parent_process": "/usr/bin/given", "parent_cmdline": "p3"}


def test_a_pid_of_one_sandbox_never_names_the_parent_in_another() -> None:
    """One Falco on a host of containers: pid 100 of tenant A's container ran a secret
    command line; the same pid number as the parent in tenant B's container (its own pid
    namespace) must not show it."""
    parser = FalcoParser(tenant="acme", sandbox_id=None)

    def in_container(container: str, activity: object, pid: int) -> bytes:
        line = orjson.loads(as_falco(activity)[0])  # type: ignore[arg-type]
        line["output_fields"] |= {"container.id": container, "proc.pid": pid}
        return orjson.dumps(line)

    secret = exec_("deploy", "--token", "s3cr3t-of-tenant-a", exe="/usr/bin/deploy")
    child = exec_("sh", "-c", "id", exe="/bin/sh")  # ppid 100 in as_falco
    events = parsed(
        parser,
        [
            in_container("container-a", secret, 100),
            in_container("container-b", child, 200),
            in_container("container-a", child, 201),
        ],
    )
    assert events[1]["sandbox_id"] == "container-b"
    assert events[1]["actor"]["parent_cmdline"] == "", events[1]["actor"]
    assert events[1]["actor"]["parent_process"] == ""
    assert events[2]["actor"]["parent_process"] == "/usr/bin/deploy"  # its own sandbox's


def test_a_sandbox_name_two_tenants_share_keeps_their_parents_apart() -> None:
    """One table fed by a relay of two tenants whose sandboxes are named alike: tenant
    A's pid never names the parent of tenant B's process."""
    table = ProcessTable()
    table.executed({"tenant": "a", "sandbox_id": "ci"}, 100, "/usr/bin/deploy", "deploy --token t")
    event = {"tenant": "b", "sandbox_id": "ci", "actor": {"ppid": 100}}
    table.follow(event)
    assert event["actor"] == {"ppid": 100}
