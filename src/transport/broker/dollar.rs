//! Topics that begin with `$` through the private rumqttd. MQTT reserves them for server
//! use (3.1.1 §4.7.2: a leading wildcard does not match them), and some protocols live there
//! (the AWS IoT Jobs API: `$aws/things/{thing}/jobs/…`), but rumqttd refuses every
//! subscription whose filter begins with `$` (except `$share/…`) and drops the connection that
//! asked. So the gate escapes them: on the way in, a PUBLISH topic, SUBSCRIBE or UNSUBSCRIBE
//! filter `$rest` becomes [`ESCAPE`]`rest`; on the way out, a PUBLISH topic `ESCAPE rest`
//! becomes `$rest` again. Clients never see the escaped form; the gate's topic rules decide on
//! the client's own topics, before escaping.
//!
//! Owns: that mapping and re-encoding the packets it changes. Pure.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::FixedHeader;
use rumqttc::mqttbytes::v4::{Publish, Subscribe, Unsubscribe};

/// What `$` becomes inside rumqttd: DEL, a control character no protocol's topic starts with.
/// ASCII on purpose: rumqttd 0.20 slices a topic's first byte as a `str` when matching, and
/// panics (taking the whole broker down) on a topic that begins with a multi-byte character.
pub(super) const ESCAPE: char = '\u{7F}';

/// The topic or filter as rumqttd must see it, when it differs.
pub(super) fn escape(topic: &str) -> Option<String> {
    let rest = topic.strip_prefix('$')?;
    if rest.starts_with("share/") {
        // Shared subscriptions are rumqttd's own business.
        return None;
    }
    let mut escaped = String::with_capacity(topic.len() + 2);
    escaped.push(ESCAPE);
    escaped.push_str(rest);
    Some(escaped)
}

/// The topic as the client must see it, when rumqttd's differs.
pub(super) fn unescape(topic: &str) -> Option<String> {
    topic.strip_prefix(ESCAPE).map(|rest| format!("${rest}"))
}

/// A PUBLISH frame (fixed header included) with its topic changed by `map`; `None` when it
/// needs no change or cannot be read (then it goes on as it is, and rumqttd judges it).
fn rewrite_publish(
    header: FixedHeader,
    frame: &BytesMut,
    map: fn(&str) -> Option<String>,
) -> Option<BytesMut> {
    let mut publish = Publish::read(header, Bytes::copy_from_slice(frame)).ok()?;
    publish.topic = map(&publish.topic)?;
    let mut out = BytesMut::with_capacity(frame.len() + 4);
    publish.write(&mut out).ok()?;
    Some(out)
}

/// A client's PUBLISH as rumqttd must receive it.
pub(super) fn publish_in(header: FixedHeader, frame: &BytesMut) -> Option<BytesMut> {
    rewrite_publish(header, frame, escape)
}

/// rumqttd's PUBLISH as the client must receive it.
pub(super) fn publish_out(header: FixedHeader, frame: &BytesMut) -> Option<BytesMut> {
    rewrite_publish(header, frame, unescape)
}

/// Escapes a SUBSCRIBE's filters in place; whether any changed.
pub(super) fn subscribe_in(subscribe: &mut Subscribe) -> bool {
    let mut changed = false;
    for filter in &mut subscribe.filters {
        if let Some(escaped) = escape(&filter.path) {
            filter.path = escaped;
            changed = true;
        }
    }
    changed
}

/// A SUBSCRIBE re-encoded (after [`subscribe_in`] changed it).
pub(super) fn encode_subscribe(subscribe: &Subscribe) -> Option<BytesMut> {
    let mut out = BytesMut::new();
    subscribe.write(&mut out).ok()?;
    Some(out)
}

/// A client's UNSUBSCRIBE as rumqttd must receive it.
pub(super) fn unsubscribe_in(header: FixedHeader, frame: &BytesMut) -> Option<BytesMut> {
    let mut unsubscribe = Unsubscribe::read(header, Bytes::copy_from_slice(frame)).ok()?;
    let mut changed = false;
    for topic in &mut unsubscribe.topics {
        if let Some(escaped) = escape(topic) {
            *topic = escaped;
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    let mut out = BytesMut::new();
    unsubscribe.write(&mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::{QoS, check};

    fn frame_of(bytes: &BytesMut) -> (FixedHeader, BytesMut) {
        let header = check(bytes.iter(), usize::MAX).unwrap();
        (header, bytes.clone())
    }

    #[test]
    fn dollar_topics_are_escaped_in_and_restored_out() {
        assert_eq!(
            escape("$aws/things/t/jobs/get").unwrap(),
            "\u{7F}aws/things/t/jobs/get"
        );
        assert_eq!(escape("a/$b"), None);
        assert_eq!(escape("$share/g/x"), None);
        assert_eq!(unescape("\u{7F}aws/x").unwrap(), "$aws/x");
        assert_eq!(unescape("aws/x"), None);

        let mut raw = BytesMut::new();
        let mut p = Publish::new(
            "$aws/things/t/jobs/start-next",
            QoS::AtLeastOnce,
            b"{}".to_vec(),
        );
        p.pkid = 7;
        p.write(&mut raw).unwrap();
        let (header, frame) = frame_of(&raw);
        let inside = publish_in(header, &frame).unwrap();
        let (header, frame) = frame_of(&inside);
        let read = Publish::read(header, frame.clone().freeze()).unwrap();
        assert_eq!(read.topic, "\u{7F}aws/things/t/jobs/start-next");
        assert_eq!((read.pkid, &read.payload[..]), (7, &b"{}"[..]));
        let back = publish_out(header, &frame).unwrap();
        assert_eq!(back, raw);
        // Ordinary topics are left alone.
        let mut plain = BytesMut::new();
        Publish::new("a/b", QoS::AtMostOnce, b"x".to_vec())
            .write(&mut plain)
            .unwrap();
        let (header, frame) = frame_of(&plain);
        assert!(publish_in(header, &frame).is_none());

        let mut sub = Subscribe::new_many([
            rumqttc::mqttbytes::v4::SubscribeFilter::new(
                "$aws/things/+/jobs/get".into(),
                QoS::AtLeastOnce,
            ),
            rumqttc::mqttbytes::v4::SubscribeFilter::new("x/#".into(), QoS::AtLeastOnce),
        ]);
        assert!(subscribe_in(&mut sub));
        assert_eq!(sub.filters[0].path, "\u{7F}aws/things/+/jobs/get");
        assert_eq!(sub.filters[1].path, "x/#");

        let mut raw = BytesMut::new();
        Unsubscribe::new("$aws/things/t/jobs/notify")
            .write(&mut raw)
            .unwrap();
        let (header, frame) = frame_of(&raw);
        let inside = unsubscribe_in(header, &frame).unwrap();
        let (header, frame) = frame_of(&inside);
        let read = Unsubscribe::read(header, frame.freeze()).unwrap();
        assert_eq!(read.topics, ["\u{7F}aws/things/t/jobs/notify"]);
    }
}
