"""The update service as an asyncio task, beside the application's own tasks:

    import asyncio
    import ota.aservice

    async def main():
        asyncio.create_task(ota.aservice.run(checks=[sensor_ok]))   # settings: ota_config.json
        ...                                                          # the application's tasks
    asyncio.run(main())

Each round is one `Service.poll(0)`: it never waits for the network, and the work it does is
bounded by the chunk window (a few chunks written to flash); between rounds the other tasks run.
Two steps cannot be cut: connecting (TCP and TLS handshake, bounded by the client's timeout) and
the final check of a complete download (the slot's SHA-256 and the signature), after which the
board installs and resets. bench/bench_async.py measures the longest stretch.

`run()` takes what `ota.service.start()` takes, a lent client included."""
import asyncio

from micropython import const

from ota import service

IDLE_MS = const(50)  # between rounds while nothing is being fetched


async def run(checks=(), permission=None, client=None, on_message=None, on_connect=None, idle_ms=IDLE_MS):
    """Run the update service until the board resets into a new firmware."""
    updates = service.start(checks, permission, client, on_message, on_connect)
    while True:
        updates.poll(0)
        # While a release is being fetched, only yield: the chunks are already on their way.
        await asyncio.sleep_ms(0 if updates.transport.manifest is not None else idle_ms)
