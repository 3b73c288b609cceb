//! Alibaba Cloud IoT example messages for the conformance suite and the fuzz target: the code
//! blocks of aliyun-iot-ota.md and the notes.md shapes, as copied into tests/golden/ (one copy,
//! included from there).

use crate::protocol::EventKind::{FirmwareGet, Progress, Version};
use crate::protocol::{Sample, Samples};

pub const SAMPLES: Samples = Samples {
    device: "aliyun:a1pk/dev01",
    sub_device: None,
    uplink: &[
        Sample {
            name: "aliyun_inform_1-0-0.json",
            topic: "/ota/device/inform/a1pk/dev01",
            payload: include_str!("../../../tests/golden/aliyun_inform_1-0-0.json"),
            events: &[Version],
        },
        Sample {
            name: "aliyun_notes_inform_module.json",
            topic: "/ota/device/inform/a1pk/dev01",
            payload: include_str!("../../../tests/golden/aliyun_notes_inform_module.json"),
            events: &[Version],
        },
        Sample {
            name: "aliyun_progress.json",
            topic: "/ota/device/progress/a1pk/dev01",
            payload: include_str!("../../../tests/golden/aliyun_progress.json"),
            events: &[Progress],
        },
        Sample {
            name: "aliyun_notes_progress_module.json (step -3: a failure)",
            topic: "/ota/device/progress/a1pk/dev01",
            payload: include_str!("../../../tests/golden/aliyun_notes_progress_module.json"),
            events: &[Progress],
        },
        Sample {
            name: "aliyun_notes_firmware_get.json",
            topic: "/sys/a1pk/dev01/thing/ota/firmware/get",
            payload: include_str!("../../../tests/golden/aliyun_notes_firmware_get.json"),
            events: &[FirmwareGet],
        },
    ],
};
