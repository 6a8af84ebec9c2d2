"""Two gateway nodes on one PostgreSQL database; one is killed (-9) in the middle of 200 CARs.

Every accepted CAR must be answered exactly once: the survivor takes over the dead node's claims
when their lease runs out (messages and deliveries), and no answer is committed twice.  A
resent answer mail with the same Message-ID (a crash between the relay's 250 and the SENT
mark) is a redelivery a receiver drops, not a second answer.
"""

from __future__ import annotations

import collections
import smtplib
import threading
import time
from pathlib import Path

import pytest

from gateway.replay_io import Receiver
from tests.integration.cars import make_car
from tests.integration.nodes import Node, car_mail

REPO = Path(__file__).resolve().parents[2]
COUNT = 200
LEASE = 3


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_nodes_one_killed_every_car_answered_once(tmp_path, pg_url):
    import psycopg

    receiver = Receiver("127.0.0.1", 0)
    receiver.start()
    key_file = tmp_path / "keys" / "data.key"
    key_file.parent.mkdir(mode=0o700)
    nodes = [
        Node(tmp_path, name, pg_url, key_file, receiver.port, lease=LEASE) for name in ("n1", "n2")
    ]
    nodes[0].start()  # makes the data key the second node shares
    nodes[1].start()
    alive = [True, True]
    # four fingers: slow enough that the killed node has work in hand
    template = make_car("MULTI-0000000000", fingers=4)
    todo = collections.deque(f"MULTI-{i:010d}" for i in range(COUNT))
    acks: collections.Counter = collections.Counter()
    lock = threading.Lock()
    held_by_dead: list[int] = []

    def client(n: int) -> None:
        target = n % 2
        while True:
            with lock:
                if not todo:
                    return
                tcn = todo.popleft()
                if not alive[target]:
                    target = 1 - target
            message = car_mail(template, tcn, "multi-node test")
            try:
                with smtplib.SMTP("127.0.0.1", nodes[target].smtp_port, timeout=30) as smtp:
                    smtp.send_message(message)
                with lock:
                    acks[tcn] += 1
                    done = sum(acks.values())
                    if alive[0] and done >= COUNT // 3:
                        # in the middle of the run, once n1 has work in hand (by 3/4 anyway)
                        with psycopg.connect(pg_url) as conn:
                            (held,) = conn.execute(
                                "SELECT COUNT(*) FROM messages WHERE node = 'n1' "
                                "AND state NOT IN ('RESPONDED', 'DUPLICATE')"
                            ).fetchone()
                        if held >= 2 or done >= 3 * COUNT // 4:
                            alive[0] = False
                            nodes[0].kill()
                            held_by_dead.append(held)
            except (OSError, smtplib.SMTPException):
                with lock:
                    todo.append(tcn)  # not acknowledged: send again (to the other node)
                    target = 1 - target
                time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not alive[0], "node n1 was never killed"

        with psycopg.connect(pg_url) as conn:
            accepted = collections.Counter(
                dict(conn.execute("SELECT tcn, COUNT(*) FROM messages GROUP BY tcn").fetchall())
            )
        deadline = time.time() + 240
        answers: dict[str, set] = collections.defaultdict(set)
        while time.time() < deadline:
            answers.clear()
            for tcr, message_id in list(receiver.deliveries):
                answers[tcr].add(message_id)
            with psycopg.connect(pg_url) as conn:
                (open_,) = conn.execute(
                    "SELECT COUNT(*) FROM messages WHERE state NOT IN ('RESPONDED', 'DUPLICATE') "
                    "OR id IN (SELECT message_id FROM outbound WHERE state <> 'SENT')"
                ).fetchone()
            if open_ == 0 and all(len(answers[t]) >= n for t, n in acks.items()):
                break
            time.sleep(0.5)
        time.sleep(2)  # anything sent twice would have arrived by now
        answers.clear()
        for tcr, message_id in list(receiver.deliveries):
            answers[tcr].add(message_id)
        with psycopg.connect(pg_url) as conn:
            accepted = collections.Counter(
                dict(conn.execute("SELECT tcn, COUNT(*) FROM messages GROUP BY tcn").fetchall())
            )
            states = dict(
                conn.execute("SELECT state, COUNT(*) FROM messages GROUP BY state").fetchall()
            )
    finally:
        for node in nodes:
            node.stop()
        receiver.stop()

    redelivered = len(receiver.deliveries) - sum(len(ids) for ids in answers.values())
    print(
        f"accepted {sum(accepted.values())} messages of {len(accepted)} TCNs; n1 held "
        f"{held_by_dead} unanswered when killed; {sum(len(a) for a in answers.values())} "
        f"answers, {redelivered} redelivered; states {states}"
    )
    assert sum(acks.values()) >= COUNT
    assert set(acks) <= set(accepted)  # every 250 was a commit
    assert set(states) <= {"RESPONDED", "DUPLICATE"}, states
    lost = [t for t in accepted if not answers.get(t)]
    twice = {t: len(answers[t]) for t in accepted if len(answers.get(t, ())) > accepted[t]}
    assert lost == [] and twice == {}
    assert held_by_dead and held_by_dead[0] >= 1, "n1 held no work when it was killed"
    log = (tmp_path / "n2.log").read_text(errors="replace")
    assert "claimed" in log  # the survivor took the dead node's messages over
