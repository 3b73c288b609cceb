//! What the window shows when the engine could not start (the embedded broker's or the
//! firmware server's port taken — a Mosquitto already on 1883 is common on lab machines —, the
//! data directory not writable, ...): the window opens all the same, names the problem in the
//! engine's words and offers the ways out: use the broker already on that port (as a client),
//! start on other ports, choose a broker profile, retry. Each is a `UiAction::Connect`, which the
//! app hands to the `Connector` like the connection dialog's Connect.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use egui::{RichText, Ui};

use super::action::{ConnectRequest, UiAction};
use super::profiles::{BrokerProfile, ConnectTarget};
use super::theme;
use crate::engine::{EngineConfig, EngineError, FirmwareSource, StartError};
use crate::i18n::tr;

/// Which of the console's listeners found its port taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Broker,
    FirmwareServer,
}

/// Why the engine did not start, as the window needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    /// The engine's own words.
    pub error: String,
    /// The port that was taken, and by which listener, when that was the cause.
    pub port_in_use: Option<(Listener, SocketAddr)>,
}

impl StartFailure {
    pub fn new(error: &EngineError) -> StartFailure {
        let port_in_use = match error {
            EngineError::Start(why) => why.port_in_use().map(|addr| {
                let listener = match why.as_ref() {
                    StartError::Http(_) => Listener::FirmwareServer,
                    _ => Listener::Broker,
                };
                (listener, addr)
            }),
            _ => None,
        };
        StartFailure {
            error: error.to_string(),
            port_in_use,
        }
    }
}

/// The failure and the ports as typed in its form.
#[derive(Debug, Clone)]
pub struct StartFailureForm {
    pub failure: StartFailure,
    pub broker_port: String,
    pub firmware_port: String,
    /// The configuration started with has its own firmware server (its port can be changed).
    pub embedded_firmware: bool,
}

impl StartFailureForm {
    /// The form for `failure` of `config`: the ports offered are the next ones up from those
    /// that were taken.
    pub fn new(failure: StartFailure, config: &EngineConfig) -> StartFailureForm {
        let broker = match &config.broker {
            crate::engine::BrokerChoice::Embedded { listen, .. } => listen.port(),
            crate::engine::BrokerChoice::External(_) => {
                super::profiles::DEFAULT_EMBEDDED_LISTEN.port()
            }
        };
        let firmware = match &config.firmware {
            FirmwareSource::Embedded { bind, .. } => Some(bind.port()),
            _ => None,
        };
        let next = |port: u16| if port == 0 { 0 } else { port.saturating_add(1) };
        let (broker, firmware) = match failure.port_in_use {
            Some((Listener::Broker, _)) => (next(broker), firmware),
            Some((Listener::FirmwareServer, _)) => (broker, firmware.map(next)),
            None => (broker, firmware),
        };
        StartFailureForm {
            failure,
            broker_port: broker.to_string(),
            firmware_port: firmware.map(|p| p.to_string()).unwrap_or_default(),
            embedded_firmware: firmware.is_some(),
        }
    }

    /// "Start on these ports", or why the ports typed are not usable.
    pub fn ports_request(&self) -> Result<ConnectRequest, String> {
        let broker_port: u16 = self.broker_port.trim().parse().map_err(|_| {
            tr!(
                "ui.start.not_a_port",
                value = format!("{:?}", self.broker_port.trim())
            )
        })?;
        let firmware_port = if self.embedded_firmware {
            Some(self.firmware_port.trim().parse::<u16>().map_err(|_| {
                tr!(
                    "ui.start.not_a_port",
                    value = format!("{:?}", self.firmware_port.trim())
                )
            })?)
        } else {
            None
        };
        Ok(ConnectRequest {
            target: ConnectTarget::EmbeddedOn {
                broker_port,
                firmware_port,
            },
            password: None,
        })
    }
}

/// "Use the broker already on that port": a profile for the broker that holds the port,
/// reached on loopback when the console wanted every address.
pub fn existing_broker_request(addr: SocketAddr) -> ConnectRequest {
    let ip = if addr.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    };
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let mut profile = BrokerProfile {
        name: tr!("ui.start.profile_name", port = addr.port()),
        url: format!("mqtt://{host}:{}", addr.port()),
        ..BrokerProfile::default()
    };
    profile.ensure_client_id();
    ConnectRequest {
        target: ConnectTarget::Profile(profile),
        password: None,
    }
}

/// Draws the failure and its ways out in the central area; while a start is under way
/// (`pending`), only that.
pub fn start_failure_ui(
    ui: &mut Ui,
    form: &mut StartFailureForm,
    pending: Option<&str>,
    dialog_open: &mut bool,
    actions: &mut Vec<UiAction>,
) {
    ui.add_space(12.0);
    ui.heading(tr!("ui.start.heading"));
    ui.colored_label(theme::BAD, &form.failure.error);
    ui.add_space(8.0);
    if let Some(pending) = pending {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(pending);
        });
        return;
    }
    ui.label(RichText::new(tr!("ui.start.ways_out")).strong());
    if let Some((listener, addr)) = form.failure.port_in_use {
        let whose = match listener {
            Listener::Broker => tr!("ui.start.other_broker"),
            Listener::FirmwareServer => tr!("ui.start.other_program"),
        };
        ui.label(tr!("ui.start.listens", whose = whose, port = addr.port()));
        if listener == Listener::Broker
            && ui
                .button(tr!("ui.start.use_broker", port = addr.port()))
                .on_hover_text(tr!("ui.start.use_broker_hover"))
                .clicked()
        {
            actions.push(UiAction::Connect(Box::new(existing_broker_request(addr))));
        }
    }
    ui.horizontal_wrapped(|ui| {
        let broker = ui.label(tr!("ui.start.broker_port")).id;
        ui.add(egui::TextEdit::singleline(&mut form.broker_port).desired_width(60.0))
            .labelled_by(broker);
        if form.embedded_firmware {
            let firmware = ui.label(tr!("ui.start.firmware_port")).id;
            ui.add(egui::TextEdit::singleline(&mut form.firmware_port).desired_width(60.0))
                .labelled_by(firmware);
        }
        ui.weak(tr!("ui.start.any_port"));
    });
    let ports = form.ports_request();
    ui.horizontal_wrapped(|ui| {
        match &ports {
            Ok(request) => {
                if ui.button(tr!("ui.start.start_on_ports")).clicked() {
                    actions.push(UiAction::Connect(Box::new(request.clone())));
                }
            }
            Err(why) => {
                ui.add_enabled(false, egui::Button::new(tr!("ui.start.start_on_ports")));
                ui.colored_label(theme::WARN, why);
            }
        }
        if ui
            .button(tr!("ui.start.choose_profile"))
            .on_hover_text(tr!("ui.start.choose_profile_hover"))
            .clicked()
        {
            *dialog_open = true;
        }
        if ui
            .button(tr!("ui.start.retry"))
            .on_hover_text(tr!("ui.start.retry_hover"))
            .clicked()
        {
            actions.push(UiAction::Connect(Box::new(ConnectRequest {
                target: ConnectTarget::Base,
                password: None,
            })));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;

    fn config() -> EngineConfig {
        EngineConfig::embedded(
            "0.0.0.0:1883".parse().unwrap(),
            "0.0.0.0:8080".parse().unwrap(),
            "/tmp/ota-data".into(),
        )
    }

    #[test]
    fn a_taken_broker_port_offers_the_next_port_and_the_broker_on_it() {
        let failure = StartFailure {
            error: "port taken".into(),
            port_in_use: Some((Listener::Broker, "0.0.0.0:1883".parse().unwrap())),
        };
        let mut form = StartFailureForm::new(failure, &config());
        assert_eq!(form.broker_port, "1884");
        assert_eq!(form.firmware_port, "8080");
        let request = form.ports_request().unwrap();
        assert_eq!(
            request.target,
            ConnectTarget::EmbeddedOn {
                broker_port: 1884,
                firmware_port: Some(8080)
            }
        );
        form.broker_port = "mosquitto".into();
        assert!(form.ports_request().is_err());

        let existing = existing_broker_request("0.0.0.0:1883".parse().unwrap());
        let ConnectTarget::Profile(profile) = existing.target else {
            panic!("a profile expected");
        };
        assert_eq!(profile.url, "mqtt://127.0.0.1:1883");
        assert!(profile.validate().is_ok());
    }
}
