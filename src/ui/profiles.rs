//! Saved broker profiles: a name, the broker URL, TLS files, the user name and the publishing
//! connections, persisted with the window's settings, and how a profile (or the embedded
//! broker) becomes an `EngineConfig`.
//! Owns the profile's validation. Must never store, log or `Debug`-print a password: passwords
//! live in [`super::vault`] (the OS keyring, or memory for this run) and only pass through
//! [`Secret`], whose `Debug` is redacted.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::access::credentials::ConsoleCredentials;
use crate::engine::{
    BrokerChoice, BrokerUrl, BrokerUrlError, EmbeddedAccess, EngineConfig, FirmwareSource,
    LinkOptions, MAX_PUBLISH_CONNECTIONS,
};
use crate::i18n::tr;

/// Where the embedded broker listens when the console started on an external one (the CLI's
/// `--listen` default).
pub const DEFAULT_EMBEDDED_LISTEN: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 1883);
/// Profiles kept at most (the dialog lists them all).
pub const MAX_PROFILES: usize = 64;
/// Longest profile name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// A broker the operator saved. Serialised into eframe storage: no password field, on purpose.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrokerProfile {
    pub name: String,
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// CA certificate (PEM) that signed the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS; both or neither.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub username: String,
    /// Keep the password in the OS keyring between runs.
    pub remember_password: bool,
    /// The MQTT client id this profile connects with, generated when the profile is first
    /// saved and kept with it, so that the broker keeps one persistent session per profile.
    /// Empty in profiles saved before ids existed: one is given on the next save or connect.
    pub client_id: String,
    /// Connections the console publishes on (1 to [`MAX_PUBLISH_CONNECTIONS`]; a site
    /// Mosquitto in front of tens of thousands of devices needs several, see
    /// `LinkOptions::publish_connections`). 0 in profiles saved before the field existed: then
    /// what the console was started with (`--publish-connections`).
    pub publish_connections: u16,
}

/// Which broker the operator wants the engine on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectTarget {
    /// The console's own broker.
    Embedded,
    Profile(BrokerProfile),
    /// The configuration the console was started with, unchanged ("Retry" after a failed start).
    Base,
    /// The console's own broker on another port (its address otherwise as configured), and the
    /// embedded firmware server on `firmware_port` when given: the way out of a port in use.
    EmbeddedOn {
        broker_port: u16,
        firmware_port: Option<u16>,
    },
}

/// A password on its way to the engine. `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    #[error("{}", tr!("ui.profile.no_name"))]
    NoName,
    #[error("{}", tr!("ui.profile.name_too_long", max = MAX_NAME_CHARS))]
    NameTooLong,
    #[error("{}", tr!("ui.profile.bad_url", name = format!("{name:?}"), why = source))]
    Url {
        name: String,
        #[source]
        source: BrokerUrlError,
    },
    #[error("{}", tr!("ui.profile.half_identity", name = format!("{_0:?}")))]
    HalfClientIdentity(String),
    #[error("{}", tr!("ui.profile.tls_without_tls", name = format!("{_0:?}")))]
    TlsFilesWithoutTls(String),
    #[error("{}", tr!("ui.profile.publish_connections", name = format!("{name:?}"), count = count, max = MAX_PUBLISH_CONNECTIONS))]
    PublishConnections { name: String, count: u16 },
}

impl BrokerProfile {
    /// Checks the profile and parses its URL.
    pub fn validate(&self) -> Result<BrokerUrl, ProfileError> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err(ProfileError::NoName);
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(ProfileError::NameTooLong);
        }
        let url: BrokerUrl = self.url.parse().map_err(|source| ProfileError::Url {
            name: name.to_owned(),
            source,
        })?;
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(ProfileError::HalfClientIdentity(name.to_owned()));
        }
        let tls_files =
            self.ca_file.is_some() || self.client_cert.is_some() || self.client_key.is_some();
        if tls_files && !url.tls() {
            return Err(ProfileError::TlsFilesWithoutTls(name.to_owned()));
        }
        if self.publish_connections > MAX_PUBLISH_CONNECTIONS {
            return Err(ProfileError::PublishConnections {
                name: name.to_owned(),
                count: self.publish_connections,
            });
        }
        Ok(url)
    }

    /// Gives the profile a client id of its own if it has none yet.
    pub fn ensure_client_id(&mut self) {
        if self.client_id.trim().is_empty() {
            self.client_id = crate::engine::generate_client_id();
        }
    }

    /// What the connection bar calls this profile.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name.trim(), self.url.trim())
    }
}

impl ConnectTarget {
    /// `base` (data directory, firmware server, dialects) with this broker. `embedded_running`
    /// is the URL of an embedded broker already running in this process: it cannot be started
    /// twice on one port (rumqttd has no shutdown), so the new engine connects to it instead.
    pub fn engine_config(
        &self,
        base: &EngineConfig,
        embedded_running: Option<&BrokerUrl>,
        password: Option<&Secret>,
    ) -> Result<EngineConfig, ProfileError> {
        let mut config = base.clone();
        config.broker = match self {
            ConnectTarget::Base => base.broker.clone(),
            ConnectTarget::EmbeddedOn {
                broker_port,
                firmware_port,
            } => {
                if let (Some(port), FirmwareSource::Embedded { bind, .. }) =
                    (firmware_port, &mut config.firmware)
                {
                    bind.set_port(*port);
                }
                match &base.broker {
                    BrokerChoice::Embedded {
                        listen,
                        access,
                        tls,
                    } => BrokerChoice::Embedded {
                        listen: std::net::SocketAddr::new(listen.ip(), *broker_port),
                        access: *access,
                        tls: tls.clone(),
                    },
                    BrokerChoice::External(_) => BrokerChoice::Embedded {
                        listen: std::net::SocketAddr::new(
                            DEFAULT_EMBEDDED_LISTEN.ip(),
                            *broker_port,
                        ),
                        access: EmbeddedAccess::Secure,
                        tls: None,
                    },
                }
            }
            ConnectTarget::Embedded => match (embedded_running, &base.broker) {
                (Some(url), _) => {
                    // The broker this process already runs admits the console by its own
                    // credentials (an open one ignores them).
                    let mut options = LinkOptions::new(url.clone());
                    if let Ok(console) = ConsoleCredentials::load_or_create(&base.data_dir) {
                        options.username = Some(console.username);
                        options.password = Some(console.password);
                    }
                    BrokerChoice::External(options)
                }
                (None, embedded @ BrokerChoice::Embedded { .. }) => embedded.clone(),
                (None, BrokerChoice::External(_)) => BrokerChoice::Embedded {
                    listen: DEFAULT_EMBEDDED_LISTEN,
                    access: EmbeddedAccess::Secure,
                    tls: None,
                },
            },
            ConnectTarget::Profile(profile) => {
                let url = profile.validate()?;
                let mut options = LinkOptions::new(url);
                if let BrokerChoice::External(base_options) = &base.broker {
                    options.keep_alive_secs = base_options.keep_alive_secs;
                    options.client_id = base_options.client_id.clone();
                    options.publish_connections = base_options.publish_connections;
                }
                if profile.publish_connections > 0 {
                    options.publish_connections = profile.publish_connections;
                }
                // An explicit `--client-id` wins; else the profile's own id (else the data
                // directory's, chosen by the engine).
                let own = profile.client_id.trim();
                if options.client_id.is_none() && !own.is_empty() {
                    options.client_id = Some(own.to_owned());
                }
                let username = profile.username.trim();
                options.username = (!username.is_empty()).then(|| username.to_owned());
                options.password = password
                    .filter(|p| !p.is_empty())
                    .map(|p| p.expose().to_owned());
                options.ca_file = profile.ca_file.clone();
                options.client_cert = profile.client_cert.clone();
                options.client_key = profile.client_key.clone();
                BrokerChoice::External(options)
            }
        };
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> EngineConfig {
        EngineConfig::embedded(
            "127.0.0.1:1883".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
            "/tmp/ota-data".into(),
        )
    }

    fn profile() -> BrokerProfile {
        BrokerProfile {
            name: "plant".into(),
            url: "mqtts://broker.example.test:8883".into(),
            ca_file: Some("/etc/ca.pem".into()),
            client_cert: Some("/etc/me.pem".into()),
            client_key: Some("/etc/me.key".into()),
            username: " operator ".into(),
            remember_password: true,
            client_id: "ota-console-0badf00d".into(),
            publish_connections: 1,
        }
    }

    fn link_options(config: &EngineConfig) -> &LinkOptions {
        match &config.broker {
            BrokerChoice::External(options) => options,
            BrokerChoice::Embedded { .. } => panic!("external broker expected"),
        }
    }

    #[test]
    fn a_profile_publishes_on_its_connections_or_on_those_the_console_was_started_with() {
        let eight = BrokerProfile {
            publish_connections: 8,
            ..profile()
        };
        let config = ConnectTarget::Profile(eight)
            .engine_config(&base(), None, None)
            .unwrap();
        assert_eq!(link_options(&config).publish_connections, 8);

        // Started with `--publish-connections 4`: a profile saved before the field existed
        // keeps those; one that says 1 means 1.
        let mut started = LinkOptions::new(BrokerUrl::plain("h", 1));
        started.publish_connections = 4;
        let cli_base = EngineConfig {
            broker: BrokerChoice::External(started),
            ..base()
        };
        let old = BrokerProfile {
            publish_connections: 0,
            ..profile()
        };
        let config = ConnectTarget::Profile(old.clone())
            .engine_config(&cli_base, None, None)
            .unwrap();
        assert_eq!(link_options(&config).publish_connections, 4);
        let config = ConnectTarget::Profile(profile())
            .engine_config(&cli_base, None, None)
            .unwrap();
        assert_eq!(link_options(&config).publish_connections, 1);
        // Without either: one.
        let config = ConnectTarget::Profile(old)
            .engine_config(&base(), None, None)
            .unwrap();
        assert_eq!(link_options(&config).publish_connections, 1);

        // A hand-edited settings file cannot ask for more than the link opens.
        let too_many = BrokerProfile {
            publish_connections: MAX_PUBLISH_CONNECTIONS + 1,
            ..profile()
        };
        assert!(matches!(
            too_many.validate(),
            Err(ProfileError::PublishConnections { count: 10, .. })
        ));
        // Settings saved before the field existed still read.
        let stored = r#"{"name":"old","url":"mqtt://h:1883","username":""}"#;
        let read: BrokerProfile = serde_json::from_str(stored).unwrap();
        assert_eq!(read.publish_connections, 0);
    }

    #[test]
    fn a_profile_connects_with_its_own_client_id_unless_one_was_given() {
        let config = ConnectTarget::Profile(profile())
            .engine_config(&base(), None, None)
            .unwrap();
        let BrokerChoice::External(options) = &config.broker else {
            panic!("external broker expected");
        };
        assert_eq!(options.client_id.as_deref(), Some("ota-console-0badf00d"));
        assert!(!options.clean_session);
        // `--client-id` on the command line wins over the profile's.
        let mut explicit = LinkOptions::new(BrokerUrl::plain("h", 1));
        explicit.client_id = Some("from-cli".into());
        let cli_base = EngineConfig {
            broker: BrokerChoice::External(explicit),
            ..base()
        };
        let config = ConnectTarget::Profile(profile())
            .engine_config(&cli_base, None, None)
            .unwrap();
        let BrokerChoice::External(options) = &config.broker else {
            panic!("external broker expected");
        };
        assert_eq!(options.client_id.as_deref(), Some("from-cli"));
        // A profile saved before ids existed leaves the choice to the engine (the data
        // directory's id).
        let old = BrokerProfile {
            client_id: String::new(),
            ..profile()
        };
        let config = ConnectTarget::Profile(old)
            .engine_config(&base(), None, None)
            .unwrap();
        let BrokerChoice::External(options) = &config.broker else {
            panic!("external broker expected");
        };
        assert_eq!(options.client_id, None);
    }

    #[test]
    fn a_profile_becomes_an_external_broker_with_its_tls_files_and_credentials() {
        let secret = Secret::new("hunter2");
        let config = ConnectTarget::Profile(profile())
            .engine_config(&base(), None, Some(&secret))
            .unwrap();
        let BrokerChoice::External(options) = &config.broker else {
            panic!("external broker expected");
        };
        assert_eq!(options.url.to_string(), "mqtts://broker.example.test:8883");
        assert!(options.url.tls());
        assert_eq!(options.username.as_deref(), Some("operator"));
        assert_eq!(options.password.as_deref(), Some("hunter2"));
        assert_eq!(options.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(options.client_cert, Some(PathBuf::from("/etc/me.pem")));
        assert_eq!(options.client_key, Some(PathBuf::from("/etc/me.key")));
        // Everything but the broker comes from the base configuration.
        assert_eq!(config.data_dir, base().data_dir);
        assert_eq!(config.db_path, base().db_path);
        // The password never shows in the configuration's Debug output.
        let debug = format!("{config:?} {secret:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn an_empty_password_or_user_is_not_sent() {
        let p = BrokerProfile {
            url: "mqtt://10.0.0.5".into(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            username: "  ".into(),
            ..profile()
        };
        let config = ConnectTarget::Profile(p)
            .engine_config(&base(), None, Some(&Secret::new("")))
            .unwrap();
        let BrokerChoice::External(options) = &config.broker else {
            panic!("external broker expected");
        };
        assert_eq!(options.url.port(), 1883);
        assert_eq!(options.username, None);
        assert_eq!(options.password, None);
    }

    #[test]
    fn the_embedded_choice_reuses_a_running_embedded_broker() {
        let running = BrokerUrl::plain("127.0.0.1", 41883);
        let config = ConnectTarget::Embedded
            .engine_config(&base(), Some(&running), None)
            .unwrap();
        let BrokerChoice::External(options) = &config.broker else {
            panic!("the running broker is joined, not started again");
        };
        assert_eq!(options.url, running);
        let config = ConnectTarget::Embedded
            .engine_config(&base(), None, None)
            .unwrap();
        assert!(
            matches!(config.broker, BrokerChoice::Embedded { listen, .. } if listen.port() == 1883)
        );
    }

    #[test]
    fn bad_profiles_say_what_is_wrong() {
        let target =
            |p: BrokerProfile| ConnectTarget::Profile(p).engine_config(&base(), None, None);
        let err = target(BrokerProfile {
            name: " ".into(),
            ..profile()
        })
        .unwrap_err();
        assert_eq!(err, ProfileError::NoName);
        let err = target(BrokerProfile {
            url: "http://broker".into(),
            ..profile()
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("broker URL of profile \"plant\""),
            "{err}"
        );
        let err = target(BrokerProfile {
            client_key: None,
            ..profile()
        })
        .unwrap_err();
        assert_eq!(err, ProfileError::HalfClientIdentity("plant".into()));
        let err = target(BrokerProfile {
            url: "mqtt://broker".into(),
            ..profile()
        })
        .unwrap_err();
        assert_eq!(err, ProfileError::TlsFilesWithoutTls("plant".into()));
    }

    #[test]
    fn a_stored_profile_has_no_password_field() {
        let json = serde_json::to_string(&profile()).unwrap();
        assert!(!json.to_lowercase().contains("password\":\""), "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert!(
            keys.iter()
                .all(|k| *k == "remember_password" || !k.contains("password")),
            "{keys:?}"
        );
        // A password smuggled into an old file is ignored, not loaded.
        let back: BrokerProfile =
            serde_json::from_str(r#"{"name":"x","url":"mqtt://h","password":"hunter2"}"#).unwrap();
        assert!(!format!("{back:?}").contains("hunter2"));
    }
}
