//! Who may connect to the broker and what each client may publish and subscribe to. Broker
//! independent: `broker-config`'s Mosquitto files are made from it, and the embedded broker's
//! gate (`transport::broker`, secure mode) asks it for every CONNECT, PUBLISH, SUBSCRIBE and Will.
//!
//! # Layout
//! - [`rules`]: topic authorization generated from each dialect's topic layout: an
//!   [`Identity`] (the console, a device or gateway, a site, an AWS thing) against a topic or a
//!   filter, answered with a [`Decision`] that names why a refusal was made.
//! - [`alibaba_sign`]: Alibaba Cloud IoT's MQTT signature (client id parameters, `{dn}&{pk}`
//!   user name, HMAC password keyed by the device secret), checked in constant time.
//! - [`credentials`]: the console's own generated credentials, the Alibaba device-secret table
//!   imported from the console's CSV export, the user-name/password file for the other
//!   dialects, `authenticate`, and the per-source refusal back-off.
//! - [`mosquitto`]: the Mosquitto password file (`$7$` PBKDF2-SHA512), ACL file and config
//!   snippet written by `ota-console broker-config`.
//! - [`site_ca`]: the CA generated once per data directory (`site-ca/ca.pem`, `ca.key`) that
//!   issues server certificates and device client certificates.
//! - [`tls`]: server certificate chains and keys (the user's PEM files or the site CA's), the
//!   rustls server configuration with or without client certificates, and the identity a
//!   verified client certificate stands for (its subject CN).
//!
//! Everything here is pure (files are read and written only by the functions that say so) and
//! never panics on input: topics, client ids, user names and passwords come from the network.

pub mod alibaba_sign;
pub mod credentials;
pub mod mosquitto;
pub mod rules;
pub mod site_ca;
pub mod tls;

pub use credentials::{Authenticator, Refusal};
pub use rules::{Decision, Denial, Identity, Rules};
pub use site_ca::SiteCa;
pub use tls::{ClientCerts, ServerIdentity, TlsError, identity_of_cert, server_config};
