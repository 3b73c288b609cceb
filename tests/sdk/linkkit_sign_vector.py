"""Prints the MQTT login Alibaba's own device SDK builds, for the golden test in
src/access/alibaba_sign.rs (`the_linkkit_sdks_own_login_verifies`).

Run with the SDK installed (`scripts/dev test` puts aliyun-iot-linkkit into .venv/):
    .venv/bin/python tests/sdk/linkkit_sign_vector.py
It pins the clock, lets the SDK configure its paho client (no network is touched: connecting
happens later) and reads back the client id, user name and password the SDK would send.
"""
import json
import time

import linkkit.linkkit as lk

time.time = lambda: 1764590000.0
kit = lk.LinkKit(host_name="cn-shanghai", product_key="a1TestPk01", device_name="pump-7",
                 device_secret="Zx9sEcReT0123456789abcdefABCDEF0")
kit._LinkKit__config_mqtt_client_internal()
client = kit._LinkKit__mqtt_client


def text(v):
    return v.decode() if isinstance(v, bytes) else v


print(json.dumps({"client_id": text(client._client_id), "username": text(client._username),
                  "password": text(client._password)}))
