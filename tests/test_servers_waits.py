"""The wait helpers of tests/servers.py: what they return, and how they word a failure."""

from __future__ import annotations

import asyncio

import pytest

from servers import async_wait_for, wait_for


def test_wait_for_returns_the_first_truthy_value() -> None:
    seen = iter([0, None, "", [3]])
    assert wait_for(lambda: next(seen), 2, interval=0) == [3]


def test_timeout_names_what_and_the_last_ignored_error() -> None:
    def boom() -> None:
        raise KeyError("serial-1")

    with pytest.raises(TimeoutError, match=r"waiting for device serial-1 .*last: KeyError\('serial-1'\)"):
        wait_for(boom, 0.05, "device serial-1", ignore=(KeyError,))
    with pytest.raises(KeyError):  # not ignored: raised at once
        wait_for(boom, 5, "device")


def test_what_callable_is_worded_only_on_failure() -> None:
    calls: list[int] = []

    def what() -> str:
        calls.append(1)
        return "the file; log tail: abc"

    assert wait_for(lambda: True, 1, what) is True
    assert calls == []
    with pytest.raises(TimeoutError, match="the file; log tail: abc"):
        wait_for(lambda: False, 0.05, what)


def test_stop_if_fails_fast_with_its_reason() -> None:
    polls: list[int] = []
    with pytest.raises(AssertionError, match="gave up waiting for output: the daemon exited 2"):
        wait_for(lambda: polls.append(1), 30, "output", stop_if=lambda: len(polls) >= 2 and "the daemon exited 2")
    assert len(polls) == 2  # not polled on until the 30 s timeout


def test_async_wait_for_awaits_and_ignores() -> None:
    n = 0

    async def probe() -> int:
        nonlocal n
        n += 1
        if n < 3:
            raise ConnectionError("refused")
        return n

    async def main() -> None:
        assert await async_wait_for(probe, 2, "server", interval=0, ignore=(ConnectionError,)) == 3
        with pytest.raises(AssertionError, match="gave up waiting for x: stop_if held"):
            await async_wait_for(lambda: False, 30, "x", stop_if=lambda: True)
        with pytest.raises(TimeoutError, match=r"waiting for x \(last: ConnectionError"):
            await async_wait_for(lambda: (_ for _ in ()).throw(ConnectionError("no")), 0.05, lambda: "x",
                                 ignore=(ConnectionError,))

    asyncio.run(main())
