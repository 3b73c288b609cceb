//! A broker for the link's tests that answers each CONNECT as its script says (accepted, or
//! refused with a return code) and records each PUBLISH it acknowledges with the client id that
//! sent it: what Mosquitto cannot be told to do, such as refusing one client id of a login.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::BytesMut;
use rumqttc::mqttbytes::Error as PacketError;
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet, PubAck};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_PACKET: usize = 1 << 20;

/// What the broker acknowledged: (client id, topic, payload), in arrival order.
pub(super) type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

pub(super) struct ScriptedBroker {
    pub(super) addr: SocketAddr,
    pub(super) received: Received,
    /// The client ids of every CONNECT, refused ones too.
    pub(super) connects: Arc<Mutex<Vec<String>>>,
}

impl ScriptedBroker {
    /// Listens on 127.0.0.1 (an ephemeral port); `answer` gives the CONNACK code for a client id.
    pub(super) async fn start(
        answer: impl Fn(&str) -> ConnectReturnCode + Send + Sync + 'static,
    ) -> std::io::Result<ScriptedBroker> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let broker = ScriptedBroker {
            addr: listener.local_addr()?,
            received: Received::default(),
            connects: Arc::default(),
        };
        let answer = Arc::new(answer);
        let (received, connects) = (broker.received.clone(), broker.connects.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let session = Session {
                    answer: answer.clone(),
                    received: received.clone(),
                    connects: connects.clone(),
                    client_id: String::new(),
                };
                tokio::spawn(session.serve(stream));
            }
        });
        Ok(broker)
    }

    /// The payloads acknowledged so far.
    pub(super) fn received(&self) -> Vec<(String, String, Vec<u8>)> {
        self.received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn connects(&self) -> Vec<String> {
        self.connects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

type Answer = Arc<dyn Fn(&str) -> ConnectReturnCode + Send + Sync>;

struct Session {
    answer: Answer,
    received: Received,
    connects: Arc<Mutex<Vec<String>>>,
    client_id: String,
}

impl Session {
    async fn serve(mut self, mut stream: TcpStream) {
        let mut buf = BytesMut::new();
        loop {
            let packet = match Packet::read(&mut buf, MAX_PACKET) {
                Ok(packet) => packet,
                Err(PacketError::InsufficientBytes(_)) => match stream.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                },
                Err(_) => return,
            };
            let Some(reply) = self.answer_to(packet) else {
                return;
            };
            let mut out = BytesMut::new();
            if reply.write(&mut out, MAX_PACKET).is_err() || stream.write_all(&out).await.is_err() {
                return;
            }
            if let Packet::ConnAck(ack) = &reply
                && ack.code != ConnectReturnCode::Success
            {
                return;
            }
        }
    }

    /// The reply to `packet`; `None` ends the connection.
    fn answer_to(&mut self, packet: Packet) -> Option<Packet> {
        match packet {
            Packet::Connect(connect) => {
                self.client_id = connect.client_id;
                self.connects
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(self.client_id.clone());
                let code = (self.answer)(&self.client_id);
                Some(Packet::ConnAck(ConnAck::new(code, false)))
            }
            Packet::Publish(publish) => {
                self.received
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((
                        self.client_id.clone(),
                        publish.topic.clone(),
                        publish.payload.to_vec(),
                    ));
                Some(Packet::PubAck(PubAck::new(publish.pkid)))
            }
            Packet::PingReq => Some(Packet::PingResp),
            _ => None,
        }
    }
}
