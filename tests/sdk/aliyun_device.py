#!/usr/bin/env python3
"""A thin device application on Alibaba's official Python device SDK (Link Kit,
`aliyun-iot-linkkit` from PyPI), driven by tests/sdk_aliyun.rs.

It does what a real firmware built on the SDK does, and uses only what the SDK offers:
- connects with the SDK's own MQTT signature (client id `pk&dn|securemode=3,...|`, user name
  `dn&pk`, HMAC-SHA1 password) to a private broker over plain TCP (`config_mqtt(endpoint=...,
  port=..., secure="")`: without `endpoint` the SDK dials `{pk}.iot-as-mqtt.{region}.aliyuncs.com`
  on 8883 with TLS);
- subscribes to `/ota/device/upgrade/{pk}/{dn}` itself (the SDK does not: on Alibaba's cloud the
  broker subscribes for the device; on a private broker nobody does), then reports its version
  with the SDK's `ota_report_version` (`/ota/device/inform/{pk}/{dn}`); with
  --report-before-subscribe the other way round, as firmware that reports at once on connecting;
- receives notices through the SDK's `on_ota_message_arrived` (the SDK drops, with only a log
  line, a notice whose `url`, `version`, `size`, `signMethod` or `sign` is missing or empty);
- downloads and verifies with the SDK's `download_ota_firmware` (it checks `sign` with `Md5` or
  `SHA256`, spelled exactly so; it never reads `md5`);
- reports progress on `/ota/device/progress/{pk}/{dn}` (the SDK has no helper for it: plain
  `publish_topic`), the failure step the protocol defines for the SDK's error code, and the new
  version after "flashing".

Everything it sees is printed on stdout as one JSON object per line for the test to read; the
SDK's own error log lines are forwarded the same way (event `sdk_error`), so a notice the SDK
drops is visible. It exits when stdin closes (the test went away) or after --lifetime seconds.
"""

import argparse
import json
import logging
import os
import queue
import shutil
import sys
import threading
import time

from linkkit import linkkit

ErrorCode = linkkit.LinkKit.ErrorCode

# The protocol's failure steps (-1 upgrade failed, -2 download failed, -3 verification failed,
# -4 flash write failed) for the SDK's download error codes.
FAILURE_STEP = {
    ErrorCode.OTA_DIGEST_MISMATCH: -3,
    ErrorCode.OTA_INVALID_SIGN_METHOD: -3,
    ErrorCode.OTA_DOWNLOAD_FAIL: -2,
    ErrorCode.OTA_INVALID_URL: -2,
    ErrorCode.OTA_INVALID_PATH: -4,
}

_print_lock = threading.Lock()


def emit(event, **fields):
    line = json.dumps(dict(event=event, **fields))
    with _print_lock:
        print(line, flush=True)


class ForwardSdkErrors(logging.Handler):
    """The SDK reports a dropped notice or a failed download only in its log: make it an event."""

    def emit(self, record):
        emit("sdk_error", message=record.getMessage())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--product-key", required=True)
    parser.add_argument("--device-name", required=True)
    parser.add_argument("--version", required=True, help="the firmware version running now")
    parser.add_argument("--work-dir", required=True, help="where downloads and 'flash' go")
    parser.add_argument("--report-before-subscribe", action="store_true",
                        help="report the version right after connecting and subscribe only then, "
                             "as some firmware does (a notice sent at once is lost)")
    parser.add_argument("--lifetime", type=float, default=180.0, help="exit after this many seconds")
    parser.add_argument("--device-secret", default="bench-device-secret",
                        help="the secret the SDK signs its login with")
    args = parser.parse_args()

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sdk_log = logging.getLogger("linkkit")
    sdk_log.addHandler(ForwardSdkErrors(level=logging.ERROR))

    pk, dn = args.product_key, args.device_name
    upgrade_topic = "/ota/device/upgrade/%s/%s" % (pk, dn)
    progress_topic = "/ota/device/progress/%s/%s" % (pk, dn)

    # An open broker accepts any credentials; a secure one checks the SDK's real HMAC signature
    # against its device-secret table.
    lk = linkkit.LinkKit(host_name="cn-shanghai", product_key=pk, device_name=dn,
                         device_secret=args.device_secret)
    lk.enable_logger(logging.WARNING)
    lk.config_mqtt(port=args.port, secure="", endpoint=args.host, keep_alive=30,
                   auto_reconnect_min_sec=1, auto_reconnect_max_sec=2)

    inbox = queue.Queue()
    lk.on_connect = lambda session_flag, rc, user_data: inbox.put(("connect", rc))
    lk.on_disconnect = lambda rc, user_data: inbox.put(("disconnect", rc))
    lk.on_subscribe_topic = lambda mid, granted_qos, user_data: inbox.put(("subscribed", list(granted_qos)))
    lk.on_topic_message = lambda topic, payload, qos, user_data: emit(
        "message", topic=topic, payload=payload.decode("utf-8", "replace"))

    def on_ota(notice_type, version, size, url, sign_method, sign, module, extra):
        inbox.put(("notice", dict(type=notice_type, version=version, size=size, url=url,
                                  signMethod=sign_method, sign=sign, module=module)))

    lk.on_ota_message_arrived = on_ota

    def watch_stdin():
        sys.stdin.read()
        inbox.put(("stdin_closed", None))

    threading.Thread(target=watch_stdin, daemon=True).start()

    progress_id = [0]

    def progress(step, desc):
        progress_id[0] += 1
        body = json.dumps({"id": str(progress_id[0]), "params": {"step": str(step), "desc": desc}})
        rc, _mid = lk.publish_topic(progress_topic, body, 1)
        emit("progress", step=step, desc=desc, rc=rc)

    def report_version():
        # Link Kit 1.2.13 returns OTA_PUB_FAILED here even when the report went out: it compares
        # paho 1.x's MQTTMessageInfo with 0. The rc is shown, not acted upon.
        rc = lk.ota_report_version(None, current[0])
        emit("reported", version=current[0], rc=rc.name)

    current = [args.version]
    lk.connect_async()
    deadline = time.monotonic() + args.lifetime
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            emit("lifetime_over")
            break
        try:
            kind, value = inbox.get(timeout=left)
        except queue.Empty:
            continue
        if kind == "stdin_closed":
            break
        if kind == "connect":
            emit("connected", rc=value)
            if value == 0:
                if args.report_before_subscribe:
                    report_version()
                rc, _mid = lk.subscribe_topic(upgrade_topic, 1)
                emit("subscribing", topic=upgrade_topic, rc=rc)
        elif kind == "disconnect":
            emit("disconnected", rc=value)
        elif kind == "subscribed":
            emit("subscribed", granted_qos=value)
            if not args.report_before_subscribe:
                report_version()
        elif kind == "notice":
            emit("notice", **value)
            upgrade(lk, value, args.work_dir, progress, current, report_version)

    lk.disconnect()
    os._exit(0)


def upgrade(lk, notice, work_dir, progress, current, report_version):
    """Download and verify with the SDK, 'flash' by copying, report the new version."""
    version = notice["version"]
    download = os.path.join(work_dir, "download-%s.bin" % version)
    progress(1, "downloading")
    rc = lk.download_ota_firmware(notice["url"], download, notice["signMethod"], notice["sign"])
    downloaded = os.path.getsize(download) if os.path.exists(download) else None
    emit("downloaded", rc=rc.name, code=rc.value, bytes=downloaded)
    if rc != ErrorCode.SUCCESS:
        step = FAILURE_STEP.get(rc, -1)
        progress(step, "%s (%d)" % (rc.name, rc.value))
        emit("failed", step=step, sdk_code=rc.name)
        return
    progress(50, "downloaded and verified")
    shutil.copyfile(download, os.path.join(work_dir, "flash.bin"))
    progress(100, "flashed")
    current[0] = version
    report_version()
    emit("upgraded", version=version)


if __name__ == "__main__":
    main()
