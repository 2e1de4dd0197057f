"""A lease a killed server wrote but never indexed is indexed again at start, so it lapses and is freed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta

from deployments.server import index_orphan_leases


def test_a_lease_left_out_of_the_index_by_a_killed_server_is_repossessed_after_a_restart(tmp_path):
    from prefect.server.concurrency.lease_storage.filesystem import ConcurrencyLeaseStorage

    storage = ConcurrencyLeaseStorage(tmp_path / "concurrency_leases")

    async def scenario() -> tuple[list, list, list]:
        kept = await storage.create_lease([uuid.uuid4()], ttl=timedelta(seconds=0.2))
        orphan = await storage.create_lease([uuid.uuid4()], ttl=timedelta(seconds=0.2))
        index_path = tmp_path / "concurrency_leases" / "expirations.json"
        index = json.loads(index_path.read_text())
        del index[str(orphan.id)]  # the server died between the lease file and the index write
        index_path.write_text(json.dumps(index))
        time.sleep(0.4)
        before = await storage.read_expired_lease_ids()
        added = index_orphan_leases(tmp_path)
        after = await storage.read_expired_lease_ids()
        return [kept.id, orphan.id], before, [added, after]

    (kept, orphan), before, (added, after) = asyncio.run(scenario())
    assert before == [kept], "Prefect's repossessor never sees the unindexed lease"
    assert added == [str(orphan)]
    assert sorted(after) == sorted([kept, orphan])
    assert index_orphan_leases(tmp_path) == [], "idempotent"
