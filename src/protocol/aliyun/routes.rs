//! The Alibaba Cloud IoT topics for the broker's authorization (`access::rules`): which way each
//! flows and whose segments it carries.
//!
//! Decisions taken from aliyun-iot-ota.md: a device publishes `/ota/device/inform` and
//! `/ota/device/progress` and asks with `/sys/{pk}/{dn}/thing/ota/firmware/get`; it subscribes to
//! `/ota/device/upgrade` and `…/firmware/get_reply`. Every topic carries the device's own
//! product key and name.

use crate::access::rules::Part::{Key, Lit, Name};
use crate::access::rules::TopicRoute;

/// Every topic of the dialect.
pub const ROUTES: &[TopicRoute] = &[
    TopicRoute::up(&[Lit(""), Lit("ota"), Lit("device"), Lit("inform"), Key, Name]),
    TopicRoute::up(&[
        Lit(""),
        Lit("ota"),
        Lit("device"),
        Lit("progress"),
        Key,
        Name,
    ]),
    TopicRoute::up(&[
        Lit(""),
        Lit("sys"),
        Key,
        Name,
        Lit("thing"),
        Lit("ota"),
        Lit("firmware"),
        Lit("get"),
    ]),
    TopicRoute::down(&[
        Lit(""),
        Lit("ota"),
        Lit("device"),
        Lit("upgrade"),
        Key,
        Name,
    ]),
    TopicRoute::down(&[
        Lit(""),
        Lit("sys"),
        Key,
        Name,
        Lit("thing"),
        Lit("ota"),
        Lit("firmware"),
        Lit("get_reply"),
    ]),
];
