import asyncio


from shared.services.batching import Batcher


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[tuple[list[str], dict[str, str]]] = []
        self.fail = fail

    async def __call__(self, ids, message_ids):
        self.batches.append((list(ids), dict(message_ids)))
        if self.fail:
            raise RuntimeError("state store down")
        return {i: f"result-{i}" for i in ids}


async def test_concurrent_submissions_share_one_batch_and_each_gets_its_own_result():
    run = Recorder()
    batcher = Batcher(run, max_batch=200, max_wait_seconds=0.01)
    results = await asyncio.gather(*(batcher.submit(f"u{i}", f"m{i}") for i in range(50)))
    assert results == [f"result-u{i}" for i in range(50)]
    assert len(run.batches) == 1 and run.batches[0][1]["u7"] == "m7"


async def test_the_same_user_twice_is_reconciled_once():
    run = Recorder()
    batcher = Batcher(run, max_wait_seconds=0.01)
    a, b = await asyncio.gather(batcher.submit("u1", "m1"), batcher.submit("u1", "m2"))
    assert a == b == "result-u1" and run.batches[0][0] == ["u1"]


async def test_a_full_batch_is_sent_without_waiting_and_the_rest_follows():
    run = Recorder()
    batcher = Batcher(run, max_batch=3, max_wait_seconds=10)  # a timer this long would stall the test
    first = [asyncio.ensure_future(batcher.submit(f"u{i}")) for i in range(3)]
    assert await asyncio.gather(*first) == ["result-u0", "result-u1", "result-u2"]
    assert [ids for ids, _ in run.batches] == [["u0", "u1", "u2"]]


async def test_a_failed_batch_fails_every_waiter():
    batcher = Batcher(Recorder(fail=True), max_wait_seconds=0.01)
    outcomes = await asyncio.gather(batcher.submit("u1"), batcher.submit("u2"), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)


class Poisoned(Recorder):
    """A reconcile that raises whenever one given user is in the batch (a bug that user's data triggers)."""

    def __init__(self, poison: str) -> None:
        super().__init__()
        self.poison = poison

    async def __call__(self, ids, message_ids):
        self.batches.append((list(ids), dict(message_ids)))
        if self.poison in ids:
            raise AttributeError("'int' object has no attribute 'replace'")
        return {i: f"result-{i}" for i in ids}


async def test_one_users_failure_reaches_only_its_own_waiters():
    run = Poisoned("u5")
    batcher = Batcher(run, max_wait_seconds=0.01)
    outcomes = await asyncio.gather(*(batcher.submit(f"u{i}", f"m{i}") for i in range(16)), return_exceptions=True)
    assert isinstance(outcomes[5], AttributeError)
    assert [o for i, o in enumerate(outcomes) if i != 5] == [f"result-u{i}" for i in range(16) if i != 5]
    assert len(run.batches) == 9  # halves down to the poisoned user: 1 + 2 per level of 16 → 1
    assert (["u5"], {"u5": "m5"}) in run.batches
