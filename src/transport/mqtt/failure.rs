//! How a failed connection reads for the operator, and whether retrying can fix it.

use rumqttc::{ConnectReturnCode, ConnectionError};

use crate::i18n::{self, tr};

/// Refusals that retrying cannot fix: the user must change the configuration.
pub(super) fn is_permanent(code: ConnectReturnCode) -> bool {
    matches!(
        code,
        ConnectReturnCode::BadUserNamePassword
            | ConnectReturnCode::NotAuthorized
            | ConnectReturnCode::BadClientId
            | ConnectReturnCode::RefusedProtocolVersion
    )
}

/// A sentence for the status bar; never contains credentials (rumqttc errors do not carry them).
pub(super) fn describe(error: &ConnectionError, broker: &str) -> String {
    match error {
        ConnectionError::ConnectionRefused(code) => {
            tr!("link.refused", why = refusal(*code))
        }
        ConnectionError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            tr!("link.unreachable", broker = broker)
        }
        ConnectionError::Io(e) => tr!("link.network", broker = broker, why = i18n::io_error(e)),
        ConnectionError::NetworkTimeout => tr!("link.no_answer", broker = broker),
        ConnectionError::FlushTimeout => tr!("link.stopped_reading", broker = broker),
        ConnectionError::Tls(e) => tr!("link.tls", broker = broker, why = e),
        ConnectionError::MqttState(e) => tr!("link.lost", broker = broker, why = e),
        other => tr!("link.failed", broker = broker, why = other),
    }
}

fn refusal(code: ConnectReturnCode) -> String {
    match code {
        ConnectReturnCode::BadUserNamePassword => tr!("link.refusal.bad_login"),
        // Mosquitto answers a wrong password with this code, not with BadUserNamePassword.
        ConnectReturnCode::NotAuthorized => tr!("link.refusal.not_authorized"),
        ConnectReturnCode::BadClientId => tr!("link.refusal.client_id"),
        ConnectReturnCode::RefusedProtocolVersion => tr!("link.refusal.protocol"),
        ConnectReturnCode::ServiceUnavailable => tr!("link.refusal.unavailable"),
        ConnectReturnCode::Success => tr!("link.refusal.success"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_connack_reads_like_a_sentence() {
        let e = ConnectionError::ConnectionRefused(ConnectReturnCode::BadUserNamePassword);
        assert_eq!(
            describe(&e, "mqtt://h:1"),
            "broker refused: bad user name or password"
        );
        assert!(is_permanent(ConnectReturnCode::NotAuthorized));
        assert!(!is_permanent(ConnectReturnCode::ServiceUnavailable));
    }
}
