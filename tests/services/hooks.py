"""on_startup / on_shutdown hooks, sync and async; events go to $HOOKS_LOG."""

import asyncio
import os

import bentohost


def _record(event: str) -> None:
    path = os.environ["HOOKS_LOG"]
    with open(path, "a") as f:
        f.write(f"{event} {bentohost.server_context.worker_index} {os.getpid()}\n")
        f.flush()


@bentohost.service
class Hooks:
    def __init__(self) -> None:
        self.events = ["init"]
        _record("init")

    @bentohost.on_startup
    def start_sync(self) -> None:
        self.events.append("startup-sync")
        _record("startup-sync")

    @bentohost.on_startup
    async def start_async(self) -> None:
        await asyncio.sleep(float(os.environ.get("HOOKS_STARTUP_DELAY", "0.01")))
        self.events.append("startup-async")
        _record("startup-async")

    @bentohost.on_shutdown
    def stop_sync(self) -> None:
        _record("shutdown-sync")

    @bentohost.on_shutdown
    async def stop_async(self) -> None:
        await asyncio.sleep(0.01)
        _record("shutdown-async")

    @bentohost.api
    def events_seen(self) -> list[str]:
        return sorted(self.events)
