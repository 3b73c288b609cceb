//! MXCHIP FogCloud example messages for the conformance suite and the fuzz target: the payloads
//! of fogcloud-ota.md, as copied into tests/golden/ (one copy, included from there). The
//! document's gateway is `pk1/gw1`; its sub-device `12097812/00000001`.

use crate::protocol::EventKind::{FirmwareGet, Progress, Version};
use crate::protocol::{Sample, Samples};

const UP: &str = "fogcloud/pk1/gw1/thing/up/ota";

pub const SAMPLES: Samples = Samples {
    device: "fogcloud:pk1/gw1",
    sub_device: Some(("fogcloud:12097812/00000001", "fogcloud:pk1/gw1")),
    uplink: &[
        Sample {
            name: "fogcloud_version_post.json",
            topic: UP,
            payload: include_str!("../../../tests/golden/fogcloud_version_post.json"),
            events: &[Version],
        },
        Sample {
            name: "fogcloud_upgrade_post.json (step -1: a failure)",
            topic: UP,
            payload: include_str!("../../../tests/golden/fogcloud_upgrade_post.json"),
            events: &[Progress],
        },
        Sample {
            name: "fogcloud_sub_version_post.json",
            topic: UP,
            payload: include_str!("../../../tests/golden/fogcloud_sub_version_post.json"),
            events: &[Version, Version],
        },
        Sample {
            name: "fogcloud_sub_upgrade_post.json",
            topic: UP,
            payload: include_str!("../../../tests/golden/fogcloud_sub_upgrade_post.json"),
            events: &[Progress, Progress],
        },
        Sample {
            name: "fogcloud_firmware_get.json",
            topic: UP,
            payload: include_str!("../../../tests/golden/fogcloud_firmware_get.json"),
            events: &[FirmwareGet],
        },
    ],
};
