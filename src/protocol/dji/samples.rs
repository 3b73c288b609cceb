//! DJI Cloud API example messages for the conformance suite and the fuzz target: the JSON blocks
//! of dji-cloud-api-ota.md and the notes.md shapes, as copied into tests/golden/ (one copy,
//! included from there), and two failures in the shapes notes.md gives (the document shows
//! none). The dock is `4TADKAQ000002J`, its drone `1581F5BKD225D00BDR7W`.

use crate::protocol::EventKind::{Answer, Attribute, Progress, Reply, Topology, Version};
use crate::protocol::{Sample, Samples};

pub const SAMPLES: Samples = Samples {
    device: "dji:4TADKAQ000002J",
    sub_device: Some(("dji:1581F5BKD225D00BDR7W", "dji:4TADKAQ000002J")),
    uplink: &[
        Sample {
            name: "dji_ota_progress.json",
            topic: "thing/product/4TADKAQ000002J/events",
            payload: include_str!("../../../tests/golden/dji_ota_progress.json"),
            events: &[Progress],
        },
        Sample {
            name: "dji_services_reply.json",
            topic: "thing/product/4TADKAQ000002J/services_reply",
            payload: include_str!("../../../tests/golden/dji_services_reply.json"),
            events: &[Reply],
        },
        Sample {
            name: "dji_notes_update_topo.json",
            topic: "sys/product/4TADKAQ000002J/status",
            payload: include_str!("../../../tests/golden/dji_notes_update_topo.json"),
            events: &[Answer, Topology],
        },
        Sample {
            name: "dji_notes_dock_state.json",
            topic: "thing/product/4TADKAQ000002J/state",
            payload: include_str!("../../../tests/golden/dji_notes_dock_state.json"),
            events: &[Version, Attribute],
        },
        Sample {
            name: "dji_notes_state.json (the drone's osd, published by its dock)",
            topic: "thing/product/1581F5BKD225D00BDR7W/osd",
            payload: include_str!("../../../tests/golden/dji_notes_state.json"),
            events: &[Version],
        },
        Sample {
            name: "notes.md: ota_progress failed with 312015, need_reply",
            topic: "thing/product/4TADKAQ000002J/events",
            payload: r#"{"tid":"6a7bfe89-c386-4043-b600-b518e10096cc","bid":"42a19f36-5117-4520-bd13-fd61d818d52e","timestamp":1654070968655,"method":"ota_progress","need_reply":1,"data":{"result":312015,"output":{"status":"failed","progress":{"percent":0,"step_key":"download_firmware"}}}}"#,
            events: &[Answer, Progress],
        },
        Sample {
            name: "notes.md: services_reply refusing ota_create with 312014",
            topic: "thing/product/4TADKAQ000002J/services_reply",
            payload: r#"{"tid":"6a7bfe89-c386-4043-b600-b518e10096cc","bid":"42a19f36-5117-4520-bd13-fd61d818d52e","timestamp":1654070968655,"method":"ota_create","data":{"result":312014}}"#,
            events: &[Reply],
        },
    ],
};
