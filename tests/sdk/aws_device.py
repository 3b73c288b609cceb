#!/usr/bin/env python3
"""A thin device application on AWS's official Python device SDK v2 (`awsiotsdk` on `awscrt`,
from PyPI) and its classic Jobs client, driven by tests/sdk_aws.rs.

It is what a firmware written from AWS's own jobs sample (aws-iot-device-sdk-python-v2,
samples/jobs.py) does, with an OTA job inside, and uses only what the SDK offers:
- connects with `mqtt_connection_builder.mtls_from_path` (MQTT 3.1.1 over TLS with the thing's
  client certificate and key, the broker checked against the given CA; client id = thing name,
  persistent session, keep-alive 30 s, as the sample) to a private broker instead of the AWS
  endpoint; the port is always given (without it the SDK dials 443 with ALPN `x-amzn-mqtt-ca`);
- subscribes, waiting for each SUBACK as the sample does, to notify-next and to the accepted and
  rejected replies of get, start-next, {jobId}/get and {jobId}/update (job id `+`), all QoS 1;
- asks for its pending jobs (`get`), then for the next job (`start-next`), and again whenever
  notify-next names a job while it is idle;
- runs the job: reads the firmware from the job document (`url`, `size`, `sha256`, `md5`,
  `version`), reports IN_PROGRESS with `statusDetails` (`step`, `progress` in percent, as
  strings: the Jobs API takes only string values), downloads, checks size and SHA-256 (and MD5
  when given), "flashes" by copying, and reports SUCCEEDED with the new `version`; every update
  carries the execution number and the expected version (the `versionNumber` the last accepted
  reply gave, asked for with `includeJobExecutionState`) and waits for its accepted or rejected
  reply, matched by client token;
- before working on a job, describes its execution (`{jobId}/get`, with the job document) to
  read back what the service holds (for an execution in a terminal state the API's answer is the
  error TerminalStateReached with the execution's state).

Scenarios (--scenario): `upgrade` (default); `corrupt` flips one downloaded byte before the
check, so the SHA-256 differs and it reports FAILED with the digest mismatch as `reason`;
`flash-fail` verifies and then reports FAILED with a flash write error as `reason`; `reject`
reports REJECTED with a `reason` without downloading.

Everything it sees is printed on stdout as one JSON object per line for the test to read. Exit
code 0 when stdin closes (the test went away) or after --lifetime seconds; 3 when it cannot
connect (event `connect_failed`), 4 when the broker refuses a subscription (event
`subscribe_failed`).
"""

import argparse
import hashlib
import json
import os
import queue
import shutil
import sys
import threading
import time
import urllib.request
import uuid

from awscrt import mqtt
from awsiot import iotjobs, mqtt_connection_builder

QOS = mqtt.QoS.AT_LEAST_ONCE
# How long it waits for the broker (SUBACK, PUBACK) or the service (a reply) before giving up
# (--reply-wait changes it).
REPLY_WAIT = 30.0
# Longest firmware it accepts, as a device with a small flash would.
MAX_FIRMWARE = 64 * 1024 * 1024

_print_lock = threading.Lock()


def emit(event, **fields):
    line = json.dumps(dict(event=event, **fields), default=str)
    with _print_lock:
        print(line, flush=True)


class Replies:
    """Accepted/rejected replies by client token: a request waits (bounded) for its own."""

    def __init__(self):
        self._lock = threading.Lock()
        self._waiting = {}

    def expect(self, token):
        slot = {"done": threading.Event(), "reply": None}
        with self._lock:
            self._waiting[token] = slot
        return slot

    def deliver(self, token, accepted, reply):
        with self._lock:
            slot = self._waiting.pop(token, None)
        if slot is None:
            emit("unmatched_reply", client_token=token, accepted=accepted)
            return
        slot["reply"] = (accepted, reply)
        slot["done"].set()


def rejected_fields(error):
    if error is None:
        return dict(code=None, message="unparseable rejected reply")
    state = error.execution_state
    return dict(code=error.code, message=error.message,
                execution_state=None if state is None else dict(
                    status=state.status, status_details=state.status_details,
                    version_number=state.version_number))


class Device:
    def __init__(self, args):
        self.args = args
        self.thing = args.thing_name
        self.current = args.version
        self.replies = Replies()
        self.inbox = queue.Queue()
        self.busy = False
        self.next_waiting = False
        self.lock = threading.Lock()
        self.connection = None
        self.jobs = None

    # --- connection and subscriptions ---------------------------------------------------

    def connect(self):
        a = self.args
        self.connection = mqtt_connection_builder.mtls_from_path(
            endpoint=a.host,
            port=a.port,
            cert_filepath=a.cert,
            pri_key_filepath=a.key,
            ca_filepath=a.ca,
            client_id=a.client_id or self.thing,
            clean_session=False,
            keep_alive_secs=30,
            reconnect_min_timeout_secs=1,
            reconnect_max_timeout_secs=2,
            on_connection_interrupted=lambda connection, error, **kw: emit(
                "connection_interrupted", error=str(error)),
            on_connection_resumed=lambda connection, return_code, session_present, **kw: emit(
                "connection_resumed", rc=int(return_code), session_present=session_present))
        try:
            result = self.connection.connect().result(REPLY_WAIT)
        except Exception as e:  # the SDK raises its own AwsCrtError for TLS and MQTT refusals
            emit("connect_failed", error="%s: %s" % (type(e).__name__, e))
            return False
        emit("connected", session_present=result.get("session_present"))
        self.jobs = iotjobs.IotJobsClient(self.connection)
        return True

    def subscribe(self):
        t = self.thing
        j = self.jobs
        subs = [
            (j.subscribe_to_next_job_execution_changed_events,
             iotjobs.NextJobExecutionChangedSubscriptionRequest(thing_name=t), self.on_notify_next),
            (j.subscribe_to_get_pending_job_executions_accepted,
             iotjobs.GetPendingJobExecutionsSubscriptionRequest(thing_name=t),
             self.reply_handler("get", True)),
            (j.subscribe_to_get_pending_job_executions_rejected,
             iotjobs.GetPendingJobExecutionsSubscriptionRequest(thing_name=t),
             self.reply_handler("get", False)),
            (j.subscribe_to_start_next_pending_job_execution_accepted,
             iotjobs.StartNextPendingJobExecutionSubscriptionRequest(thing_name=t),
             self.reply_handler("start-next", True)),
            (j.subscribe_to_start_next_pending_job_execution_rejected,
             iotjobs.StartNextPendingJobExecutionSubscriptionRequest(thing_name=t),
             self.reply_handler("start-next", False)),
            (j.subscribe_to_describe_job_execution_accepted,
             iotjobs.DescribeJobExecutionSubscriptionRequest(thing_name=t, job_id="+"),
             self.reply_handler("describe", True)),
            (j.subscribe_to_describe_job_execution_rejected,
             iotjobs.DescribeJobExecutionSubscriptionRequest(thing_name=t, job_id="+"),
             self.reply_handler("describe", False)),
            (j.subscribe_to_update_job_execution_accepted,
             iotjobs.UpdateJobExecutionSubscriptionRequest(thing_name=t, job_id="+"),
             self.reply_handler("update", True)),
            (j.subscribe_to_update_job_execution_rejected,
             iotjobs.UpdateJobExecutionSubscriptionRequest(thing_name=t, job_id="+"),
             self.reply_handler("update", False)),
        ]
        topics, granted = [], []
        for subscribe, request, callback in subs:
            future, topic = subscribe(request=request, qos=QOS, callback=callback)
            # As the sample insists: a request goes out only once its replies' SUBACK is in.
            try:
                granted.append(int(future.result(REPLY_WAIT)))
            except Exception as e:  # awscrt.mqtt.SubscribeError: the broker refused the filter
                emit("subscribe_failed", topic=topic, error="%s: %s" % (type(e).__name__, e))
                return False
            topics.append(topic)
        emit("subscribed", topics=topics, granted_qos=granted)
        return True

    def reply_handler(self, op, accepted):
        def handle(reply):
            # The SDK hands None when the payload was not JSON of the expected shape.
            token = getattr(reply, "client_token", None) if reply is not None else None
            if reply is None:
                emit("unparseable_reply", op=op, accepted=accepted)
                return
            self.replies.deliver(token, accepted, reply)
        return handle

    # --- requests -----------------------------------------------------------------------

    def request(self, op, publish, request, token, expected_codes=()):
        """Publishes `request` and waits (bounded) for its reply: (accepted, reply) or None. A
        rejection is an event `request_rejected` unless its code is one of `expected_codes`."""
        slot = self.replies.expect(token)
        publish(request, QOS).result(REPLY_WAIT)
        if not slot["done"].wait(REPLY_WAIT):
            emit("no_reply", op=op, client_token=token)
            return None
        accepted, reply = slot["reply"]
        if not accepted and getattr(reply, "code", None) not in expected_codes:
            emit("request_rejected", op=op, client_token=token, **rejected_fields(reply))
        return accepted, reply

    def get_pending(self):
        token = "get-" + uuid.uuid4().hex[:12]
        got = self.request("get", self.jobs.publish_get_pending_job_executions,
                           iotjobs.GetPendingJobExecutionsRequest(
                               thing_name=self.thing, client_token=token), token)
        if got and got[0]:
            reply = got[1]
            emit("pending",
                 in_progress=[s.job_id for s in reply.in_progress_jobs or []],
                 queued=[s.job_id for s in reply.queued_jobs or []])

    def start_next(self):
        """The sample's try_start_next_job, answered in the main loop."""
        with self.lock:
            if self.busy:
                self.next_waiting = True
                return
            self.busy = True
            self.next_waiting = False
        self.inbox.put(("start_next", None))

    def on_notify_next(self, event):
        execution = event.execution if event is not None else None
        emit("notify_next", job_id=execution.job_id if execution else None)
        if execution is not None:
            self.start_next()

    def do_start_next(self):
        token = "start-" + uuid.uuid4().hex[:12]
        emit("requesting_next", client_token=token)
        got = self.request("start-next", self.jobs.publish_start_next_pending_job_execution,
                           iotjobs.StartNextPendingJobExecutionRequest(
                               thing_name=self.thing, client_token=token), token)
        execution = got[1].execution if got and got[0] else None
        if execution is None:
            if got and got[0]:
                emit("no_job")
        else:
            self.run_job(execution)
        with self.lock:
            self.busy = False
            again = self.next_waiting
        if again:
            self.start_next()

    # --- the job ------------------------------------------------------------------------

    def run_job(self, execution):
        job = Job(self, execution)
        emit("job", job_id=execution.job_id, execution_number=execution.execution_number,
             version_number=execution.version_number, status=execution.status,
             document=execution.job_document)
        # Read the execution back before working on it, as firmware that double-checks what it
        # was given does (after the last update the console may already be gone: a rollout ends
        # when every device has a final status).
        job.describe()
        job.run()


class Job:
    def __init__(self, device, execution):
        self.device = device
        self.job_id = execution.job_id
        self.execution_number = execution.execution_number
        self.expected_version = execution.version_number
        self.document = execution.job_document if isinstance(execution.job_document, dict) else {}

    def update(self, status, **details):
        """One UpdateJobExecution; True when accepted."""
        d = self.device
        token = "update-" + uuid.uuid4().hex[:12]
        details = {k: str(v) for k, v in details.items()}
        request = iotjobs.UpdateJobExecutionRequest(
            thing_name=d.thing, job_id=self.job_id, status=status, status_details=details,
            execution_number=self.execution_number, expected_version=self.expected_version,
            include_job_execution_state=True, client_token=token)
        got = d.request("update", d.jobs.publish_update_job_execution, request, token)
        accepted = bool(got and got[0])
        state = got[1].execution_state if accepted else None
        emit("updated", status=status, details=details, accepted=accepted,
             version_number=None if state is None else state.version_number)
        if state is not None and state.version_number is not None:
            self.expected_version = state.version_number
        elif accepted:
            # Without the state asked for, the next update cannot name the version: leave it out.
            self.expected_version = None
        return accepted

    def run(self):
        a = self.device.args
        doc = self.document
        version = doc.get("version")
        if a.scenario == "reject":
            reason = "declined: %s" % a.reject_reason
            self.update(iotjobs.JobStatus.REJECTED, reason=reason)
            emit("rejected", reason=reason)
            return
        missing = [k for k in ("url", "size", "sha256", "version") if doc.get(k) in (None, "")]
        if missing:
            reason = "job document lacks %s" % ", ".join(missing)
            self.update(iotjobs.JobStatus.REJECTED, reason=reason)
            emit("rejected", reason=reason)
            return
        if not self.update(iotjobs.JobStatus.IN_PROGRESS, step="downloading", progress=0):
            emit("failed", reason="IN_PROGRESS was not accepted")
            return
        try:
            data = download(doc["url"], int(doc["size"]))
        except Exception as e:
            reason = "download failed: %s" % e
            self.update(iotjobs.JobStatus.FAILED, reason=reason)
            emit("failed", reason=reason)
            return
        if a.scenario == "corrupt":
            data = bytes([data[0] ^ 0xFF]) + data[1:] if data else b"\x00"
        sha256 = hashlib.sha256(data).hexdigest()
        md5 = hashlib.md5(data).hexdigest()
        emit("downloaded", bytes=len(data), sha256=sha256)
        problem = None
        if len(data) != int(doc["size"]):
            problem = "size mismatch: got %d bytes, document says %s" % (len(data), doc["size"])
        elif sha256 != str(doc["sha256"]).lower():
            problem = "sha256 mismatch: got %s, document says %s" % (sha256, doc["sha256"])
        elif doc.get("md5") and md5 != str(doc["md5"]).lower():
            problem = "md5 mismatch: got %s, document says %s" % (md5, doc["md5"])
        if problem:
            self.update(iotjobs.JobStatus.FAILED, reason=problem)
            emit("failed", reason=problem)
            return
        if not self.update(iotjobs.JobStatus.IN_PROGRESS, step="installing", progress=50):
            emit("failed", reason="IN_PROGRESS was not accepted")
            return
        if a.scenario == "flash-fail":
            reason = "flash write failed at offset 0x%x: verify after write differs" % (len(data) // 2)
            self.update(iotjobs.JobStatus.FAILED, reason=reason)
            emit("failed", reason=reason)
            return
        with open(os.path.join(a.work_dir, "flash.bin"), "wb") as flash:
            flash.write(data)
        self.device.current = version
        if self.update(iotjobs.JobStatus.SUCCEEDED, version=version, progress=100):
            emit("upgraded", version=version)

    def describe(self):
        """Reads the execution back. The Jobs API answers a describe of an execution in a
        terminal state with the error TerminalStateReached, whose executionState holds the
        status: both are an event `described` (with the code when it was that error)."""
        d = self.device
        token = "describe-" + uuid.uuid4().hex[:12]
        got = d.request("describe", d.jobs.publish_describe_job_execution,
                        iotjobs.DescribeJobExecutionRequest(
                            thing_name=d.thing, job_id=self.job_id,
                            execution_number=self.execution_number,
                            include_job_document=True, client_token=token), token,
                        expected_codes=("TerminalStateReached",))
        if not got:
            return
        accepted, reply = got
        if accepted and reply.execution is not None:
            e = reply.execution
            emit("described", job_id=e.job_id, status=e.status, status_details=e.status_details,
                 version_number=e.version_number, execution_number=e.execution_number,
                 document=e.job_document, code=None)
        elif not accepted and reply.code == "TerminalStateReached" and reply.execution_state:
            e = reply.execution_state
            emit("described", job_id=self.job_id, status=e.status,
                 status_details=e.status_details, version_number=e.version_number,
                 code=reply.code)


def download(url, size):
    if size < 0 or size > MAX_FIRMWARE:
        raise ValueError("size %d out of range" % size)
    with urllib.request.urlopen(url, timeout=REPLY_WAIT) as response:
        data = response.read(MAX_FIRMWARE + 1)
    if len(data) > MAX_FIRMWARE:
        raise ValueError("more than %d bytes" % MAX_FIRMWARE)
    return data


def main():
    global REPLY_WAIT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True, help="CA certificate (PEM) the broker is checked against")
    parser.add_argument("--cert", required=True, help="the thing's client certificate (PEM)")
    parser.add_argument("--key", required=True, help="the thing's private key (PEM)")
    parser.add_argument("--thing-name", required=True)
    parser.add_argument("--client-id", help="MQTT client id (default: the thing name)")
    parser.add_argument("--version", required=True, help="the firmware version running now")
    parser.add_argument("--work-dir", required=True, help="where 'flash' goes")
    parser.add_argument("--scenario", default="upgrade",
                        choices=["upgrade", "corrupt", "flash-fail", "reject"])
    parser.add_argument("--reject-reason", default="battery at 12%, below the 30% needed to flash")
    parser.add_argument("--lifetime", type=float, default=180.0, help="exit after this many seconds")
    parser.add_argument("--reply-wait", type=float, default=REPLY_WAIT,
                        help="seconds to wait for a reply of the Jobs service")
    args = parser.parse_args()
    REPLY_WAIT = args.reply_wait

    device = Device(args)
    if not device.connect():
        sys.stdout.flush()
        os._exit(3)

    def watch_stdin():
        sys.stdin.read()
        device.inbox.put(("stdin_closed", None))

    threading.Thread(target=watch_stdin, daemon=True).start()

    if not device.subscribe():
        # AWS's sample gives up too when a subscription fails: its replies would never arrive.
        device.connection.disconnect()
        sys.stdout.flush()
        os._exit(4)
    device.get_pending()
    device.start_next()
    deadline = time.monotonic() + args.lifetime
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            emit("lifetime_over")
            break
        try:
            kind, _value = device.inbox.get(timeout=left)
        except queue.Empty:
            continue
        if kind == "stdin_closed":
            break
        if kind == "start_next":
            try:
                device.do_start_next()
            except Exception as e:  # a publish the SDK could not send: say so and stay up
                emit("error", error="%s: %s" % (type(e).__name__, e))
                with device.lock:
                    device.busy = False

    try:
        device.connection.disconnect().result(5)
    except Exception:
        pass
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
