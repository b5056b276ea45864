# main.py of an asyncio application: the update service is one task beside the application's.
import asyncio

import ota.aservice

import fw

beats = [0]


async def application():
    while True:
        beats[0] += 1
        if beats[0] == 50:
            print("ASYNC application running beside the update service")
        await asyncio.sleep_ms(10)


async def main():
    fw.start()
    asyncio.create_task(application())
    await ota.aservice.run(checks=[fw.healthy])


asyncio.run(main())
