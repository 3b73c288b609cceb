//! What crosses between the codecs and the MQTT link: an encoded message ready to publish. A leaf
//! module, so that `transport` (which publishes it) does not depend on `protocol` (which makes it).

/// A message ready to publish (QoS 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub topic: String,
    pub payload: Vec<u8>,
}
