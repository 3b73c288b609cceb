//! AWS IoT Jobs example requests for the conformance suite and the fuzz target, copied into
//! tests/golden/ (one copy, included from there): the request shapes of AWS's Jobs device MQTT
//! API reference with concrete values (the reference shows placeholders), the `statusDetails`
//! keys the console reads (see `codec.rs`), and a failure and a rejection. The thing is
//! `pump-7`, the job one of the console's task keys.

use crate::protocol::EventKind::{FirmwareGet, Heard, Progress, Version};
use crate::protocol::{Sample, Samples};

pub const SAMPLES: Samples = Samples {
    device: "aws:pump-7",
    sub_device: None,
    uplink: &[
        Sample {
            name: "aws_start_next.json",
            topic: "$aws/things/pump-7/jobs/start-next",
            payload: include_str!("../../../tests/golden/aws_start_next.json"),
            events: &[FirmwareGet, Version],
        },
        Sample {
            name: "aws_get_pending.json",
            topic: "$aws/things/pump-7/jobs/get",
            payload: include_str!("../../../tests/golden/aws_get_pending.json"),
            events: &[FirmwareGet],
        },
        Sample {
            name: "aws_describe_next.json",
            topic: "$aws/things/pump-7/jobs/$next/get",
            payload: include_str!("../../../tests/golden/aws_describe_next.json"),
            events: &[FirmwareGet],
        },
        Sample {
            name: "aws_describe_job.json",
            topic: "$aws/things/pump-7/jobs/5f2c8e4a-1b3d-4c6e-9a7f-0d2b4c6e8a10/get",
            payload: include_str!("../../../tests/golden/aws_describe_job.json"),
            events: &[Heard],
        },
        Sample {
            name: "aws_update_in_progress.json",
            topic: "$aws/things/pump-7/jobs/5f2c8e4a-1b3d-4c6e-9a7f-0d2b4c6e8a10/update",
            payload: include_str!("../../../tests/golden/aws_update_in_progress.json"),
            events: &[Progress],
        },
        Sample {
            name: "aws_update_succeeded.json",
            topic: "$aws/things/pump-7/jobs/5f2c8e4a-1b3d-4c6e-9a7f-0d2b4c6e8a10/update",
            payload: include_str!("../../../tests/golden/aws_update_succeeded.json"),
            events: &[Progress, Version],
        },
        Sample {
            name: "aws_update_failed.json",
            topic: "$aws/things/pump-7/jobs/5f2c8e4a-1b3d-4c6e-9a7f-0d2b4c6e8a10/update",
            payload: include_str!("../../../tests/golden/aws_update_failed.json"),
            events: &[Progress],
        },
        Sample {
            name: "aws_update_rejected.json",
            topic: "$aws/things/pump-7/jobs/5f2c8e4a-1b3d-4c6e-9a7f-0d2b4c6e8a10/update",
            payload: include_str!("../../../tests/golden/aws_update_rejected.json"),
            events: &[Progress],
        },
    ],
};
