# main.py of a board whose application has its own umqtt.simple client and lends it to the OTA
# service: one connection carries the application's messages and the update.
import json

import ota.service
from umqtt.simple import MQTTClient

import fw

with open("ota_config.json") as f:
    cfg = json.load(f)
broker = cfg["broker"]
client = MQTTClient(cfg["device_id"], broker["host"], broker["port"], keepalive=broker["keepalive"])


def app_subscribe(c):
    c.subscribe(b"app/cmd", 1)
    print("APP connected")


def app_message(topic, msg):
    print("APP message", topic.decode(), msg.decode())
    client.publish(b"app/reply", msg)


updates = ota.service.start(checks=[fw.healthy], client=client, on_message=app_message, on_connect=app_subscribe)
fw.start()
while True:
    updates.poll()
